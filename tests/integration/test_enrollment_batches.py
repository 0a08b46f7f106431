"""Enrollment's set-based handlers leave exactly what one event at a time leaves."""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest_asyncio

from services.enrollment import repository as repo
from services.enrollment.handlers import PER_EVENT, ROUTES
from shared.contracts import Payload
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.envelope import Envelope
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.db.pool import Database
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, is_batched
from shared.settings import EnrollmentSettings
from tests.conftest import REGION, TestStack
from tests.helpers import counting_groups, envelope, fresh_schemas, raw_batch


@pytest_asyncio.fixture
async def two_schemas(stack: TestStack) -> AsyncIterator[tuple[Database, Database]]:
    """Two empty enrollment schemas: one fed a batch at once, one an event at a time."""
    async with fresh_schemas(stack.database_url, stack.namespace, "enrollment") as (one, two):
        yield one, two


def _consumer(stack: TestStack, db: Database, routes: dict[str, Any]) -> EventConsumer:
    settings = EnrollmentSettings(
        broker_url=stack.broker_url, MEDINS_DATABASE_URL=stack.database_url,
        namespace=stack.namespace, region=REGION)
    return EventConsumer("enrollment", settings, db, dict(routes))


def _story() -> tuple[list[Envelope], dict[str, str]]:
    """Applications, decisions and payments of several people in one batch: a whole story
    for one person (applied, approved, paid, the payment re-sent under a new event id), a
    payment before its approval (parked, then released), an application id used twice (by
    the same person: refused; then by another, whose decision came first and waited: an
    application of that person's own, under an id of its own), more applications while
    enrolling, a
    decision before its application, a rejection and a new application after it, a wrong
    region, a decision for an application that never comes, a payment of nobody known."""
    now = datetime.now(UTC)
    year = now.year
    p = [people.resident_id() for _ in range(8)]
    tag = uuid.uuid4().hex[:6].upper()
    app = [f"APP-{tag}-{i}" for i in range(9)]

    def apply(i: int, application_id: str, **extra: Any) -> EnrollmentApplicationSubmitted:
        return EnrollmentApplicationSubmitted(**{
            "application_id": application_id, "person_id": p[i], "name": f"测试{i}",
            "insurance_type": "resident", "mobile": people.mobile(), "channel": "window",
            "region_code": REGION, "submitted_at": now} | extra)

    def decide(i: int, application_id: str, decision: str = "approve",
               reasons: list[str] | None = None) -> EnrollmentReviewDecided:
        return EnrollmentReviewDecided(application_id=application_id, person_id=p[i],
                                       decision=decision, reviewer="staff-017",
                                       reasons=reasons or [], decided_at=now)

    def pay(i: int, ref: str, application_id: str | None) -> ContributionPaymentConfirmed:
        return ContributionPaymentConfirmed(
            payment_ref=f"TAX-{tag}-{ref}", person_id=p[i], application_id=application_id,
            insurance_type="resident", period_start=date(year, 1, 1),
            period_end=date(year, 12, 31), amount_fen=40_000, paid_at=now)

    events: list[Payload] = [
        apply(0, app[0]), decide(0, app[0]), pay(0, "1", app[0]),
        pay(1, "2", app[1]),  # nobody known yet: parked
        apply(1, app[1]),
        pay(1, "3", app[1]),  # not yet approved: parked
        apply(2, app[2]), apply(2, app[2]),  # the same id twice: refused
        decide(3, app[2]),  # only another person's under this number yet: waits
        apply(3, app[2]),  # another person's number: an application of its own, decided
        apply(3, app[3]), apply(3, app[4]),  # enrolling by that one: refused
        decide(4, app[5]),  # before its application: waits
        decide(1, app[1]),  # releases payment 3
        apply(4, app[5]),  # decided at once by the decision that waited
        apply(5, app[6]), decide(5, app[6], "reject", ["材料不全"]),
        apply(5, app[7]),  # after the rejection: taken
        decide(5, app[7], "reject"),  # no reasons: refused
        apply(6, app[8], region_code="370100"),  # another region: refused
        decide(6, f"APP-{tag}-NEVER"),  # waits for good
        pay(7, "4", None),  # nobody enrolled: parked
        decide(0, app[0]),  # decided already: refused
    ]
    events.append(pay(4, "5", app[5]))
    envs = [envelope(e) for e in events]
    # The tax authority sends payment 1 again under a new event id.
    envs.insert(3, envelope(pay(0, "1", app[0])))
    return envs, {f"p{i}": pid for i, pid in enumerate(p)}


async def _state(db: Database) -> dict[str, Any]:
    """What the handling left, without what differs between two runs by design (row times,
    serial ids, the sealed copies' nonces: each sealed value is compared opened)."""
    times = {"created_at", "updated_at", "recorded_at", "refused_at", "waiting_since",
             "resumed_at", "received_at", "id"}

    def plain(r: Any, *sealed: tuple[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in times} | dict(sealed)

    async with db.pool.acquire() as conn:
        persons = [plain(r, ("person_ref", repo.PERSONS_ID.open(r["person_ref"])),
                         *((c.column, c.open(r[c.column], repo.PERSONS_ID.open(r["person_ref"])))
                           for c in (repo.NAME, repo.MOBILE, repo.EMAIL)))
                   for r in await conn.fetch("SELECT * FROM persons ORDER BY person_key")]
        apps = [plain(r, ("person_ref", repo.APPLICANT.open(r["person_ref"])))
                for r in await conn.fetch("SELECT * FROM applications"
                                          " ORDER BY application_id")]
        # A person's rows in order; rows of different people are written in the order
        # their groups ran, which Kafka never orders across keys anyway.
        history = sorted(
            (plain(r, ("person_ref", repo.HISTORY_OF.open(r["person_ref"])))
             for r in await conn.fetch("SELECT * FROM history ORDER BY id")),
            key=lambda h: h["person_key"])
        payments = [plain(r, ("person_ref", repo.PAYER.open(r["person_ref"])))
                    for r in await conn.fetch("SELECT * FROM payments ORDER BY payment_ref")]
        periods = [plain(r, ("person_ref", repo.COVERED.open(r["person_ref"])))
                   for r in await conn.fetch("SELECT * FROM coverage_periods"
                                             " ORDER BY person_key, seq")]
        scheduled = [plain(r, ("person_ref", repo.SCHEDULED_FOR.open(r["person_ref"])))
                     for r in await conn.fetch("SELECT * FROM scheduled_changes ORDER BY id")]
        refused = sorted(
            (plain(r, ("person_ref", repo.REFUSED.open(r["person_ref"])),
                   ("reason", repo.REFUSAL.open(r["reason"], repo.REFUSED.open(r["person_ref"]),
                                                r["reference"], r["cause_id"])))
             for r in await conn.fetch("SELECT * FROM refused_requests ORDER BY id")),
            key=lambda x: x["person_key"])
        waiting = [(r["event_id"], r["application_id"], r["resumed_at"] is not None)
                   for r in await conn.fetch("SELECT * FROM awaiting_application"
                                             " ORDER BY event_id")]
        emitted, dead = [], []
        for r in await conn.fetch("SELECT topic, key, value, headers FROM outbox ORDER BY id"):
            if r["topic"].endswith(".deadletter"):
                headers = dict(json.loads(r["headers"]))
                dead.append((headers["dlq-offset"], headers["dlq-reason"]))
                continue
            doc = json.loads(r["value"])
            emitted.append((r["topic"], r["key"], doc["id"], doc["type"], doc["data"]))
        processed = await conn.fetchval("SELECT count(*) FROM processed_messages")
    return {"persons": persons, "applications": apps, "history": history,
            "payments": payments, "periods": periods, "scheduled": scheduled,
            "refused": refused, "waiting": waiting, "emitted": emitted, "dead": dead,
            "processed": processed}


async def test_a_batch_at_once_leaves_what_one_event_at_a_time_leaves(
        stack: TestStack, two_schemas: tuple[Database, Database]) -> None:
    events, who = _story()
    batched, single = two_schemas
    calls: dict[str, list[int]] = {}
    at_once = _consumer(stack, batched, {t: counting_groups(t, h, calls) if is_batched(h) else h
                                         for t, h in ROUTES.items()})
    await at_once.process(raw_batch(events))
    one_by_one = _consumer(stack, single, PER_EVENT)
    for raw in raw_batch(events):
        await one_by_one.process([raw])
    got, expected = await _state(batched), await _state(single)
    for part in expected:
        assert got[part] == expected[part], part
    # Each type's events in few calls (a person's later events in a later group), none
    # redone one at a time.
    assert sum(calls[EnrollmentApplicationSubmitted.event_type]) == 11
    assert len(calls[EnrollmentApplicationSubmitted.event_type]) < 11
    assert sum(calls[ContributionPaymentConfirmed.event_type]) == 6
    assert got["dead"] == []
    # And what that is, in short.
    states = {a["application_id"].rsplit("-", 1)[1]: a["state"] for a in got["applications"]
              if a["channel_ref"] is None}
    assert states == {"0": "paid", "1": "paid", "2": "submitted", "5": "paid",
                      "6": "rejected", "7": "submitted"}
    # The same number from another person is that person's application, under its own id.
    [own] = [a for a in got["applications"] if a["channel_ref"] is not None]
    assert own["person_ref"] == who["p3"] and own["state"] == "approved"
    assert own["application_id"].startswith(f"{own['channel_ref']}-")
    assert own["channel_ref"].endswith("-2")
    status = {p["person_ref"]: p["status"] for p in got["persons"]}
    assert status[who["p0"]] == status[who["p1"]] == status[who["p4"]] == "active"
    assert status[who["p5"]] == "none"
    pay = {p["payment_ref"].rsplit("-", 1)[1]: p["state"] for p in got["payments"]}
    # Payments before the approval are released by it; payment 5 names an approved one.
    assert pay == {"1": "applied", "2": "applied", "3": "applied", "4": "parked",
                   "5": "applied"}
    rules = sorted(r["rule"] for r in got["refused"])
    # Person 3, enrolling (approved) under their own application, is not taken twice.
    assert rules == sorted(["duplicate_application", "already_insured", "already_insured",
                            "reasons_required", "wrong_region", "review_not_pending"])
    assert [w[2] for w in got["waiting"]].count(False) == 1  # the one that never comes


async def test_a_batch_split_in_two_leaves_what_one_batch_leaves(
        stack: TestStack, two_schemas: tuple[Database, Database]) -> None:
    """Whatever the cut between batches (stored rows read back by the next batch)."""
    events, _ = _story()
    whole, split = two_schemas
    await _consumer(stack, whole, ROUTES).process(raw_batch(events))
    halves = _consumer(stack, split, ROUTES)
    raws = raw_batch(events)
    for part in (raws[:9], raws[9:17], raws[17:]):
        await halves.process(part)
    got, expected = await _state(split), await _state(whole)
    for part in expected:
        assert got[part] == expected[part], part


async def test_a_bug_on_one_event_of_a_batch_costs_that_event_alone(
        stack: TestStack, two_schemas: tuple[Database, Database], monkeypatch: Any) -> None:
    """The group is redone one event at a time: one dead letter, the rest as one by one."""
    from services.enrollment.domain import enrollment as rules

    submit = rules.submit_application

    def buggy(cmd: Any, *args: Any) -> Any:
        if cmd.name == "测试3":
            raise ValueError("a bug in the rules")
        return submit(cmd, *args)

    monkeypatch.setattr(rules, "submit_application", buggy)
    events, _ = _story()
    batched, single = two_schemas
    calls: dict[str, list[int]] = {}
    await _consumer(stack, batched, {t: counting_groups(t, h, calls) if is_batched(h) else h
                                     for t, h in ROUTES.items()}).process(raw_batch(events))
    one_by_one = _consumer(stack, single, PER_EVENT)
    for raw in raw_batch(events):
        await one_by_one.process([raw])
    got, expected = await _state(batched), await _state(single)
    for part in expected:
        assert got[part] == expected[part], part
    # Person 3's three applications reach the rules and fail (the one under another
    # person's number is an application of its own); the groups holding them are redone
    # one by one.
    assert [d[0] for d in got["dead"]] == ["10", "11", "12"]
    assert all("ValueError: a bug in the rules" in d[1] for d in got["dead"])
    assert 1 in calls[EnrollmentApplicationSubmitted.event_type]


async def test_a_batch_lookup_does_not_compare_every_row_with_every_element(
        two_schemas: tuple[Database, Database]) -> None:
    """With a plan cached while the table was small, or with two lookups joined by OR, each
    batch scanned the applications comparing every row with every element of its arrays (the
    time grew with rows × batch). The pools plan for the arrays they get, and the lookup runs
    as an index scan or a hashed filter: never a plain filter holding the whole array."""
    db, _ = two_schemas
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        await conn.execute(
            "INSERT INTO applications (application_id, person_ref, person_key, insurance_type,"
            " channel, state) SELECT 'APP-' || i, 'ref', 'key-' || i, 'resident', 'app',"
            " 'submitted' FROM generate_series(1, 3000) i")
        wanted = [f"APP-{i}" for i in range(2500, 3100)]
        keys = [f"key-{i}" for i in range(1, 1200)]
        ran: list[str] = []
        conn.add_query_logger(lambda record: ran.append(record.query))
        for _ in range(7):  # past the five executions after which a generic plan may be kept
            rows = await repo.load_applications_of(conn, wanted, keys)
        assert {r["application_id"] for r in rows} == (
            {f"APP-{i}" for i in range(2500, 3001)} | {f"APP-{i}" for i in range(1, 1200)})
        # The statement the repository ran, planned as it runs: no node filters with an OR.
        plan = json.dumps(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {ran[-1]}", wanted, keys))
        assert "Plan" in plan and " OR " not in plan
