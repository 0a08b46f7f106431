"""Transfers between two regions: intake rate in A, and A → B → A round trips per second.

Starts its own broker and database (DATABASE_URL if set) and the transfer workers of Dalian
(A) and Jinan (B). Each person is made suspended in A and active in B with the enrollment
events those services would send, then N transfer-outs are requested in A, then N information
sheets issued (no balance, so B merges at once and acknowledges). Prints the rate at which A
accepted requests (due dates counted in working days) and the rate of completed round trips.
Run: python bench/transfer_roundtrip.py [N]
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
from datetime import UTC, date, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from shared.contracts.base import Payload
from shared.contracts.channels import TransferOutRequested
from shared.contracts.enrollment import InsuredStatusChanged
from shared.contracts.envelope import new_envelope
from shared.contracts.topics import physical
from shared.contracts.transfer_office import TransferInfoSheetIssued
from shared.db.pool import connect
from shared.devstack import people
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.database import DevDatabase
from shared.messaging.admin import bootstrap_servers

A, B = "210200", "370100"


async def publish_all(producer: AIOKafkaProducer, ns: str, region: str,
                      payloads: list[Payload]) -> None:
    futures = []
    for payload in payloads:
        env = new_envelope(payload.event_type, payload, source="/bench", region=region)
        futures.append(await producer.send(physical(payload.topic, region=region, namespace=ns),
                                           env.to_bytes(), key=env.data["person_id"].encode()))
    await asyncio.gather(*futures)


async def wait_count(conn, sql: str, target: int, deadline: float) -> float:  # type: ignore[no-untyped-def]
    while await conn.fetchval(sql) < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"not reached: {sql}")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="medins-bench-"))
    broker = EmbeddedBroker.start(log_path=str(work / "broker.log"))
    db = DevDatabase.start(work / "pgdata")
    ns = f"bench{uuid.uuid4().hex[:6]}_"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for region in (A, B):
            env = {"MEDINS_BROKER_URL": broker.url, "MEDINS_DATABASE_URL": db.url,
                   "MEDINS_NAMESPACE": ns, "MEDINS_REGION": region,
                   "MEDINS_LOG_LEVEL": os.environ.get("MEDINS_LOG_LEVEL", "WARNING"),
                   "MEDINS_WEB_PORT": str(free_port()), "MEDINS_OUTBOX_POLL_SECONDS": "0.5"}
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "worker", "transfer"], env=os.environ | env,
                stdout=open(work / f"transfer-{region}.log", "wb"), stderr=subprocess.STDOUT))
        conn_a = conn_b = None
        deadline = time.perf_counter() + 120
        while conn_b is None:  # the workers create their schemas
            try:
                conn_a = await connect(db.url, f"{ns}r{A}_transfer")
                conn_b = await connect(db.url, f"{ns}r{B}_transfer")
                await conn_a.fetchval("SELECT count(*) FROM transfers")
                await conn_b.fetchval("SELECT count(*) FROM transfers")
            except Exception:
                conn_b = None
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.3)
        assert conn_a is not None
        persons = [people.resident_id() for _ in range(n)]
        today, now = date.today(), datetime.now(UTC)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker.url),
                                    linger_ms=5, max_batch_size=512 * 1024)
        await producer.start()

        def status(p: str, to: str) -> InsuredStatusChanged:
            return InsuredStatusChanged(person_id=p, insurance_type="resident",
                                        from_status="active" if to == "suspended" else "pending",
                                        to_status=to, reason="bench",  # type: ignore[arg-type]
                                        effective_on=today)

        await publish_all(producer, ns, A, [status(p, "suspended") for p in persons])
        await publish_all(producer, ns, B, [status(p, "active") for p in persons])
        deadline = time.perf_counter() + 600
        await wait_count(conn_a, "SELECT count(*) FROM insured_view", n, deadline)
        await wait_count(conn_b, "SELECT count(*) FROM insured_view", n, deadline)
        ids = [f"TR-{i}" for i in range(n)]
        started = time.perf_counter()
        await publish_all(producer, ns, A, [TransferOutRequested(
            transfer_id=t, person_id=p, to_region=B, channel="national_app", requested_at=now)
            for t, p in zip(ids, persons, strict=True)])
        accepted = await wait_count(conn_a, "SELECT count(*) FROM transfers WHERE stage ="
                                    " 'awaiting_info_sheet'", n, deadline) - started
        sheets_at = time.perf_counter()
        await publish_all(producer, ns, A, [TransferInfoSheetIssued(
            transfer_id=t, person_id=p, name="王伟", contribution_months=48,
            account_balance_fen=0, issued_at=now) for t, p in zip(ids, persons, strict=True)])
        completed = await wait_count(conn_a, "SELECT count(*) FROM transfers WHERE stage ="
                                     " 'completed'", n, deadline) - sheets_at
        await producer.stop()
        moved = await conn_b.fetchval("SELECT sum(credited_months) FROM transfers"
                                      " WHERE direction = 'in'")
        sent = await conn_a.fetchval("SELECT sum(contribution_months) FROM transfers")
        print(f"transfers: {n} between {A} and {B} (two transfer workers, one broker, one"
              f" database server)")
        print(f"intake in A (checked, due dates counted): {n / accepted:7.0f} transfers/s "
              f"({accepted:.2f}s)")
        print(f"round trips A → B → A completed:           {n / completed:7.0f} transfers/s "
              f"({completed:.2f}s)")
        print(f"contribution months sent {sent}, credited {moved}: "
              f"{'reconciled' if sent == moved else 'MISMATCH'}")
        for conn in (conn_a, conn_b):
            await conn.close()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(20)
        broker.stop()
        db.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
