"""Throughput of the enrollment worker: applications consumed, committed and published per second.

Starts its own broker and database (DATABASE_URL if set), one enrollment worker, publishes N
applications, and prints: publish rate, consume-and-commit rate, and the end-to-end rate until
the outbox relay has published every resulting event. Run: python bench/skeleton.py [N]
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.envelope import new_envelope
from shared.contracts.topics import ENROLLMENT_EVENTS, ENROLLMENT_FROM_CHANNELS, physical
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack import people
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.database import DevDatabase
from shared.messaging.admin import bootstrap_servers, ensure_topics, region_topics

REGION = "210200"


async def count_records(broker: str, topic: str, target: int) -> None:
    """Read the topic from the start until `target` records were seen."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(broker),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = 0
    try:
        while seen < target:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="medins-bench-"))
    broker = EmbeddedBroker.start(log_path=str(work / "broker.log"))
    db = DevDatabase.start(work / "pgdata")
    ns = f"bench{uuid.uuid4().hex[:6]}_"
    schema = f"{ns}r{REGION}_enrollment"
    worker = None
    try:
        await ensure_topics(broker.url, region_topics(REGION, ns), 4)
        conn = await connect(db.url)
        await migrate(conn, schema, service_migrations("enrollment"))
        env = {"MEDINS_BROKER_URL": broker.url, "MEDINS_DATABASE_URL": db.url,
               "MEDINS_NAMESPACE": ns, "MEDINS_REGION": REGION,
               "MEDINS_LOG_LEVEL": os.environ.get("MEDINS_LOG_LEVEL", "WARNING"),
               "MEDINS_WEB_PORT": str(free_port())}


        worker = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker", "enrollment"],
                                  env=os.environ | env, stdout=open(work / "worker.log", "wb"),
                                  stderr=subprocess.STDOUT)
        now = datetime.now(UTC)
        envelopes = [new_envelope(
            EnrollmentApplicationSubmitted.event_type, EnrollmentApplicationSubmitted(
                application_id=f"APP-{i}", person_id=people.resident_id(), name="王伟",
                insurance_type="resident", mobile=people.mobile(), channel="wechat",
                region_code=REGION, submitted_at=now), source="/bench", region=REGION)
            for i in range(n)]
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker.url),
                                    linger_ms=5, max_batch_size=512 * 1024)
        await producer.start()
        topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=ns)
        started = time.perf_counter()
        futures = [await producer.send(topic, e.to_bytes(), key=e.data["person_id"].encode())
                   for e in envelopes]
        await asyncio.gather(*futures)
        published = time.perf_counter() - started
        await producer.stop()
        events_topic = physical(ENROLLMENT_EVENTS, region=REGION, namespace=ns)
        relayed_task = asyncio.create_task(count_records(broker.url, events_topic, 2 * n))
        while await conn.fetchval(f'SELECT count(*) FROM "{schema}".processed_messages') < n:
            if time.perf_counter() - started > 600:
                raise TimeoutError("benchmark did not finish in 10 minutes")
            await asyncio.sleep(0.02)
        committed_at = time.perf_counter() - started
        await asyncio.wait_for(relayed_task, 600)
        relayed = time.perf_counter() - started
        import urllib.request

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{env['MEDINS_WEB_PORT']}/metrics"
                                         ).read().decode()
        figures = {line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                   for line in metrics.splitlines()
                   if line.startswith(("medins_batch_size_count", "medins_batch_seconds_sum"))}
        batches, busy = figures["medins_batch_size_count"], figures["medins_batch_seconds_sum"]
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
        print(f"applications: {n}")
        print(f"publish:            {n / published:8.0f} events/s ({published:.2f}s)")
        print(f"consume + commit:   {n / committed_at:8.0f} events/s ({committed_at:.2f}s incl."
              f" worker start-up and group join)")
        print(f"in batches only:    {n / busy:8.0f} events/s ({batches:.0f} batches,"
              f" {n / batches:.0f} events each, {busy:.2f}s inside batch transactions)")
        print(f"end to end (2 out): {n / relayed:8.0f} events/s ({relayed:.2f}s); "
              f"{2 * n} events published by the outbox relay")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        broker.stop()
        db.stop()


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) still runs the clean-up of the broker and database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
