"""Enrollment decides by the policy book in force on the fact's day, with the clock set."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shared.contracts.channels import (
    AccidentInjuryFiled,
    ChronicDiseaseApplied,
    ChronicDiseaseReviewed,
)
from shared.devstack import people
from shared.policy import EXAMPLES_DIR, SHIPPED_DIR
from tests.conftest import TestStack
from tests.e2e.test_coverage_stories import ClockedEnrollment, apply_and_approve, paid
from tests.helpers import poll

pytestmark = pytest.mark.e2e

DECEMBER = datetime(2026, 12, 10, 2, tzinfo=UTC)  # 10:00 in China


@pytest.fixture
def clocked(stack: TestStack) -> Iterator[ClockedEnrollment]:
    worker = ClockedEnrollment(stack, f"{stack.namespace}pol{uuid.uuid4().hex[:4]}_")
    yield worker
    worker.stop()


async def insured(clocked: ClockedEnrollment, year: int, when: datetime) -> str:
    person, app_id = people.resident_id(), f"APP-{uuid.uuid4().hex[:8]}"
    await clocked.send(*apply_and_approve(person, app_id, when), paid(person, app_id, year, when))
    await poll(lambda: clocked.person(person),
               lambda e: e.get("person", {}).get("status") == "active")
    return person


def accident(person: str, admitted: date, when: datetime) -> AccidentInjuryFiled:
    return AccidentInjuryFiled(
        filing_id=f"ACC-{uuid.uuid4().hex[:6]}", person_id=person, hospital_code="H210200",
        in_city=True, admitted_on=admitted, injury_description="摔伤",
        no_third_party_declared=True, channel="phone", submitted_at=when)


async def test_the_emergency_measures_of_the_book_apply_in_their_window(
        stack: TestStack, clocked: ClockedEnrollment) -> None:
    await stack.prepare(clocked.namespace)
    # 10 December 2026 with Baotou's emergency measures enabled (notice 002, examples folder).
    clocked.start("2026-12-10T10:00:00+08:00", MEDINS_POLICY_DIRS=str(EXAMPLES_DIR))
    person = await insured(clocked, 2026, DECEMBER)
    filed = accident(person, date(2026, 12, 1), DECEMBER)  # 7 working days: due 10 December
    hypertension = f"CD-{uuid.uuid4().hex[:6]}"
    leukaemia = f"CD-{uuid.uuid4().hex[:6]}"
    await clocked.send(filed, *(ChronicDiseaseApplied(
        application_id=app, person_id=person, action="recognise", disease=disease,
        institution_code="H210200", channel="wechat", submitted_at=DECEMBER)
        for app, disease in ((hypertension, "hypertension"), (leukaemia, "leukaemia"))))
    found = await poll(lambda: clocked.person(person), lambda e: any(
        f["category"] == "accident" for f in e.get("filings", [])) and sum(
        h["what"] == "recognition postponed" for h in e["history"]) == 1)
    accepted = next(h for h in found["history"] if h["what"] == "accident filing accepted")
    assert accepted["detail"]["deadline"] == "2026-12-10"
    assert accepted["detail"]["policy"]["measure"] == "example-002-accident-filing"
    postponed = next(h for h in found["history"] if h["what"] == "recognition postponed")
    # Recognition postponed a month, except the four urgent kinds (leukaemia among them).
    assert postponed["reference"] == hypertension
    assert postponed["detail"]["review_from"] == "2027-01-10"

    await clocked.send(*(ChronicDiseaseReviewed(
        application_id=app, person_id=person, decision="approve", reviewer="s9",
        decided_at=DECEMBER) for app in (hypertension, leukaemia)))
    found = await poll(lambda: clocked.person(person),
                       lambda e: bool(e.get("chronic_diseases")))
    assert [c["disease"] for c in found["chronic_diseases"]] == ["leukaemia"]


async def test_a_fact_dated_without_a_policy_waits_and_goes_on_when_it_is_added(
        stack: TestStack, clocked: ClockedEnrollment, tmp_path: Path) -> None:
    await stack.prepare(clocked.namespace)
    agency = tmp_path / "policies"
    agency.mkdir()
    # 5 January 2027: the shipped book ends with 2026 and nobody has added 2027 yet.
    clocked.start("2027-01-05T10:00:00+08:00", MEDINS_POLICY_DIRS=str(agency))
    when = datetime(2027, 1, 5, 2, tzinfo=UTC)
    person = await insured(clocked, 2027, when)
    filed = accident(person, date(2027, 1, 4), when)
    await clocked.send(filed)
    waiting = await poll(lambda: clocked.person(person),
                         lambda e: bool(e.get("awaiting_policy")))
    assert waiting["awaiting_policy"][0]["reference"] == filed.filing_id
    assert waiting["awaiting_policy"][0]["fact_date"] == date(2027, 1, 4)
    assert not waiting["filings"]

    # The agency adds its 2027 version: the filing is decided by itself, as of its receipt.
    text = (SHIPPED_DIR / "210200-2026.1.toml").read_text(encoding="utf-8")
    (agency / "210200-2027.1.toml").write_text(
        text.replace('version = "2026.1"', 'version = "2027.1"')
        .replace("2026-01-01", "2027-01-01").replace("2026-12-31", "2027-12-31")
        .replace("210200-2026.1-", "210200-2027.1-"), encoding="utf-8")
    decided = await poll(lambda: clocked.person(person),
                         lambda e: any(f["category"] == "accident"
                                       for f in e.get("filings", [])), timeout=60)
    assert decided["awaiting_policy"][0]["resumed_at"] is not None
    accepted = next(h for h in decided["history"] if h["what"] == "accident filing accepted")
    assert accepted["detail"]["policy"]["policy_version"] == "2027.1"


async def test_an_accident_deadline_past_the_holiday_data_is_provisional_then_confirmed(
        stack: TestStack, clocked: ClockedEnrollment, tmp_path: Path) -> None:
    await stack.prepare(clocked.namespace)
    schedules = tmp_path / "calendar"
    schedules.mkdir()
    # 30 December 2026, and no 2027 holiday schedule yet: 3 working days from the 29th run
    # into 2027. Nobody is refused or told of a missing schedule.
    clocked.start("2026-12-30T10:00:00+08:00", MEDINS_CALENDAR_DIR=str(schedules))
    when = datetime(2026, 12, 30, 2, tzinfo=UTC)
    person = await insured(clocked, 2026, when)
    filed = accident(person, date(2026, 12, 29), when)
    await clocked.send(filed)
    found = await poll(lambda: clocked.person(person), lambda e: any(
        h["what"] == "accident filing accepted" for h in e.get("history", [])))
    accepted = next(h for h in found["history"] if h["what"] == "accident filing accepted")
    assert accepted["detail"]["deadline_provisional"] is True
    assert accepted["detail"]["deadline"] == "2027-01-01"  # weekdays only: 30, 31, 1 Jan

    # The year's schedule arrives (test data: New Year's Day off): the deadline is recounted.
    (schedules / "2027.toml").write_text(
        "# TEST DATA ONLY\nyear = 2027\nholidays = [\"2027-01-01\"]\nworkdays = []\n",
        encoding="utf-8")
    confirmed = await poll(lambda: clocked.person(person), lambda e: any(
        h["what"] == "accident deadline confirmed" for h in e["history"]), timeout=60)
    again = next(h for h in confirmed["history"] if h["what"] == "accident deadline confirmed")
    assert again["detail"]["deadline"] == "2027-01-04"
