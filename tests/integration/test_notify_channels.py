"""Notify against real protocols: SMPP (smpp34 server) and SMTP (aiosmtpd), real PostgreSQL."""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest_asyncio

from services.notify.app import CATALOGUE, build_dispatcher
from services.notify.dispatcher import Dispatcher
from services.notify.domain.catalogue import Catalogue
from services.notify.handlers import routes
from services.notify.repository import ADDRESSEE
from shared.contracts.enrollment import ContactRecorded, InsuredStatusChanged
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import Database, connect
from shared.db.sealed import resident_key, resident_keys
from shared.devstack import people
from shared.devstack.broker import free_port
from shared.devstack.mailserver import MailServer, read_mailbox
from shared.devstack.smsc import LocalSmsc
from shared.messaging.consumer import EventConsumer, RawMessage
from shared.settings import NotifySettings
from tests.conftest import REGION, TestStack
from tests.helpers import envelope, poll


@dataclass
class NotifyRig:
    db: Database
    smsc: LocalSmsc
    mail: MailServer
    consumer: EventConsumer
    dispatcher: Dispatcher
    offset: int = 0

    async def feed(self, *events: Any) -> None:
        batch = []
        for env in events:
            self.offset += 1
            batch.append(RawMessage("enrollment.events", 0, self.offset, b"k", env.to_bytes()))
        await self.consumer.process(batch)

    async def rows(self, person_id: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(
                "SELECT * FROM deliveries WHERE person_key = ANY($1::text[]) ORDER BY id",
                resident_keys(person_id))]

    async def drain(self, channel: str = "sms") -> None:
        while await self.dispatcher.dispatch_once(channel):
            pass


@pytest_asyncio.fixture
async def rig(stack: TestStack, tmp_path: Path) -> AsyncIterator[NotifyRig]:
    schema = f"{stack.namespace}notify_{uuid.uuid4().hex[:6]}"
    conn = await connect(stack.database_url)
    await migrate(conn, schema, service_migrations("notify"))
    await conn.close()
    smsc = await LocalSmsc(free_port(), reject_prefixes=("1399999",)).start()
    mail = MailServer(tmp_path / "mail", free_port()).start()
    settings = NotifySettings(
        broker_url=stack.broker_url, MEDINS_DATABASE_URL=stack.database_url, region=REGION,
        namespace=stack.namespace, smtp_port=mail.port, smpp_port=smsc.port,
        send_max_attempts=3, send_backoff_seconds=0.0, sms_rate_per_second=1000,
        smpp_submit_timeout_seconds=1.0, breaker_open_seconds=0.2, drain_seconds=5.0,
        state_dir=tmp_path / "state")
    db = Database(stack.database_url, schema)
    await db.start()
    dispatcher = build_dispatcher(db, settings)
    consumer = EventConsumer("notify", settings, db, routes(Catalogue.load(CATALOGUE)))
    yield NotifyRig(db, smsc, mail, consumer, dispatcher)
    if not dispatcher.stopping:
        await dispatcher.on_stop()
    await db.stop()
    mail.stop()
    await smsc.stop()


def person_events(mobile: str | None = None, email: str | None = None,
                  name: str = "王伟") -> tuple[str, Any, Any]:
    person = people.resident_id()
    contact = envelope(ContactRecorded(person_id=person, name=name,
                                       mobile=mobile or people.mobile(), email=email))
    activated = envelope(InsuredStatusChanged(
        person_id=person, insurance_type="resident", from_status="pending", to_status="active",
        reason="paid", effective_on=date(2026, 1, 1), paid_until=date(2026, 12, 31)))
    return person, contact, activated


async def test_long_chinese_sms_arrives_concatenated_and_receipt_marks_it_delivered(
        rig: NotifyRig) -> None:
    # A long name makes the activation text exceed 70 characters: two UCS-2 parts.
    person, contact, activated = person_events(name="欧阳" + "慕容" * 12)
    await rig.feed(contact, activated)
    await rig.drain()
    received = await poll(lambda: _now(rig.smsc.received),
                          lambda r: any(m.to == contact.data["mobile"] for m in r))
    sms = next(m for m in received if m.to == contact.data["mobile"])
    assert sms.parts >= 2 and sms.data_coding == 8
    assert sms.text.startswith("【医保服务】欧阳慕容") and "参保状态为正常" in sms.text
    assert sms.text.endswith("有效期至2026-12-31。")
    rows = await poll(lambda: rig.rows(person),
                      lambda rs: rs[0]["delivery_state"] == "delivered")
    assert rows[0]["status"] == "sent" and len(rows[0]["provider_ids"]) == sms.parts


async def test_redelivered_event_sends_nothing_new(rig: NotifyRig) -> None:
    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    await rig.feed(activated)  # the broker hands it over again
    await rig.drain()
    await rig.drain()
    assert [m.to for m in rig.smsc.received].count(contact.data["mobile"]) == 1
    assert len(await rig.rows(person)) == 1


async def test_email_and_sms_go_out_through_real_servers(rig: NotifyRig) -> None:
    address = f"p{uuid.uuid4().hex[:6]}@example.cn"
    person, contact, activated = person_events(email=address)
    await rig.feed(contact, activated)
    await rig.drain("sms")
    await rig.drain("email")
    mails = [m for m in read_mailbox(rig.mail.folder) if address in m.recipients]
    assert len(mails) == 1 and mails[0].subject == "参保生效通知"
    assert "2102" in mails[0].body and person not in mails[0].body
    assert {r["channel"]: r["status"] for r in await rig.rows(person)} == {
        "sms": "sent", "email": "sent"}


async def test_an_event_before_the_contact_data_waits_for_it(rig: NotifyRig) -> None:
    person, contact, activated = person_events()
    await rig.feed(activated)  # another topic's event overtook the contact data
    rows = await rig.rows(person)
    assert [(r["channel"], r["status"]) for r in rows] == [("none", "parked")]
    await rig.feed(contact)
    await rig.drain()
    rows = await rig.rows(person)
    assert [(r["channel"], r["status"]) for r in rows] == [("none", "resolved"), ("sms", "sent")]
    assert [m.to for m in rig.smsc.received].count(contact.data["mobile"]) == 1


async def test_channel_preferences_are_respected(rig: NotifyRig) -> None:
    from datetime import UTC, datetime

    from shared.contracts.channels import NotificationPreferencesSet

    address = f"p{uuid.uuid4().hex[:6]}@example.cn"
    person, contact, activated = person_events(email=address)
    prefs = envelope(NotificationPreferencesSet(person_id=person, sms=False, email=True,
                                                changed_at=datetime.now(UTC)))
    await rig.feed(contact, prefs, activated)
    assert [r["channel"] for r in await rig.rows(person)] == ["email"]


async def test_permanent_failures_park_at_once(rig: NotifyRig) -> None:
    person, contact, activated = person_events(mobile="13999990000",
                                               email=f"bounce{uuid.uuid4().hex[:4]}@example.cn")
    await rig.feed(contact, activated)
    await rig.drain("sms")
    await rig.drain("email")
    rows = await rig.rows(person)
    assert [(r["status"], r["attempts"]) for r in rows] == [("parked", 1), ("parked", 1)]
    assert "0xb" in rows[0]["last_error"] or "refused" in rows[0]["last_error"]
    assert "550" in rows[1]["last_error"] or "refused" in rows[1]["last_error"]


async def test_transient_failures_retry_then_park_and_operator_requeues(rig: NotifyRig) -> None:
    from services.notify import repository as repo

    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    rig.smsc.throttle_next = 4  # one refusal more than the 3 attempts allowed
    await rig.drain()
    rows = await rig.rows(person)
    assert rows[0]["status"] == "parked" and rows[0]["attempts"] == 3
    assert contact.data["mobile"] not in [m.to for m in rig.smsc.received]
    async with rig.db.pool.acquire() as conn:
        requeued = await repo.requeue(conn, [rows[0]["id"]])
    assert len(requeued) == 1
    await rig.drain()  # one refusal left, then it goes
    rows = await rig.rows(person)
    assert rows[0]["status"] == "sent" and rows[0]["attempts"] == 2
    assert [m.to for m in rig.smsc.received].count(contact.data["mobile"]) == 1


async def test_lost_connection_after_submit_is_unknown_and_not_resent(rig: NotifyRig) -> None:
    from services.notify import repository as repo

    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    rig.smsc.vanish_next = True
    submissions = len(rig.smsc.submissions)
    await rig.drain()
    await rig.drain()
    rows = await rig.rows(person)
    assert rows[0]["status"] == "unknown"
    assert len(rig.smsc.submissions) == submissions + 1  # handed over once, never again
    # A worker that died mid-send leaves 'sending'; the sweep turns it into 'unknown',
    # but never a row whose answer a live worker still holds.
    async with rig.db.pool.acquire() as conn:
        await conn.execute("UPDATE deliveries SET status = 'sending',"
                           " claimed_at = now() - interval '1 hour' WHERE id = $1", rows[0]["id"])
        assert await repo.stale_sending_to_unknown(conn, 120, [rows[0]["id"]]) == 0
        assert await repo.stale_sending_to_unknown(conn, 120) == 1
        # A live worker's own claim that it holds nothing of (the database lost the claim's
        # reply on its way down) was never handed over: back to pending, not 'unknown'.
        await conn.execute("UPDATE deliveries SET status = 'sending', claimed_by = 'me',"
                           " claimed_at = now() - interval '1 hour' WHERE id = $1", rows[0]["id"])
        assert await repo.stale_sending_to_unknown(conn, 120, [], "another worker") == 1
        await conn.execute("UPDATE deliveries SET status = 'sending' WHERE id = $1",
                           rows[0]["id"])
        assert await repo.stale_sending_to_unknown(conn, 120, [], "me") == 0
        assert (await rig.rows(person))[0]["status"] == "pending"


async def test_rate_limit_paces_sending_without_holding_up_consumption(rig: NotifyRig) -> None:
    from services.notify.ratelimit import TokenBucket

    rig.dispatcher.limits["sms"] = TokenBucket(10, burst=1)
    people_events = [person_events() for _ in range(6)]
    for _, contact, activated in people_events:
        await rig.feed(contact, activated)
    before = len(rig.smsc.submissions)
    await rig.drain()
    stamps = rig.smsc.submissions[before:]
    assert len(stamps) == 6
    # 6 messages at 10/s with no burst cannot span less than 5 intervals of 0.1 s.
    assert stamps[-1] - stamps[0] >= 0.45
    # Consumption never waited on the gateway: all deliveries were claimed before sending.
    for person, _, _ in people_events:
        assert len(await rig.rows(person)) == 1


class _FlakyPool:
    """The real pool, refusing the next `failures` acquisitions (the database away)."""

    def __init__(self, pool: Any, failures: int) -> None:
        self.pool, self.failures = pool, failures

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("database away (test)")
        return self.pool.acquire(*args, **kwargs)


class _FlakyDb:
    def __init__(self, db: Database, failures: int) -> None:
        self.schema, self.pool = db.schema, _FlakyPool(db.pool, failures)


async def _outbox_types(rig: NotifyRig, source_event_id: str) -> list[str]:
    async with rig.db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT value FROM outbox ORDER BY id")
    out = []
    for r in rows:
        body = bytes(r["value"]).decode()
        if source_event_id in body:
            out.append(json.loads(body)["type"])
    return out


async def _sent_event_keys(rig: NotifyRig, source_event_id: str) -> list[str]:
    """The keys (the person's ID: one person's events, one partition) of message.sent."""
    async with rig.db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT key, value FROM outbox ORDER BY id")
    return [bytes(r["key"]).decode() for r in rows
            if source_event_id in bytes(r["value"]).decode()
            and json.loads(bytes(r["value"]))["type"] == "cn.medins.notify.message.sent.v1"]


async def test_answer_is_recorded_once_the_database_is_back(rig: NotifyRig) -> None:
    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    async with rig.db.pool.acquire() as conn:
        due = [dict(r) for r in await repo_claim(conn)]
    real_db = rig.dispatcher.db
    rig.dispatcher.db = _FlakyDb(real_db, failures=3)  # type: ignore[assignment]
    result = await rig.dispatcher.senders["sms"].send(due[0]["recipient"], None,
                                                      due[0]["body"], "k")
    await rig.dispatcher.record(due[0], {"kind": "sent", "provider_ids": result.provider_ids})
    rig.dispatcher.db = real_db
    rows = await rig.rows(person)
    assert rows[0]["status"] == "sent" and rows[0]["provider_ids"] == result.provider_ids
    # The done mark follows the database write without being awaited by it.
    await rig.dispatcher._journal_lines.wait_idle()
    assert rig.dispatcher.journal.pending() == []
    assert await _outbox_types(rig, activated.id) == ["cn.medins.notify.message.sent.v1"]


async def test_an_answer_the_database_never_took_is_replayed_at_next_start(
        rig: NotifyRig) -> None:
    from services.notify.dispatcher import Dispatcher

    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    async with rig.db.pool.acquire() as conn:
        due = [dict(r) for r in await repo_claim(conn)]
    real_db = rig.dispatcher.db
    rig.dispatcher.db = _FlakyDb(real_db, failures=10**6)  # type: ignore[assignment]
    rig.dispatcher._give_up_at = 0  # stopping: the database never came back in time
    await rig.dispatcher.record(due[0], {"kind": "sent", "provider_ids": ["m1"]})
    rig.dispatcher.db = real_db
    assert (await rig.rows(person))[0]["status"] == "sending"
    # The journal, a local file, names the person by the row's sealed ID only.
    assert person not in rig.dispatcher.journal.path.read_text(encoding="utf-8")
    # The sweep of another worker must not guess while the answer is held.
    assert due[0]["id"] in rig.dispatcher.holding
    again = Dispatcher(real_db, rig.dispatcher.settings, rig.dispatcher.senders,
                       rig.dispatcher.limits, journal=rig.dispatcher.journal)
    await again.replay_journal()
    await again.replay_journal()  # twice changes nothing
    rows = await rig.rows(person)
    assert rows[0]["status"] == "sent" and rows[0]["provider_ids"] == ["m1"]
    assert await _outbox_types(rig, activated.id) == ["cn.medins.notify.message.sent.v1"]
    assert await _sent_event_keys(rig, activated.id) == [person]
    rig.dispatcher._give_up_at = None


async def test_a_journal_written_before_the_id_was_sealed_still_replays(rig: NotifyRig) -> None:
    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    async with rig.db.pool.acquire() as conn:
        [due] = [dict(r) for r in await repo_claim(conn)]
    # An answer as the previous version journalled it: the person's ID in clear.
    rig.dispatcher.journal.append({
        "id": due["id"], "source_event_id": due["source_event_id"], "channel": "sms",
        "template": due["template"], "attempts": due["attempts"], "person_id": person,
        "kind": "sent", "provider_ids": ["m1"]})
    await rig.dispatcher.replay_journal()
    assert (await rig.rows(person))[0]["status"] == "sent"
    assert await _sent_event_keys(rig, activated.id) == [person]


async def repo_claim(conn: Any) -> Any:
    from services.notify import repository as repo

    return await repo.claim_due(conn, "sms", 1)


async def test_operator_retry_never_resends_what_was_handed_over(rig: NotifyRig) -> None:
    from services.notify import repository as repo

    person, contact, activated = person_events()
    await rig.feed(contact, activated)
    await rig.drain()
    # Its receipt in first, so none comes in after the records are made to show nothing.
    (sent,) = await poll(lambda: rig.rows(person),
                         lambda rows: rows[0]["delivery_state"] == "delivered")
    async with rig.db.pool.acquire() as conn:
        # Even were it marked unknown or parked, a gateway id means it went out.
        await conn.execute("UPDATE deliveries SET status = 'unknown' WHERE id = $1", sent["id"])
        assert await repo.requeue(conn, [sent["id"]], force=[sent["id"]]) == []
        # Records showing nothing went out: no gateway id, no sent time, no part and no
        # receipt (its receipt may have come in already: forgotten too).
        await conn.execute("DELETE FROM sms_receipts WHERE message_id IN (SELECT message_id"
                           " FROM sms_parts WHERE delivery_id = $1)", sent["id"])
        await conn.execute("DELETE FROM sms_parts WHERE delivery_id = $1", sent["id"])
        await conn.execute("UPDATE deliveries SET status = 'unknown', sent_at = NULL,"
                           " provider_ids = '{}' WHERE id = $1", sent["id"])
        assert await repo.requeue(conn, [sent["id"]]) == []  # unknown needs --force
        assert await repo.requeue(conn, None) == []  # nor does --all take it
        assert len(await repo.requeue(conn, [sent["id"]], force=[sent["id"]])) == 1


async def test_graceful_stop_waits_for_answers_in_flight_and_takes_nothing_new(
        rig: NotifyRig) -> None:
    import asyncio

    first = person_events()
    await rig.feed(first[1], first[2])
    rig.smsc.answer_delay = 0.5  # within the 1 s submit timeout
    before = len(rig.smsc.submissions)
    sending = asyncio.create_task(rig.dispatcher.dispatch_once("sms"))
    await poll(lambda: _now(rig.smsc.submissions), lambda s: len(s) > before)
    second = person_events()
    await rig.feed(second[1], second[2])
    await rig.dispatcher.on_stop()  # what SIGTERM does
    await sending
    assert [r["status"] for r in await rig.rows(first[0])] == ["sent"]
    assert [r["status"] for r in await rig.rows(second[0])] == ["pending"]
    assert await rig.dispatcher.dispatch_once("sms") == 0


async def test_smsc_down_opens_the_breaker_and_the_queue_drains_when_it_is_back(
        rig: NotifyRig) -> None:
    import asyncio

    rig.dispatcher.settings.send_max_attempts = 0  # the horizon alone decides
    port = rig.smsc.port
    await rig.smsc.stop()
    persons = [person_events() for _ in range(8)]
    for _, contact, activated in persons:
        await rig.feed(contact, activated)
    breaker = rig.dispatcher.breakers["sms"]
    for _ in range(5):  # breaker_failures rounds, one message each
        await rig.dispatcher.dispatch_once("sms")
    assert breaker.is_open and await rig.dispatcher.dispatch_once("sms") == 0
    rows = [r for p, _, _ in persons for r in await rig.rows(p)]
    assert all(r["status"] == "pending" for r in rows)
    assert sum(r["attempts"] for r in rows) == 5  # attempts are not burned while it is down
    rig.smsc = await LocalSmsc(port).start()

    async def drained() -> list[str]:
        await rig.dispatcher.dispatch_once("sms")
        return [r["status"] for p, _, _ in persons for r in await rig.rows(p)]

    await poll(drained, lambda states: states == ["sent"] * 8, timeout=20)
    assert not breaker.is_open
    for _, contact, _ in persons:
        assert [m.to for m in rig.smsc.received].count(contact.data["mobile"]) == 1
    await asyncio.sleep(0)


async def test_the_new_delivery_listener_comes_back_after_its_connection_is_lost(
        rig: NotifyRig) -> None:
    """The database drops the LISTEN connection (an outage, a restart): a new one is opened
    and a delivery committed afterwards wakes the channel loops again at once."""
    import asyncio

    listening = asyncio.create_task(Dispatcher._listen(rig.dispatcher))
    try:
        def listener_pid(_: object = None) -> int | None:
            conn = rig.dispatcher._listener
            return None if conn is None or conn.is_closed() else conn.get_server_pid()

        first = (await poll(_now_value(listener_pid), lambda pid: pid is not None))
        async with rig.db.pool.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend($1)", first)
        await poll(_now_value(listener_pid), lambda pid: pid not in (None, first), timeout=15)
        wake = rig.dispatcher._wakes["sms"]
        wake.clear()
        _, contact, activated = person_events()
        await rig.feed(contact, activated)
        await poll(_now_value(wake.is_set), bool, timeout=5)
    finally:
        rig.dispatcher.stopping = True
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await rig.dispatcher._release_listener()
        rig.dispatcher.stopping = False


def _now_value(read: Any) -> Any:
    async def fetch() -> Any:
        return read()
    return fetch


async def _now(value: Any) -> Any:
    return list(value)




async def test_cli_retry_refuses_unknown_without_force_and_handed_over_always(
        tmp_path: Path, stack: TestStack, workers: dict[str, Any]) -> None:
    import subprocess
    import sys

    conn = await stack.connect("notify")
    try:
        ids = {}
        person = people.resident_id()
        for label, status, provider in (("unknown", "unknown", []),
                                        ("handed", "unknown", ["m-1"])):
            ids[label] = await conn.fetchval(
                "INSERT INTO deliveries (source_event_id, person_ref, person_key, channel,"
                " recipient, template, body, status, attempts, provider_ids, next_attempt_at)"
                " VALUES ($1, $2, $3, 'sms', $4, 'manual', '【医保服务】测试消息', $5, 1, $6,"
                " now() + interval '1 day') RETURNING id",
                f"evt-{uuid.uuid4().hex}", ADDRESSEE.seal(person), resident_key(person),
                people.mobile(), status, provider)

        def retry(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "shared.cli", "notify", "retry", *args],
                                  env=stack.env(), capture_output=True, text=True, cwd=tmp_path)

        refused = retry(str(ids["unknown"]), str(ids["handed"]))
        assert refused.returncode == 1 and "requeued 0" in refused.stdout
        assert f"--force {ids['unknown']}" in refused.stdout
        assert "never resent" in refused.stdout
        forced = retry("--force", str(ids["unknown"]), "--force", str(ids["handed"]))
        assert "requeued 1" in forced.stdout, forced.stdout + forced.stderr
        states = dict(await conn.fetch("SELECT id, status FROM deliveries WHERE id = ANY($1)",
                                       list(ids.values())))
        assert states[ids["handed"]] == "unknown"
        assert states[ids["unknown"]] in ("pending", "sending", "sent")
    finally:
        await conn.close()


async def test_a_batch_of_many_people_claims_as_one_by_one_would(rig: NotifyRig) -> None:
    # One batch, keyed by person as on the topic: contacts, then the events of people with
    # and without contact data; the set-based handler loads contacts once for all.
    people_ = [person_events(email=f"b{uuid.uuid4().hex[:6]}@example.cn") for _ in range(4)]
    batch = [c for _, c, _ in people_[:3]] + [a for _, _, a in people_]
    rig.offset += len(batch)
    await rig.consumer.process([
        RawMessage("enrollment.events", 0, rig.offset + i, env.data["person_id"].encode(),
                   env.to_bytes()) for i, env in enumerate(batch)])
    for person, _, _ in people_[:3]:
        assert sorted((r["channel"], r["status"]) for r in await rig.rows(person)) == [
            ("email", "pending"), ("sms", "pending")]
    last, contact, _ = people_[3]
    assert [(r["channel"], r["status"]) for r in await rig.rows(last)] == [("none", "parked")]
    await rig.feed(contact)
    assert sorted((r["channel"], r["status"]) for r in await rig.rows(last)) == [
        ("email", "pending"), ("none", "resolved"), ("sms", "pending")]


async def _sent_events(rig: NotifyRig, source_event_id: str) -> list[str]:
    """Ids of the message.sent events notify wrote (outbox) for this event's messages."""
    from shared.contracts.notify import MessageSent

    async with rig.db.pool.acquire() as conn:
        docs = [json.loads(r["value"]) for r in await conn.fetch(
            "SELECT value FROM outbox ORDER BY id")]
    return [d["id"] for d in docs if d["type"] == MessageSent.event_type
            and d["data"]["source_event_id"] == source_event_id]


async def _lost_answer_becomes_sent(rig: NotifyRig, name: str, lose_answer_at: int,
                                    parts: int) -> None:
    """The SMSC takes the SMS (and sends its receipts) but the answer to part
    `lose_answer_at` never comes back: 'unknown', never resent, not even by --force; once the
    receipts settle, notify's own timer finds it went out: 'sent', its sent event once."""
    from services.notify import outcomes
    from services.notify import repository as repo

    rig.dispatcher.settings.receipt_settle_seconds = 0.5
    person, contact, activated = person_events(name=name)
    mobile = contact.data["mobile"]
    await rig.feed(contact, activated)
    rig.smsc.lose_answer_at = lose_answer_at
    before = len(rig.smsc.submissions)
    await rig.drain()
    (row,) = await rig.rows(person)
    assert row["status"] == "unknown"
    assert len(rig.smsc.submissions) == before + parts  # every part handed over once
    assert [m.to for m in rig.smsc.received].count(mobile) == 1
    assert await _sent_events(rig, activated.id) == []
    async with rig.db.pool.acquire() as conn:
        # Parts whose answer came are parts: their receipts reach the message.
        linked = await conn.fetchval("SELECT count(*) FROM sms_parts WHERE delivery_id = $1",
                                     row["id"])
        assert linked == lose_answer_at - 1
        # The receipts came in: an operator's --force does not resend it.
        await poll(lambda: conn.fetchval("SELECT count(*) FROM sms_receipts"
                                          " WHERE handset_key = ANY($1::text[])",
                                          repo.handset_keys(mobile)),
                   lambda n: n == parts)
        assert await repo.requeue(conn, [row["id"]], force=[row["id"]]) == []
        (why,) = await repo.not_requeueable(conn, [row["id"]])
        assert why["receipted"] and why["status"] == "unknown"

    await rig.dispatcher.start()  # its timer reconciles, as in the worker
    try:
        rows = await poll(lambda: rig.rows(person), lambda rs: rs[0]["status"] == "sent",
                          timeout=30)
    finally:
        await rig.dispatcher.stop()
    assert rows[0]["delivery_state"] == "delivered" and len(rows[0]["provider_ids"]) == parts
    sent = await _sent_events(rig, activated.id)
    assert len(sent) == 1
    async with rig.db.pool.acquire() as conn:
        # Reconciled again, or the lost answer turning up late: nothing changes, no event.
        assert await outcomes.resolve_unknown_sms(conn, 0) == []
        assert await outcomes.mark_sent(conn, [(row["id"], "sms", rows[0]["provider_ids"])]) \
            == set()
        assert await repo.requeue(conn, [row["id"]], force=[row["id"]]) == []
    assert await _sent_events(rig, activated.id) == sent
    assert await rig.dispatcher.dispatch_once("sms") == 0
    assert [m.to for m in rig.smsc.received].count(mobile) == 1  # never resent


async def test_unknown_sms_whose_receipt_arrives_becomes_sent_once_never_resent(
        rig: NotifyRig) -> None:
    await _lost_answer_becomes_sent(rig, "王伟", lose_answer_at=1, parts=1)


async def test_unknown_two_part_sms_links_its_parts_and_receipts_and_becomes_sent(
        rig: NotifyRig) -> None:
    # The first part's answer came (its id is a part), the second's was lost (its receipt is
    # linked by handset).
    await _lost_answer_becomes_sent(rig, "欧阳" + "慕容" * 12, lose_answer_at=2, parts=2)


async def test_receipts_of_two_unknown_sms_to_one_handset_are_left_to_the_operator(
        rig: NotifyRig) -> None:
    """Which receipt belongs to which cannot be told: neither is guessed at, neither resent."""
    from services.notify import outcomes
    from services.notify import repository as repo

    mobile = people.mobile()
    ids = []
    for _ in range(2):
        person, contact, activated = person_events(mobile=mobile)
        await rig.feed(contact, activated)
        rig.smsc.lose_answer_at = 1
        await rig.drain()
        ids += [r["id"] for r in await rig.rows(person)]
    async with rig.db.pool.acquire() as conn:
        await poll(lambda: conn.fetchval("SELECT count(*) FROM sms_receipts"
                                          " WHERE handset_key = ANY($1::text[])",
                                          repo.handset_keys(mobile)), lambda n: n == 2)
        assert await outcomes.resolve_unknown_sms(conn, 0) == []
        states = [r["status"] for r in await conn.fetch(
            "SELECT status FROM deliveries WHERE id = ANY($1::bigint[])", ids)]
        assert states == ["unknown", "unknown"]
        assert await repo.requeue(conn, ids, force=ids) == []
