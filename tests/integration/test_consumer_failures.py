"""Error policy in the consumer, against the real PostgreSQL: retry transient, isolate bugs."""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest_asyncio

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.db.migrations import MESSAGING_MIGRATIONS, discover, migrate
from shared.db.pool import Database, connect
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, HandlerContext, RawMessage, batch_handler
from shared.observability.metrics import EVENTS_FAILED
from tests.conftest import REGION, TestStack
from tests.helpers import envelope


class FlakyDatabase(Database):
    """The real pool, unreachable for the first `failures` acquisitions."""

    failures = 0

    @property
    def pool(self) -> asyncpg.Pool:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("database unavailable (simulated outage)")
        return super().pool


@pytest_asyncio.fixture
async def db(stack: TestStack) -> AsyncIterator[FlakyDatabase]:
    schema = f"{stack.namespace}consumer_{uuid.uuid4().hex[:6]}"
    conn = await connect(stack.database_url)
    await migrate(conn, schema, discover("messaging", MESSAGING_MIGRATIONS))
    await conn.execute(f'CREATE TABLE "{schema}".seen (event_id text PRIMARY KEY)')
    await conn.close()
    database = FlakyDatabase(stack.database_url, schema)
    await database.start()
    yield database
    await database.stop()


def raw(payload_env: Any, offset: int) -> RawMessage:
    return RawMessage("t", 0, offset, b"k", payload_env.to_bytes())


def application() -> Any:
    return envelope(EnrollmentApplicationSubmitted(
        application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=people.resident_id(),
        name="周杰", insurance_type="resident", mobile=people.mobile(), channel="window",
        region_code=REGION, submitted_at=datetime.now(UTC)))


async def remember(ctx: HandlerContext, env: Any, payload: Any) -> None:
    if payload.name == "坏":
        raise ValueError("a bug in the handler")
    await ctx.conn.execute("INSERT INTO seen VALUES ($1)", env.id)


async def test_transient_database_failure_is_retried_until_committed(
        stack: TestStack, db: FlakyDatabase) -> None:
    consumer = EventConsumer("probe", stack.settings(), db,
                             {EnrollmentApplicationSubmitted.event_type: remember})
    before = EVENTS_FAILED.labels("probe", "t")._value.get()
    db.failures = 2
    env = application()
    await consumer.process([raw(env, 1)])
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM seen WHERE event_id = $1", env.id) == 1
    assert EVENTS_FAILED.labels("probe", "t")._value.get() - before == 2


async def test_handler_bug_dead_letters_only_its_event(stack: TestStack,
                                                       db: FlakyDatabase) -> None:
    consumer = EventConsumer("probe", stack.settings(), db,
                             {EnrollmentApplicationSubmitted.event_type: remember})
    good = application()
    bad_doc = json.loads(application().to_bytes())
    bad_doc["data"]["name"] = "坏"
    from shared.contracts import parse_event

    bad, _ = parse_event(bad_doc)
    await consumer.process([raw(bad, 1), raw(good, 2)])
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM seen") == 1
        dead = await conn.fetch("SELECT topic, headers FROM outbox")
    assert len(dead) == 1 and dead[0]["topic"].endswith(".deadletter")
    headers = dict(json.loads(dead[0]["headers"]))
    assert "ValueError: a bug in the handler" in headers["dlq-reason"]
    assert headers["dlq-offset"] == "1"


@batch_handler
async def remember_all(items: list[Any]) -> None:
    """Set-based: one statement for the group, as a real handler writes."""
    if any(payload.name == "坏" for _, _, payload in items):
        raise ValueError("a bug in the set-based handler")
    calls.append(len(items))
    await items[0][0].conn.execute("INSERT INTO seen SELECT unnest($1::text[])",
                                   [env.id for _, env, _ in items])


calls: list[int] = []


async def test_a_set_based_handler_gets_the_batch_at_once_and_a_bug_costs_one_event(
        stack: TestStack, db: FlakyDatabase) -> None:
    consumer = EventConsumer("probe", stack.settings(), db,
                             {EnrollmentApplicationSubmitted.event_type: remember_all})
    calls.clear()
    good = [application() for _ in range(5)]
    await consumer.process([RawMessage("t", 0, i, f"k{i}".encode(), e.to_bytes())
                            for i, e in enumerate(good)])
    assert calls == [5]  # one call, one statement, for five events
    bad_doc = json.loads(application().to_bytes())
    bad_doc["data"]["name"] = "坏"
    from shared.contracts import parse_event

    bad, _ = parse_event(bad_doc)
    more = [application() for _ in range(3)]
    await consumer.process([RawMessage("t", 0, 10 + i, f"m{i}".encode(), e.to_bytes())
                            for i, e in enumerate([more[0], bad, *more[1:]])])
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM seen") == 8
        dead = await conn.fetch("SELECT headers FROM outbox")
    assert len(dead) == 1
    headers = dict(json.loads(dead[0]["headers"]))
    assert "a bug in the set-based handler" in headers["dlq-reason"]
    assert headers["dlq-offset"] == "11"


async def test_several_faulty_events_of_a_group_are_each_dead_lettered_in_one_redo(
        stack: TestStack, db: FlakyDatabase) -> None:
    consumer = EventConsumer("probe", stack.settings(), db,
                             {EnrollmentApplicationSubmitted.event_type: remember_all})
    from shared.contracts import parse_event

    def bad() -> Any:
        doc = json.loads(application().to_bytes())
        doc["data"]["name"] = "坏"
        return parse_event(doc)[0]

    events = [application(), bad(), application(), bad(), bad(), application()]
    calls.clear()
    await consumer.process([RawMessage("t", 0, 20 + i, f"n{i}".encode(), e.to_bytes())
                            for i, e in enumerate(events)])
    # The group failed once; then each event alone, the three good ones succeeding.
    assert calls == [1, 1, 1]
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM seen") == 3
        letters = await conn.fetch("SELECT headers FROM outbox")
        # A dead-lettered event is not recorded as processed: its replay will be handled.
        recorded = await conn.fetchval(
            "SELECT count(*) FROM processed_messages WHERE event_id = ANY($1)",
            [e.id for e in events])
    assert sorted(dict(json.loads(r["headers"]))["dlq-offset"] for r in letters) == [
        "21", "23", "24"]
    assert recorded == 3


async def test_an_event_no_handler_here_takes_is_passed_over_before_any_check(
        stack: TestStack, db: FlakyDatabase, tmp_path: Any) -> None:
    """Another service's event at home on a shared topic costs this consumer nothing: no
    signature check, no parse, no processed row, no dead letter (even unsigned: it is not
    applied here either way). A record whose type cannot be told without parsing, or that is
    not at home on its topic, takes the full path and is refused."""
    from datetime import date

    from shared.contracts.civil_affairs import DeathRecorded
    from shared.contracts.topics import (
        ENROLLMENT_FROM_CHANNELS,
        ENROLLMENT_FROM_CIVIL_AFFAIRS,
        physical,
    )
    from shared.observability.metrics import EVENTS_NOT_HANDLED
    from shared.settings import PlatformSettings
    from shared.trust import Keyring, TrustStore, Verifier, ensure_keys, sign_headers

    trust, keys = tmp_path / "trust", tmp_path / "keys"
    ensure_keys(["channels"], keys, TrustStore(trust))
    settings = PlatformSettings(region=REGION, namespace=stack.namespace, trust_dir=trust,
                                keyring_dir=keys)
    consumer = EventConsumer("probe", settings, db,
                             {EnrollmentApplicationSubmitted.event_type: remember},
                             verifier=Verifier.from_folder(trust, REGION))
    channels = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=stack.namespace)
    deaths = physical(ENROLLMENT_FROM_CIVIL_AFFAIRS, region=REGION, namespace=stack.namespace)
    death = envelope(DeathRecorded(record_ref="MZ-9", person_id=people.resident_id(),
                                   date_of_death=date(2026, 11, 1)))
    unsigned_app, signed_app = application(), application()
    key = Keyring(keys).current("channels")
    assert key is not None
    value = signed_app.to_bytes()
    two_types = (b'{"type":"cn.gov.civil-affairs.death.recorded.v1",'
                 b'"type":"cn.medins.enrollment.application.submitted.v1"}')
    before = EVENTS_NOT_HANDLED.labels("probe", deaths)._value.get()
    await consumer.process([
        RawMessage(deaths, 0, 1, b"k", death.to_bytes()),  # at home, unsigned, not ours
        RawMessage(channels, 0, 2, b"k", death.to_bytes()),  # not at home: refused
        RawMessage(channels, 0, 3, b"k", unsigned_app.to_bytes()),  # ours, unsigned: refused
        RawMessage(channels, 0, 4, b"k", two_types),  # cannot be told: full path, refused
        RawMessage(channels, 0, 5, b"k", value, tuple(sign_headers(value, key))),
    ])
    assert EVENTS_NOT_HANDLED.labels("probe", deaths)._value.get() - before == 1
    assert EVENTS_NOT_HANDLED.labels("probe", channels)._value.get() == 0
    async with db.pool.acquire() as conn:
        assert [r["event_id"] for r in await conn.fetch("SELECT event_id FROM seen")] == [
            signed_app.id]
        assert await conn.fetchval(
            "SELECT count(*) FROM processed_messages WHERE event_id = $1", death.id) == 0
        # The three refused records' dead letters (sealed: they may hold personal data).
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 3
