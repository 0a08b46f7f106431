"""A worker killed after commit and before publishing still publishes once restarted."""
from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.topics import ENROLLMENT_EVENTS, ENROLLMENT_REQUESTS, physical
from shared.devstack import people
from shared.messaging.admin import bootstrap_servers
from shared.messaging.publisher import publish
from tests.conftest import REGION, TestStack
from tests.helpers import data_of, envelope, poll, read_topic


async def end_offsets(broker_url: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker_url))
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or
                      await _partitions(consumer, topic)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata for a new topic
    return consumer.partitions_for_topic(topic) or set()


async def test_relay_killed_after_commit_publishes_after_restart(stack: TestStack) -> None:
    ns = f"{stack.namespace}relay_"
    await stack.prepare(ns)
    worker = stack.start_worker("enrollment", namespace=ns, MEDINS_OUTBOX_RELAY="false")
    try:
        env = envelope(EnrollmentApplicationSubmitted(
            application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=people.resident_id(),
            name="赵磊", insurance_type="resident", mobile=people.mobile(), channel="phone",
            region_code=REGION, submitted_at=datetime.now(UTC)))
        await publish(stack.broker_url,
                      physical(ENROLLMENT_REQUESTS, region=REGION, namespace=ns), [env])
        conn = await stack.connect("enrollment", ns)
        try:
            pending = await poll(lambda: conn.fetchval("SELECT count(*) FROM outbox"),
                                 lambda n: n >= 2, timeout=60)
            assert pending == 2
            worker.kill()  # no clean shutdown: the process dies between commit and publish
            worker.wait()
            events_topic = physical(ENROLLMENT_EVENTS, region=REGION, namespace=ns)
            assert await end_offsets(stack.broker_url, events_topic) == 0

            worker = stack.start_worker("enrollment", namespace=ns)
            records = await read_topic(stack.broker_url, events_topic, lambda rs: len(rs) >= 2,
                                       timeout=60)
            assert sorted(data_of(r)["type"] for r in records) == [
                "cn.medins.enrollment.application.received.v1",
                "cn.medins.enrollment.contact.recorded.v1"]
            assert all(data_of(r)["causationid"] == env.id for r in records)
            assert all(data_of(r)["correlationid"] == env.correlationid for r in records)
            await poll(lambda: conn.fetchval("SELECT count(*) FROM outbox"), lambda n: n == 0)
        finally:
            await conn.close()
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
