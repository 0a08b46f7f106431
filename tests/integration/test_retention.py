"""Retention against the real PostgreSQL: old rows pruned in batches, recent rows kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest_asyncio

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.db.migrations import MESSAGING_MIGRATIONS, discover, migrate
from shared.db.pool import Database, connect
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, HandlerContext, RawMessage
from shared.messaging.retention import (
    RETENTION_LAST_RUN,
    RETENTION_PRUNED,
    Pruner,
    RetentionPolicy,
    prune,
)
from tests.conftest import REGION, TestStack
from tests.helpers import envelope, poll


class CountingConnection(asyncpg.Connection):  # type: ignore[misc]
    """A real connection that remembers the DELETE statements it ran (one per batch)."""

    deletes = 0

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[asyncpg.Record]:
        if query.lstrip().startswith("DELETE"):
            self.deletes += 1
        return await super().fetch(query, *args, **kwargs)


@asynccontextmanager
async def opened(database_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(database_url, schema)
    try:
        yield conn
    finally:
        await conn.close()


async def new_schema(database_url: str, schema: str) -> None:
    conn = await connect(database_url)
    try:
        await migrate(conn, schema, discover("messaging", MESSAGING_MIGRATIONS))
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def schema(stack: TestStack) -> AsyncIterator[str]:
    name = f"{stack.namespace}retain_{uuid.uuid4().hex[:6]}"
    await new_schema(stack.database_url, name)
    yield name  # dropped with the session's namespace


async def seed(conn: asyncpg.Connection, ages: dict[str, list[float]]) -> None:
    """Processed ids, set-aside rows and pending outbox rows, each `days` old."""
    for days in ages.get("processed", []):
        await conn.execute(
            "INSERT INTO processed_messages (consumer, event_id, event_type, processed_at)"
            " VALUES ('probe', $1, 't', now() - make_interval(secs => $2))",
            uuid.uuid4().hex, days * 86400)
    for days in ages.get("set_aside", []):
        await conn.execute(
            "INSERT INTO outbox_set_aside (id, topic, value, created_at, attempts, reason,"
            " set_aside_at) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM outbox_set_aside),"
            " 'medins.210200.deadletter', convert_to('{\"name\": \"陈静\"}', 'UTF8'), now(), 1,"
            " 'MessageSizeTooLargeError: 陈静 13812345678', now() - make_interval(secs => $1))",
            days * 86400)
    for days in ages.get("outbox", []):
        await conn.execute("INSERT INTO outbox (topic, value, created_at) VALUES"
                           " ('t', '{}'::bytea, now() - make_interval(secs => $1))", days * 86400)


async def counts(conn: asyncpg.Connection) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM processed_messages) AS p,"
        " (SELECT count(*) FROM outbox_set_aside) AS s, (SELECT count(*) FROM outbox) AS o")
    return row["p"], row["s"], row["o"]


async def test_old_rows_are_pruned_in_bounded_batches_and_recent_ones_kept(
        stack: TestStack, schema: str) -> None:
    conn = await connect(stack.database_url, schema, connection_class=CountingConnection)
    try:
        await seed(conn, {"processed": [181 + i for i in range(23)] + [179] * 5 + [1] * 5,
                          "set_aside": [91, 95, 120, 400] + [89, 10, 0],
                          # Never published: kept whatever their age.
                          "outbox": [400, 0]})
        policy = RetentionPolicy(processed_days=180, set_aside_days=90, batch_size=5)

        assert await prune(conn, policy, service="probe", dry_run=True) == {
            "processed_messages": 23, "outbox_set_aside": 4}
        assert await counts(conn) == (33, 7, 2) and conn.deletes == 0

        before = RETENTION_PRUNED.labels("probe", "processed_messages")._value.get()
        assert await prune(conn, policy, service="probe") == {
            "processed_messages": 23, "outbox_set_aside": 4}
        assert await counts(conn) == (10, 3, 2)
        # 23 ids in batches of at most 5 (5 statements), then 4 set-aside rows (1 statement).
        assert conn.deletes == 6
        assert RETENTION_PRUNED.labels("probe", "processed_messages")._value.get() - before == 23
        oldest = await conn.fetchval("SELECT extract(epoch FROM now() - min(processed_at))"
                                     " / 86400 FROM processed_messages")
        assert 178 < oldest < 180

        assert await prune(conn, policy, service="probe") == {
            "processed_messages": 0, "outbox_set_aside": 0}
    finally:
        await conn.close()


def application() -> Any:
    return envelope(EnrollmentApplicationSubmitted(
        application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=people.resident_id(),
        name="周杰", insurance_type="resident", mobile=people.mobile(), channel="window",
        region_code=REGION, submitted_at=datetime.now(UTC)))


async def test_an_event_redelivered_after_its_id_was_pruned_is_handled_again(
        stack: TestStack, schema: str) -> None:
    """Documented behaviour (deploy/RUNBOOK.md, "Retention"): the duplicate check remembers an
    event id for MEDINS_RETENTION_PROCESSED_DAYS. The settings refuse a retention shorter than
    the topic's or the dead letters', so no redelivery the platform makes comes later; an
    event sent again after that is handled as new."""
    async with opened(stack.database_url, schema) as setup:
        await setup.execute("CREATE TABLE handled (event_id text NOT NULL)")
    db = Database(stack.database_url, schema)
    await db.start()
    try:
        async def handle(ctx: HandlerContext, env: Any, payload: Any) -> None:
            await ctx.conn.execute("INSERT INTO handled VALUES ($1)", env.id)

        consumer = EventConsumer("probe", stack.settings(), db,
                                 {EnrollmentApplicationSubmitted.event_type: handle})
        env = application()
        message = RawMessage("t", 0, 1, b"k", env.to_bytes())
        await consumer.process([message])
        await consumer.process([message])  # within retention: a duplicate, skipped
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM handled") == 1
            await conn.execute("UPDATE processed_messages SET processed_at = now() - interval"
                               " '181 days' WHERE event_id = $1", env.id)
            assert (await prune(conn, RetentionPolicy()))["processed_messages"] == 1
        await consumer.process([message])
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM handled") == 2
            assert await conn.fetchval("SELECT count(*) FROM processed_messages"
                                       " WHERE event_id = $1", env.id) == 1
    finally:
        await db.stop()


async def test_the_worker_job_prunes_periodically(stack: TestStack, schema: str) -> None:
    db = Database(stack.database_url, schema)
    await db.start()
    job = Pruner(db, stack.settings(), "probe-job", interval=0.2)
    try:
        async with db.pool.acquire() as conn:
            await seed(conn, {"processed": [200, 1]})
        await job.start()
        async with db.pool.acquire() as conn:
            await poll(lambda: counts(conn), lambda c: c[0] == 1, timeout=10)
            await seed(conn, {"processed": [365]})  # a later pass finds this one too
            await poll(lambda: counts(conn), lambda c: c[0] == 1, timeout=10)
            assert await conn.fetchval(
                "SELECT count(*) FROM processed_messages WHERE processed_at > now() - interval"
                " '2 days'") == 1
        assert RETENTION_LAST_RUN.labels("probe-job")._value.get() > 0
    finally:
        await job.stop()
        await db.stop()


async def test_medins_prune_dry_run_then_prune(stack: TestStack) -> None:
    namespace = f"{stack.namespace}prune{uuid.uuid4().hex[:4]}_"
    schema = f"{namespace}r{REGION}_enrollment"  # other services' schemas do not exist: skipped
    await new_schema(stack.database_url, schema)
    async with opened(stack.database_url, schema) as conn:
        await seed(conn, {"processed": [200, 190, 5], "set_aside": [100, 1]})
    env = os.environ | {"MEDINS_DATABASE_URL": stack.database_url,
                        "MEDINS_BROKER_URL": stack.broker_url, "MEDINS_NAMESPACE": namespace,
                        "MEDINS_REGION": REGION}

    done_stderr: list[str] = [""]

    def medins(*args: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "shared.cli", "prune", "--json", *args],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        done_stderr[:] = [done.stderr]
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    expected = {f"enrollment@{REGION}": {"processed_messages": 2, "outbox_set_aside": 1}}
    assert medins("--dry-run") == {"dry_run": True, "schemas": expected}
    async with opened(stack.database_url, schema) as conn:
        assert await counts(conn) == (3, 2, 0)
    assert medins() == {"dry_run": False, "schemas": expected}
    async with opened(stack.database_url, schema) as conn:
        assert await counts(conn) == (1, 1, 0)
    # The job's trace of the unpublished row it deleted is masked, the name found in the row.
    assert "陈静" not in done_stderr[0] and "138****5678" in done_stderr[0]


async def test_a_running_worker_prunes_its_own_schema(stack: TestStack) -> None:
    namespace = f"{stack.namespace}wprune_"
    await stack.prepare(namespace)
    conn = await stack.connect("enrollment", namespace)
    worker = None
    try:
        await seed(conn, {"processed": [200, 1]})
        worker = stack.start_worker("enrollment", namespace=namespace,
                                    MEDINS_RETENTION_INTERVAL_SECONDS="1")
        await poll(lambda: counts(conn), lambda c: c[0] == 1, timeout=90)
    finally:
        await conn.close()
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
