"""A worker killed after commit and before publishing still publishes once restarted."""
from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.topics import ENROLLMENT_EVENTS, ENROLLMENT_FROM_CHANNELS, physical
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


@contextlib.asynccontextmanager
async def relay_on_own_schema(stack: TestStack, label: str, *, running: bool = False,
                              **options: Any) -> AsyncIterator[tuple[Any, Any, str, str]]:
    """Enrollment's schema and topics under a namespace of their own, and a relay on them:
    its producer only (the test drives publish_once itself), or the whole service running.
    Yields the database, the relay, the schema and the events topic."""
    from shared.db.pool import Database
    from shared.messaging.outbox import OutboxRelay

    ns = f"{stack.namespace}{label}_"
    await stack.prepare(ns)
    schema = stack.settings(ns).schema_for("enrollment")
    db = Database(stack.database_url, schema)
    await db.start()
    relay = OutboxRelay(db, stack.broker_url, "enrollment", **options)
    await (relay.start() if running else relay.on_start())
    try:
        yield db, relay, schema, physical(ENROLLMENT_EVENTS, region=REGION, namespace=ns)
    finally:
        await (relay.stop() if running else relay.on_stop())
        await db.stop()


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
                      physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=ns), [env])
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


async def test_a_row_that_cannot_be_published_is_set_aside_and_never_blocks_the_rest(
        stack: TestStack) -> None:
    from shared.messaging.admin import ensure_topics
    from shared.messaging.outbox import OutboxMessage, retry_set_aside, set_aside_rows, write_outbox

    # A partner inbox nobody created.
    missing_topic = f"{stack.namespace}aside_medins.999999.transfer.partner"
    async with relay_on_own_schema(stack, "aside", set_aside_after_seconds=0) as (
            db, relay, schema, events_topic):
        async with db.pool.acquire() as conn, conn.transaction():
            await write_outbox(conn, schema, [
                OutboxMessage(missing_topic, b"k", b'{"n": 1}'),
                OutboxMessage(events_topic, b"k", b'{"n": 2}'),
                OutboxMessage(events_topic, b"k", b"x" * (2 * 1024 * 1024)),  # too large
                OutboxMessage(events_topic, b"k", b'{"n": 4}')])
        assert await relay.publish_once() == 2  # the good rows, in their order
        records = await read_topic(stack.broker_url, events_topic, lambda rs: len(rs) >= 2)
        assert [r.value for r in records] == [b'{"n": 2}', b'{"n": 4}']
        async with db.pool.acquire() as conn:
            aside = await set_aside_rows(conn)
            assert [r["topic"] for r in aside] == [missing_topic, events_topic]
            assert "UnknownTopicOrPartition" in aside[0]["reason"]
            assert "MessageSizeTooLarge" in aside[1]["reason"]
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
            await relay.measure()  # the gauges come from the tables, not from publishing
            # The operator creates the partner's inbox and replays that row.
            await ensure_topics(stack.broker_url, [missing_topic], 4)
            assert await retry_set_aside(conn, [aside[0]["id"]]) == 1
        assert await relay.publish_once() == 1
        inbox = await read_topic(stack.broker_url, missing_topic, lambda rs: len(rs) >= 1)
        assert [r.value for r in inbox] == [b'{"n": 1}']


async def test_rows_the_broker_took_are_not_published_again_when_their_delete_failed(
        stack: TestStack) -> None:
    """The database goes away between the broker's acknowledgement and the delete (here: a
    trigger refuses the delete once, as a dropped connection would fail it): the next round
    deletes those rows without publishing them a second time."""
    from shared.messaging.outbox import OutboxMessage, write_outbox

    async with relay_on_own_schema(stack, "acked") as (db, relay, schema, events_topic):
        async with db.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "CREATE TABLE refuse_delete (once boolean);"
                " INSERT INTO refuse_delete VALUES (true);"
                " CREATE FUNCTION refuse_delete_once() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN IF EXISTS (SELECT 1 FROM refuse_delete) THEN"
                " RAISE EXCEPTION 'database went away'; END IF; RETURN OLD; END $$;"
                " CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox"
                " FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete_once();")
            await write_outbox(conn, schema, [
                OutboxMessage(events_topic, b"k", b'{"n": 1}'),
                OutboxMessage(events_topic, b"k", b'{"n": 2}')])
        try:
            await relay.publish_once()
            raise AssertionError("the delete should have failed")
        except Exception as exc:
            assert "database went away" in str(exc)
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 2  # still there
            await conn.execute("DELETE FROM refuse_delete")  # the database is back
            async with conn.transaction():
                await write_outbox(conn, schema, [OutboxMessage(events_topic, b"k", b'{"n": 3}')])
        assert await relay.publish_once() == 1  # only the new row goes out
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        records = await read_topic(stack.broker_url, events_topic, lambda rs: len(rs) >= 3)
        assert [r.value for r in records] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']


async def test_the_relay_takes_its_lock_and_listener_again_when_the_database_drops_them(
        stack: TestStack) -> None:
    """The connection holding the single-relay lock and the LISTEN is cut by the database (an
    outage, a restart): the relay opens another, takes the lock again, and publishes on."""
    from shared.messaging.outbox import OutboxMessage, write_outbox

    async with relay_on_own_schema(stack, "relock", running=True) as (
            db, relay, schema, events_topic):
        async def lock_holder() -> int | None:
            conn = relay._listener  # noqa: SLF001 - which session holds the lock
            return None if conn is None or conn.is_closed() else conn.get_server_pid()

        first = await poll(lock_holder, lambda pid: pid is not None)
        async with db.pool.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend($1)", first)
        again = await poll(lock_holder, lambda pid: pid not in (None, first), timeout=15)
        async with db.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
                again) == 1
            async with conn.transaction():
                await write_outbox(conn, schema, [OutboxMessage(events_topic, b"k", b'{"n": 1}')])
        records = await read_topic(stack.broker_url, events_topic, lambda rs: len(rs) >= 1)
        assert [r.value for r in records] == [b'{"n": 1}']
