"""Coverage by period through real workers: next year's payment, 1 January, the sender's clock."""
from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.clock import china_today
from shared.contracts.base import Payload
from shared.contracts.channels import (
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    FamilyAidAuthorised,
    StopContributionRequested,
)
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import physical
from shared.devstack import people
from shared.messaging.publisher import publish
from shared.status import collect_status
from tests.conftest import REGION, TestStack, stop_all, wait_healthy
from tests.e2e.test_enrollment_stories import (
    enroll,
    enrollment,
    events_caused_by,
    paid_up_to_yesterday,
    send,
)
from tests.helpers import envelope, poll

pytestmark = pytest.mark.e2e


def apply_and_approve(person: str, app_id: str, when: datetime) -> list[Payload]:
    return [EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=person, name="李娜", insurance_type="resident",
        mobile=people.mobile(), channel="wechat", region_code=REGION, submitted_at=when),
        EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                reviewer="s1", decided_at=when)]


def paid(person: str, app_id: str, year: int, when: datetime) -> ContributionPaymentConfirmed:
    return ContributionPaymentConfirmed(
        payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id=app_id,
        insurance_type="resident", period_start=date(year, 1, 1), period_end=date(year, 12, 31),
        amount_fen=40_000, paid_at=when)


class ClockedEnrollment:
    """An enrollment worker of its own namespace whose platform clock starts at a set time."""

    def __init__(self, stack: TestStack, namespace: str) -> None:
        self.stack, self.namespace = stack, namespace
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, clock_start: str, **env: str) -> None:
        shared_port = self.stack.web_ports.get("enrollment")
        self.procs = {"enrollment": self.stack.start_worker(
            "enrollment", namespace=self.namespace, MEDINS_CLOCK_START=clock_start,
            MEDINS_DUE_CHECK_SECONDS="0.5", **env)}
        try:
            wait_healthy(self.stack, self.procs)
        finally:
            if shared_port is not None:  # other tests still talk to the session's worker
                self.stack.web_ports["enrollment"] = shared_port

    def stop(self) -> None:
        stop_all(self.procs)

    async def send(self, *payloads: Payload) -> None:
        for payload in payloads:
            await publish(self.stack.broker_url, physical(
                payload.topic, region=REGION, namespace=self.namespace),
                [envelope(payload)])

    async def person(self, person_id: str) -> dict[str, Any]:
        found = await collect_status(self.stack.settings(self.namespace), person_id)
        return found.get("enrollment", {})


@pytest.fixture
def clocked(stack: TestStack) -> Iterator[ClockedEnrollment]:
    namespace = f"{stack.namespace}clk{uuid.uuid4().hex[:4]}_"
    worker = ClockedEnrollment(stack, namespace)
    yield worker
    worker.stop()


async def test_next_years_payment_waits_for_1_january_and_an_unpaid_year_lapses(
        stack: TestStack, clocked: ClockedEnrollment) -> None:
    await stack.prepare(clocked.namespace)
    # 20 December 2026: one resident paid for 2026 only, one for 2026 and 2027, and a new one
    # whose first payment is for 2027.
    clocked.start("2026-12-20T10:00:00+08:00")
    when = datetime(2026, 12, 20, 2, tzinfo=UTC)
    unpaid, renewed, newcomer = (people.resident_id() for _ in range(3))
    apps = {p: f"APP-{uuid.uuid4().hex[:8]}" for p in (unpaid, renewed, newcomer)}
    for person in (unpaid, renewed, newcomer):
        await clocked.send(*apply_and_approve(person, apps[person], when))
    await clocked.send(paid(unpaid, apps[unpaid], 2026, when),
                       paid(renewed, apps[renewed], 2026, when),
                       paid(renewed, apps[renewed], 2027, when),
                       paid(newcomer, apps[newcomer], 2027, when))
    for person in (unpaid, renewed):
        await poll(lambda p=person: clocked.person(p),  # type: ignore[misc]
                   lambda e: e.get("person", {}).get("status") == "active")
    waiting = await poll(lambda: clocked.person(newcomer),
                         lambda e: bool(e.get("scheduled")))
    # Paid in December for next year: still pending, active from 1 January.
    assert waiting["person"]["status"] == "pending"
    assert [(s["to_status"], s["effective_on"]) for s in waiting["scheduled"]] == [
        ("active", date(2027, 1, 1))]
    assert [c["start_date"] for c in waiting["coverage"]] == [date(2027, 1, 1)]
    clocked.stop()

    # 20 January 2027, past the 15-day grace period.
    clocked.start("2027-01-20T08:00:00+08:00")
    became = await poll(lambda: clocked.person(newcomer),
                        lambda e: e["person"]["status"] == "active")
    change = [h for h in became["history"] if h["what"] == "status changed"][-1]
    assert change["detail"]["effective_on"] == "2027-01-01"
    lapsed = await poll(lambda: clocked.person(unpaid),
                        lambda e: e["person"]["status"] == "suspended")
    change = [h for h in lapsed["history"] if h["what"] == "status changed"][-1]
    assert change["detail"]["effective_on"] == "2027-01-01"
    assert change["detail"]["reason"] == "缴费期满后未续缴"
    still = await clocked.person(renewed)
    assert still["person"]["status"] == "active"
    assert [c["end_date"] for c in still["coverage"]] == [date(2026, 12, 31),
                                                          date(2027, 12, 31)]


async def test_a_request_dated_in_the_future_is_refused_and_the_platform_date_decides(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll(stack, "flexible", paid_until=paid_up_to_yesterday())
    future = datetime.now(UTC) + timedelta(days=16)
    request_id = f"STOP-{uuid.uuid4().hex[:6]}"
    [cause] = await send(stack, StopContributionRequested(
        request_id=request_id, person_id=person, channel="phone", requested_at=future))
    [rejected] = await events_caused_by(stack, cause, 1)
    assert rejected["type"].endswith("request.rejected.v1")
    assert rejected["data"]["rule"] == "future_timestamp"
    assert rejected["data"]["reason"].startswith("requested_at: ")
    found = await enrollment(stack, person)
    assert found["person"]["status"] == "active" and not found["scheduled"]


async def test_family_aid_ends_when_the_holder_stops_being_insured(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll(stack, "flexible", paid_until=paid_up_to_yesterday())
    now = datetime.now(UTC)
    auth = f"FA-{uuid.uuid4().hex[:6]}"
    await send(stack, FamilyAidAuthorised(
        authorisation_id=auth, person_id=person, relative_id=people.resident_id(),
        relative_name="张伟", relationship="parent", relative_region=REGION,
        commitment_signed=True, id_photo_uploaded=True, channel="alipay", submitted_at=now))
    await poll(lambda: enrollment(stack, person),
               lambda e: [a["state"] for a in e.get("family_aid", [])] == ["active"])
    await send(stack, StopContributionRequested(request_id=f"STOP-{uuid.uuid4().hex[:6]}",
                                                person_id=person, channel="phone",
                                                requested_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: [a["state"] for a in e.get("family_aid", [])] == ["ended"])
    assert found["person"]["status"] == "suspended"
    assert china_today() >= found["coverage"][0]["end_date"]


async def test_enrollment_exports_its_domain_gauges(stack: TestStack,
                                                    workers: dict[str, Any]) -> None:
    import urllib.request

    await enroll(stack)

    def metrics() -> str:
        url = f"http://127.0.0.1:{stack.web_ports['enrollment']}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()

    async def sampled() -> str:
        return metrics()

    text = await poll(sampled, lambda t: 'medins_enrollment_persons{status="active"}' in t,
                      timeout=40)
    assert "medins_enrollment_payments_parked " in text
    # Dead-letter series exist at zero from the start, for `increase()` to see the first.
    assert 'medins_events_dead_lettered_total{service="enrollment"' in text

    def reimbursement_metrics() -> str:
        url = f"http://127.0.0.1:{stack.web_ports['reimbursement']}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()

    async def sampled_reimbursement() -> str:
        return reimbursement_metrics()

    await poll(sampled_reimbursement,
               lambda t: "medins_reimbursement_payments_failed " in t, timeout=40)
