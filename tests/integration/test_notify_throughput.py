"""Notify's throughput machinery against real servers: pooled SMTP sessions, the SMPP window."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller

from services.notify.app import build_dispatcher
from services.notify.dispatcher import Dispatcher
from services.notify.senders import OutcomeUnknown, SmtpEmailSender
from shared.db.sealed import resident_keys_of
from shared.devstack.broker import free_port
from shared.devstack.mailserver import _SaveToFolder, read_mailbox
from tests.helpers import poll
from tests.integration.test_notify_channels import NotifyRig, _now, person_events, rig

__all__ = ["rig"]  # the fixture, shared with the channel tests


class CountingRelay(Controller):
    """The local SMTP server, counting the connections it accepts; `drop_data` makes it hang
    up on the next message after receiving it and before answering (a relay lost mid-DATA)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.connections = 0
        self.drop_data = False
        handler = _SaveToFolder(folder)
        save = handler.handle_DATA

        async def handle_data(server: Any, session: Any, envelope: Any) -> str:
            if self.drop_data:
                self.drop_data = False
                server.transport.close()
                return "250 never heard"
            return await save(server, session, envelope)

        handler.handle_DATA = handle_data  # type: ignore[method-assign]
        super().__init__(handler, hostname="127.0.0.1", port=port)

    def factory(self) -> Any:
        smtp = super().factory()
        made = smtp.connection_made

        def connection_made(transport: Any) -> None:
            self.connections += 1
            made(transport)

        smtp.connection_made = connection_made
        return smtp


@pytest_asyncio.fixture
async def relay(tmp_path: Path) -> AsyncIterator[CountingRelay]:
    server = CountingRelay(tmp_path / "relay", free_port())
    server.start()
    server.connections = 0  # start() makes one of its own to see the server is up
    yield server
    server.stop()


def _dispatcher(rig: NotifyRig, tmp_path: Path, **changes: Any) -> Dispatcher:
    settings = rig.dispatcher.settings.model_copy(
        update={"state_dir": tmp_path / f"state-{uuid.uuid4().hex[:6]}",
                "email_rate_per_second": 1000.0, **changes})
    return build_dispatcher(rig.db, settings)


async def _drain(dispatcher: Dispatcher, channel: str) -> None:
    while await dispatcher.dispatch_once(channel):
        pass


async def _feed_people(rig: NotifyRig, count: int, **kwargs: Any) -> list[tuple[str, Any, Any]]:
    persons = []
    for _ in range(count):
        person = person_events(email=f"p{uuid.uuid4().hex[:8]}@example.cn", **kwargs)
        await rig.feed(person[1], person[2])
        persons.append(person)
    return persons


async def test_smtp_sessions_carry_many_mails(rig: NotifyRig, relay: CountingRelay,
                                              tmp_path: Path) -> None:
    dispatcher = _dispatcher(rig, tmp_path, smtp_port=relay.port, smtp_max_connections=2)
    try:
        persons = await _feed_people(rig, 12)
        await _drain(dispatcher, "email")
        mails = read_mailbox(relay.folder)
        assert sorted(a for m in mails for a in m.recipients) == sorted(
            c.data["email"] for _, c, _ in persons)
        assert relay.connections <= 2  # 12 mails, at most one session per slot
        for person, _, _ in persons:
            assert {r["channel"]: r["status"] for r in await rig.rows(person)}["email"] == "sent"
    finally:
        await dispatcher.on_stop()


async def test_a_refused_recipient_leaves_the_session_usable(rig: NotifyRig, relay: CountingRelay,
                                                             tmp_path: Path) -> None:
    dispatcher = _dispatcher(rig, tmp_path, smtp_port=relay.port, smtp_max_connections=1)
    try:
        bounced = person_events(email=f"bounce{uuid.uuid4().hex[:6]}@example.cn")
        await rig.feed(bounced[1], bounced[2])
        (good,) = await _feed_people(rig, 1)
        await _drain(dispatcher, "email")
        status = {p: {r["channel"]: r["status"] for r in await rig.rows(p)}["email"]
                  for p in (bounced[0], good[0])}
        assert status == {bounced[0]: "parked", good[0]: "sent"}
        assert relay.connections == 1  # RSET after the 550, then the next MAIL FROM
    finally:
        await dispatcher.on_stop()


async def test_a_session_the_relay_dropped_is_replaced_without_a_failure(
        tmp_path: Path) -> None:
    first = CountingRelay(tmp_path / "relay", free_port())
    first.start()
    sender = SmtpEmailSender("127.0.0.1", first.port, "noreply@medins.example.cn",
                             max_connections=1, timeout=3.0)
    try:
        await sender.send("a@example.cn", "一", "正文", "k:1")
        # The relay goes away and another takes its place: the pooled session is dead, and
        # nothing of the next message was sent on it.
        first.stop()
        second = CountingRelay(first.folder, first.port)
        second.start()
        try:
            await sender.send("b@example.cn", "二", "正文", "k:2")
        finally:
            second.stop()
        assert sender.connections_opened == 2
        assert sorted(a for m in read_mailbox(first.folder) for a in m.recipients) == [
            "a@example.cn", "b@example.cn"]
    finally:
        await sender.close()


async def test_a_session_lost_during_data_is_unknown_and_the_pool_recovers(
        relay: CountingRelay) -> None:
    sender = SmtpEmailSender("127.0.0.1", relay.port, "noreply@medins.example.cn",
                             max_connections=1, timeout=3.0)
    handed: list[str] = []

    async def handing_over() -> None:
        handed.append("x")

    try:
        await sender.send("a@example.cn", "一", "正文", "k:1")
        relay.drop_data = True
        with pytest.raises(OutcomeUnknown):
            await sender.send("b@example.cn", "二", "正文", "k:2", handing_over)
        assert handed == ["x"]  # the hand-over was journalled before DATA
        await sender.send("c@example.cn", "三", "正文", "k:3")
        assert sender.connections_opened == 2
    finally:
        await sender.close()


def _most_at_once(stamps: list[float], within: float = 0.15) -> int:
    """The largest number of answers given together (the local SMSC answers each submit
    `answer_delay` after it arrived, so submits in flight together are answered together)."""
    return max(sum(1 for t in stamps if abs(t - s) <= within) for s in stamps)


async def test_the_smpp_window_keeps_several_submits_in_flight_and_no_more(
        rig: NotifyRig, tmp_path: Path) -> None:
    rig.smsc.answer_delay = 0.5
    dispatcher = _dispatcher(rig, tmp_path, smpp_window=4, smpp_sessions=1,
                             smpp_submit_timeout_seconds=5.0)
    try:
        persons = await _feed_people(rig, 9)
        before = len(rig.smsc.submissions)
        started = asyncio.get_running_loop().time()
        await _drain(dispatcher, "sms")
        took = asyncio.get_running_loop().time() - started
        # One at a time this is 9 x 0.5 s; with a window of 4 it is the probe (the first
        # message goes alone) and two waves of 4, never more than 4 at once.
        stamps = sorted(rig.smsc.submissions[before:])
        assert len(stamps) == 9
        assert took < 3.0, took
        assert _most_at_once(stamps) == 4
        for person, _, _ in persons:
            assert [r["status"] for r in await rig.rows(person) if r["channel"] == "sms"] == [
                "sent"]
    finally:
        rig.smsc.answer_delay = 0.0
        await dispatcher.on_stop()


async def test_two_sessions_share_the_load(rig: NotifyRig, tmp_path: Path) -> None:
    rig.smsc.answer_delay = 0.5
    dispatcher = _dispatcher(rig, tmp_path, smpp_window=3, smpp_sessions=2,
                             smpp_submit_timeout_seconds=5.0)
    try:
        await _feed_people(rig, 7)
        before = len(rig.smsc.submissions)
        await _drain(dispatcher, "sms")
        stamps = sorted(rig.smsc.submissions[before:])
        assert len(stamps) == 7
        # After the probe, six go at once: three in each session's window.
        assert _most_at_once(stamps) == 6
        assert dispatcher.senders["sms"].binds_made == 2  # type: ignore[attr-defined]
    finally:
        rig.smsc.answer_delay = 0.0
        await dispatcher.on_stop()


async def test_an_unanswered_submit_among_many_in_flight_is_the_only_unknown(
        rig: NotifyRig, tmp_path: Path) -> None:
    dispatcher = _dispatcher(rig, tmp_path, smpp_window=10, smpp_submit_timeout_seconds=1.0)
    try:
        persons = await _feed_people(rig, 6)
        before = len(rig.smsc.submissions)
        rig.smsc.vanish_next = True  # the probe's answer never comes
        await _drain(dispatcher, "sms")
        await _drain(dispatcher, "sms")
        states = [r["status"] for p, _, _ in persons for r in await rig.rows(p)
                  if r["channel"] == "sms"]
        assert sorted(states) == ["sent"] * 5 + ["unknown"]
        assert len(rig.smsc.submissions) - before == 6  # the unknown one was never resent
        assert dispatcher.journal.pending() == [] and dispatcher.journal.unanswered() == []
    finally:
        await dispatcher.on_stop()


async def test_many_answers_are_recorded_together_and_emit_once(rig: NotifyRig,
                                                                tmp_path: Path) -> None:
    dispatcher = _dispatcher(rig, tmp_path, smpp_window=10)
    try:
        persons = await _feed_people(rig, 20)
        await _drain(dispatcher, "sms")
        async with rig.db.pool.acquire() as conn:
            sent_events = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE convert_from(value, 'UTF8')"
                " LIKE '%message.sent%' AND convert_from(value, 'UTF8') LIKE ANY($1)",
                [f"%{a.id}%" for _, _, a in persons])
            parts = await conn.fetchval(
                "SELECT count(*) FROM sms_parts p JOIN deliveries d ON d.id = p.delivery_id"
                " WHERE d.person_key = ANY($1)", resident_keys_of(p for p, _, _ in persons))
        assert sent_events == 20 and parts >= 20
        await dispatcher.replay_journal()  # nothing left to replay, nothing emitted twice
        async with rig.db.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE convert_from(value, 'UTF8')"
                " LIKE '%message.sent%' AND convert_from(value, 'UTF8') LIKE ANY($1)",
                [f"%{a.id}%" for _, _, a in persons]) == 20
    finally:
        await dispatcher.on_stop()


class _GoesDown:
    """An SMS gateway that accepts the first message and then refuses every connection."""

    capacity = 2

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: Any = None) -> Any:
        from services.notify.senders import SendResult

        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("SMSC unavailable (test)")
        await handing_over()
        return SendResult([f"m{uuid.uuid4().hex[:8]}"])


async def test_a_gateway_lost_mid_batch_burns_no_more_attempts_than_the_breaker_needs(
        rig: NotifyRig, tmp_path: Path) -> None:
    from services.notify.ratelimit import TokenBucket

    settings = rig.dispatcher.settings.model_copy(
        update={"state_dir": tmp_path / "down", "send_max_attempts": 0,
                "breaker_failures": 3, "breaker_open_seconds": 60.0})
    gateway = _GoesDown()
    dispatcher = Dispatcher(rig.db, settings, {"sms": gateway},  # type: ignore[dict-item]
                            {"sms": TokenBucket(1000)})
    try:
        persons = await _feed_people(rig, 20)
        await dispatcher.dispatch_once("sms")
        rows = [r for p, _, _ in persons for r in await rig.rows(p) if r["channel"] == "sms"]
        assert sorted(r["status"] for r in rows) == ["pending"] * 19 + ["sent"]
        # The probe went; then failures two at a time until the breaker opened at the third;
        # whatever still waited for a slot went back untouched.
        assert gateway.calls <= 1 + 3 + 1
        assert sum(r["attempts"] for r in rows if r["status"] == "pending") == gateway.calls - 1
    finally:
        await dispatcher.on_stop()


async def _running(dispatcher: Dispatcher) -> None:
    """Started as the worker starts it: channel loops and the new-delivery listener."""
    await dispatcher.start()

    async def listening() -> Any:
        return dispatcher._listener

    await poll(listening, lambda conn: conn is not None)


async def test_a_committed_delivery_is_sent_at_once_not_at_the_next_poll(
        rig: NotifyRig, tmp_path: Path) -> None:
    dispatcher = _dispatcher(rig, tmp_path)
    dispatcher.poll_seconds = 60.0  # only the NOTIFY of the committing transaction can wake it
    await _running(dispatcher)
    try:
        await asyncio.sleep(0)  # the loops found nothing due and wait
        person, contact, activated = person_events()
        await rig.feed(contact, activated)
        received = await poll(lambda: _now(rig.smsc.received),
                              lambda r: any(m.to == contact.data["mobile"] for m in r),
                              timeout=10)
        assert [m.to for m in received].count(contact.data["mobile"]) == 1
    finally:
        await dispatcher.stop()


async def test_the_sender_claims_more_while_answers_are_awaited(
        rig: NotifyRig, tmp_path: Path) -> None:
    # A slow gateway: each answer comes 1.5 s after its submission. One round at a time would
    # send the second person's SMS only once the first's answer was in (>= 1.5 s apart);
    # streaming hands it over while the first is still awaited.
    rig.smsc.answer_delay = 1.5
    dispatcher = _dispatcher(rig, tmp_path, smpp_submit_timeout_seconds=10.0)
    await _running(dispatcher)
    try:
        first, first_contact, first_activated = person_events()
        await rig.feed(first_contact, first_activated)
        await poll(lambda: rig.rows(first), lambda rows: rows[0]["status"] == "sending")
        second, second_contact, second_activated = person_events()
        await rig.feed(second_contact, second_activated)
        received = await poll(lambda: _now(rig.smsc.received), lambda r: len(
            {m.to for m in r} & {first_contact.data["mobile"],
                                 second_contact.data["mobile"]}) == 2, timeout=20)
        at = {m.to: t for m, t in zip(received, rig.smsc.submissions, strict=False)}
        gap = at[second_contact.data["mobile"]] - at[first_contact.data["mobile"]]
        assert gap < 1.0, f"the second SMS waited {gap:.2f} s for the first one's answer"
        for person in (first, second):
            await poll(lambda p=person: rig.rows(p), lambda rows: rows[0]["status"] == "sent")
    finally:
        await dispatcher.stop()
