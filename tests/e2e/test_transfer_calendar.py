"""A transfer whose due date runs into 2027 before the 2027 holiday schedule exists, clock set."""
from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.contracts.base import Payload
from shared.contracts.channels import (
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    StopContributionRequested,
    TransferOutRequested,
)
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import DEAD_LETTER, TRANSFER_EVENTS, physical
from shared.devstack import people
from shared.devstack.smsc import read_received
from shared.messaging.publisher import publish
from shared.messaging.runtime import to_jsonable
from shared.status import collect_status
from tests.conftest import REGION, TestStack, stop_all, wait_healthy
from tests.e2e.test_enrollment_stories import _value
from tests.helpers import data_of, envelope, poll, read_dead_letters, read_topic

pytestmark = pytest.mark.e2e

JINAN = "370100"
TEST_CALENDAR = Path(__file__).parents[1] / "calendar" / "2027.toml"  # labelled test data
# What a person must never read: the machinery behind a provisional date.
TECHNICAL = ("schedule", "calendar", "holiday", "provisional", "toml", "2027.toml", "State",
             "CalendarDataMissing", "日历", "节假日安排")


class ClockedRegion:
    """Dalian's workers in a namespace of their own, with the platform clock set and a
    holiday-schedule folder that starts empty (chinesecalendar alone: data to 2026)."""

    def __init__(self, stack: TestStack, namespace: str, calendar_dir: Path) -> None:
        self.stack, self.namespace, self.calendar_dir = stack, namespace, calendar_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, clock_start: str, *services: str) -> None:
        shared_ports = dict(self.stack.web_ports)
        self.procs = {s: self.stack.start_worker(
            s, namespace=self.namespace, MEDINS_CLOCK_START=clock_start,
            MEDINS_CALENDAR_DIR=str(self.calendar_dir)) for s in services}
        try:
            wait_healthy(self.stack, self.procs)
            self.ports = {s: self.stack.web_ports[s] for s in services}
        finally:  # other tests still talk to the session's workers
            self.stack.web_ports.update(shared_ports)

    def stop(self) -> None:
        stop_all(self.procs)

    async def send(self, *payloads: Payload) -> list[str]:
        envs = [envelope(p) for p in payloads]
        for env, payload in zip(envs, payloads, strict=True):
            await publish(self.stack.broker_url, physical(
                payload.topic, region=REGION, namespace=self.namespace), [env])
        return [e.id for e in envs]

    async def status(self, service: str, ref: str) -> dict[str, Any]:
        found = await collect_status(self.stack.settings(self.namespace), ref)
        shown: dict[str, Any] = to_jsonable(found.get(service, {}))
        return shown

    async def transfer(self, ref: str, done: Any) -> dict[str, Any]:
        status = await poll(lambda: self.status("transfer", ref),
                            lambda s: any(done(t) for t in s.get("transfers", [])), 45)
        return next(t for t in status["transfers"] if done(t))

    async def events(self, transfer_id: str, event_type: str,
                     until: Any = bool) -> list[dict[str, Any]]:
        topic = physical(TRANSFER_EVENTS, region=REGION, namespace=self.namespace)

        def matching(records: list[Any]) -> list[dict[str, Any]]:
            return [d for d in map(data_of, records) if d["type"] == event_type
                    and d["data"].get("transfer_id") == transfer_id]

        return matching(await read_topic(self.stack.broker_url, topic,
                                         lambda rs: until(matching(rs))))

    def http_status(self, ref: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.ports['transfer']}/status/{ref}"
        shown: dict[str, Any] = json.loads(urllib.request.urlopen(url, timeout=5).read())
        return shown

    def metric(self, line_start: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.ports['transfer']}/metrics",
                                      timeout=5).read().decode()
        line = next(m for m in text.splitlines() if m.startswith(line_start))
        return float(line.split()[-1])


@pytest.fixture
def clocked(stack: TestStack, tmp_path: Path) -> Iterator[ClockedRegion]:
    folder = tmp_path / "calendar"
    folder.mkdir()
    region = ClockedRegion(stack, f"{stack.namespace}cal{uuid.uuid4().hex[:4]}_", folder)
    yield region
    region.stop()


async def test_a_due_date_in_a_year_without_schedule_is_provisional_until_it_is_added(
        stack: TestStack, clocked: ClockedRegion) -> None:
    await stack.prepare(clocked.namespace)
    # 20 December 2026, no 2027 schedule anywhere: a flexible worker whose paid period ended
    # yesterday stops contributing and asks to move to Jinan (15 working days, into 2027).
    clocked.start("2026-12-20T10:00:00+08:00", "enrollment", "transfer", "notify")
    person, mobile = people.resident_id(), people.mobile()
    app_id, now = f"APP-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    await clocked.send(
        EnrollmentApplicationSubmitted(
            application_id=app_id, person_id=person, name="李娜", insurance_type="flexible",
            mobile=mobile, channel="wechat", region_code=REGION, submitted_at=now),
        EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                reviewer="s1", decided_at=now),
        ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id=app_id,
            insurance_type="flexible", period_start=date(2026, 1, 1),
            period_end=date(2026, 12, 19), amount_fen=40_000, paid_at=now))
    await poll(lambda: clocked.status("transfer", person),
               lambda t: (t.get("insured_status") or {}).get("status") == "active", 45)
    await clocked.send(StopContributionRequested(
        request_id=f"STOP-{uuid.uuid4().hex[:6]}", person_id=person, channel="phone",
        requested_at=now))
    await poll(lambda: clocked.status("transfer", person),
               lambda t: (t.get("insured_status") or {}).get("status") == "suspended", 45)
    cmd = TransferOutRequested(transfer_id=f"TR-{uuid.uuid4().hex[:10]}", person_id=person,
                               to_region=JINAN, channel="national_app", requested_at=now)
    [request_id] = await clocked.send(cmd)

    # Accepted, never dead-lettered: 21-25 and 28-31 December, then 1 and 4-8 January with
    # only the weekends off, marked provisional in status and in the event.
    accepted = await clocked.transfer(cmd.transfer_id,
                                      lambda t: t["stage"] == "awaiting_info_sheet")
    assert (accepted["started_on"], accepted["due_on"], accepted["due_provisional"]) == (
        "2026-12-20", "2027-01-08", True)
    assert accepted["provisional_years"] == [2027]
    # Counted by the worker, on its clock (this test process lives in November).
    assert clocked.http_status(cmd.transfer_id)["transfers"][0]["working_days_left"] == 15
    assert "provisional" in accepted["stages"][0]["note"]
    received = (await clocked.events(cmd.transfer_id,
                                     "cn.medins.transfer.request.received.v1"))[0]
    assert (received["data"]["due_on"], received["data"]["due_provisional"]) == (
        "2027-01-08", True)
    # The person gets the ordinary message, with nothing technical in it.
    def transfer_sms(sent: list[dict[str, Any]]) -> list[str]:
        return [m["text"] for m in sent if m["to"] == mobile and cmd.transfer_id in m["text"]]

    sms = await poll(lambda: _value(read_received(stack.sms_dir)),
                     lambda s: bool(transfer_sms(s)), 45)
    [text] = transfer_sms(sms)
    assert "将于2027-01-08前办结" in text, text
    assert not any(word in text for word in TECHNICAL), text
    assert clocked.metric("medins_calendar_days_left") == 11  # to 31 December
    dead = await read_dead_letters(stack.broker_url, physical(DEAD_LETTER, region=REGION,
                                                              namespace=clocked.namespace),
                                   lambda rs: True, timeout=5)
    assert request_id not in {data_of(r).get("id") for r in dead}
    clocked.stop()

    # 11 January 2027, still no schedule: the overdue timer keeps running and reports the
    # provisional date that passed.
    clocked.start("2027-01-11T09:00:00+08:00", "transfer")
    overdue = await clocked.events(cmd.transfer_id, "cn.medins.transfer.overdue.v1",
                                   lambda found: any(e["data"]["clock"] == "total"
                                                     for e in found))
    total = next(e["data"] for e in overdue if e["data"]["clock"] == "total")
    assert (total["due_on"], total["due_provisional"], total["working_days_late"]) == (
        "2027-01-08", True, 1)
    assert clocked.metric('medins_transfers_overdue{clock="total",direction="out"}') >= 1
    assert clocked.metric("medins_calendar_days_left") == -11

    # The agency adds the year's schedule (here the labelled test calendar): the running
    # worker picks it up, the due date becomes definitive and an update is announced.
    shutil.copy(TEST_CALENDAR, clocked.calendar_dir / "2027.toml")
    definitive = await clocked.transfer(cmd.transfer_id, lambda t: not t["due_provisional"])
    assert definitive["due_on"] == "2027-01-08" and "provisional_years" not in definitive
    assert any("recounted" in (s["note"] or "") for s in definitive["stages"])
    updated = (await clocked.events(cmd.transfer_id,
                                    "cn.medins.transfer.due-date.updated.v1"))[0]["data"]
    assert (updated["due_on"], updated["due_provisional"], updated["previous_due_on"]) == (
        "2027-01-08", False, "2027-01-08")
    assert clocked.metric("medins_calendar_days_left") == 354  # to 31 December 2027
