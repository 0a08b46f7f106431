"""Claims judged as of the expense date: coverage then, the policy then, the platform's date."""
from __future__ import annotations

import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.clock import china_today
from shared.contracts.channels import (
    ClaimMaterialsMailed,
    ClaimStageDecided,
    ClaimSubmitted,
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
)
from shared.contracts.civil_affairs import DeathRecorded
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.devstack import people
from shared.devstack.smsc import read_received
from shared.policy import SHIPPED_DIR, PolicyBook
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.e2e.test_enrollment_stories import _value, enroll, enrollment, send
from tests.e2e.test_reimbursement_story import claim_of
from tests.helpers import poll


async def reimbursement(stack: TestStack, ref: str) -> dict[str, Any]:
    return (await collect_status(stack.settings(), ref)).get("reimbursement", {}) or {}


async def coverage_known(stack: TestStack, person: str, periods: int = 1) -> dict[str, Any]:
    """Reimbursement has consumed enrollment's coverage.changed for the person."""
    return await poll(lambda: reimbursement(stack, person),
                      lambda r: len(r.get("coverage") or []) >= periods)


def submitted(person: str, expense: date, submitted_at: datetime | None = None,
              claim_id: str | None = None) -> ClaimSubmitted:
    return ClaimSubmitted(
        claim_id=claim_id or f"CLM-{uuid.uuid4().hex[:8]}", person_id=person,
        invoice_no=f"INV{uuid.uuid4().hex[:8]}", institution_code="H21020003",
        expense_date=expense, amount_fen=300_000, hospital_level=3, channel="wechat",
        submitted_at=submitted_at or datetime.now(UTC))


async def test_heirs_are_paid_for_what_was_spent_while_the_person_was_insured(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll(stack)
    today = china_today()
    died = today - timedelta(days=5)
    await send(stack, DeathRecorded(record_ref=f"MZ-{uuid.uuid4().hex[:6]}", person_id=person,
                                    date_of_death=died))
    await poll(lambda: reimbursement(stack, person), lambda r: any(
        p["end_date"] == died for p in r.get("coverage") or []))
    while_insured, after_death = (submitted(person, today - timedelta(days=10)),
                                  submitted(person, today - timedelta(days=2)))
    await send(stack, while_insured, after_death)
    accepted = await poll(lambda: claim_of(stack, while_insured.claim_id),
                          lambda c: c.get("stage") == "preliminary_review")
    assert accepted["insurance_type"] == "resident"
    assert accepted["filed_on"] == today
    refused = await poll(lambda: claim_of(stack, after_death.claim_id),
                         lambda c: c.get("stage") == "rejected")
    assert "不在本统筹区参保期内" in refused["reasons"][0]


async def test_an_expense_before_coverage_started_is_refused(
        stack: TestStack, workers: dict[str, Any]) -> None:
    """Insured only since yesterday: last month's expense is not paid, yesterday's is."""
    person, mobile = people.resident_id(), people.mobile()
    today, now = china_today(), datetime.now(UTC)
    app_id = f"APP-{uuid.uuid4().hex[:8]}"
    await send(stack, EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=person, name="王强", insurance_type="flexible",
        mobile=mobile, channel="wechat", region_code=REGION, submitted_at=now),
        EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                reviewer="s1", decided_at=now),
        ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id=app_id,
            insurance_type="flexible", period_start=today - timedelta(days=1),
            period_end=today + timedelta(days=60), amount_fen=60_000, paid_at=now))
    await poll(lambda: enrollment(stack, person),
               lambda e: e.get("person", {}).get("status") == "active")
    await coverage_known(stack, person)
    last_month, yesterday = (submitted(person, today - timedelta(days=30)),
                             submitted(person, today - timedelta(days=1)))
    await send(stack, last_month, yesterday)
    refused = await poll(lambda: claim_of(stack, last_month.claim_id),
                         lambda c: c.get("stage") == "rejected")
    assert (today - timedelta(days=30)).isoformat() in refused["reasons"][0]
    accepted = await poll(lambda: claim_of(stack, yesterday.claim_id),
                          lambda c: c.get("stage") == "preliminary_review")
    assert accepted["insurance_type"] == "flexible"
    await poll(lambda: _value(read_received(stack.sms_dir)), lambda s: any(
        m["to"] == mobile and last_month.claim_id in m["text"] and "参保期" in m["text"]
        for m in s))


async def test_a_future_submitted_at_is_refused_and_the_filing_date_is_the_platforms(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, mobile = await enroll(stack)
    await coverage_known(stack, person)
    now, today = datetime.now(UTC), china_today()
    future = submitted(person, today - timedelta(days=3), now + timedelta(days=16))
    # A past timestamp is information only: filed on the day the platform received it.
    past = submitted(person, today - timedelta(days=3), now - timedelta(days=40))
    await send(stack, future, past)
    refused = await poll(lambda: claim_of(stack, future.claim_id),
                         lambda c: c.get("stage") == "rejected")
    assert "submitted_at" in refused["reasons"][0]
    assert "不能是将来的时间" in refused["reasons"][0]
    accepted = await poll(lambda: claim_of(stack, past.claim_id),
                          lambda c: c.get("stage") == "preliminary_review")
    assert accepted["filed_on"] == today
    await poll(lambda: _value(read_received(stack.sms_dir)), lambda s: any(
        m["to"] == mobile and future.claim_id in m["text"] and "将来" in m["text"] for m in s))


def _metric(stack: TestStack, name: str) -> float | None:
    url = f"http://127.0.0.1:{stack.web_ports['reimbursement']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(f'{name}{{region="{REGION}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return None


async def _metric_async(stack: TestStack, name: str) -> float | None:
    return _metric(stack, name)


async def test_an_expense_date_without_a_policy_waits_and_goes_on_when_it_is_added(
        stack: TestStack, workers: dict[str, Any]) -> None:
    today = china_today()
    shipped = PolicyBook.load(REGION)  # what the workers have before the test adds a file
    gaps = shipped.gaps(today - timedelta(days=360), today)  # within the one-year limit
    assert gaps, "the shipped files cover the whole past year: nothing to wait for"
    gap_from, gap_to = gaps[-1]
    expense = gap_to
    person, _ = await enroll(stack)
    if expense.year != today.year:  # insured then too: the tax authority's earlier payment
        await send(stack, ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person,
            insurance_type="resident", period_start=date(expense.year, 1, 1),
            period_end=date(expense.year, 12, 31), amount_fen=40_000,
            paid_at=datetime.now(UTC)))
        await coverage_known(stack, person, periods=2)
    claim = submitted(person, expense)
    await send(stack, claim)
    waiting = await poll(lambda: claim_of(stack, claim.claim_id),
                         lambda c: c.get("stage") == "awaiting_policy")
    assert waiting["waiting_for"] == "intake"
    assert f"no policy in force on {expense.isoformat()}" in waiting["history"][0]["detail"][
        "waiting"]
    await poll(lambda: _metric_async(stack, "medins_claims_awaiting_policy"),
               lambda v: v is not None and v >= 1)

    # The agency adds the version for that period (written whole, then moved into place).
    version = f"{gap_from.year}.test"
    text = (SHIPPED_DIR / f"{REGION}-2026.1.toml").read_text(encoding="utf-8").replace(
        'version = "2026.1"', f'version = "{version}"').replace(
        'effective_from = "2026-01-01"', f'effective_from = "{gap_from.isoformat()}"').replace(
        'effective_to = "2026-12-31"', f'effective_to = "{gap_to.isoformat()}"').replace(
        "2026.1-", f"{version}-")
    draft = stack.policy_dir / f"{REGION}-{version}.draft"
    draft.write_text(text, encoding="utf-8")
    draft.rename(stack.policy_dir / f"{REGION}-{version}.toml")

    resumed = await poll(lambda: claim_of(stack, claim.claim_id),
                         lambda c: c.get("stage") == "preliminary_review")
    assert resumed["waiting_for"] is None
    assert resumed["history"][-1]["detail"]["policy_added"] == version
    now = datetime.now(UTC)
    await send(stack, ClaimStageDecided(claim_id=claim.claim_id, person_id=person,
                                        stage="preliminary_review", decision="approve",
                                        reviewer="s9", decided_at=now),
               ClaimMaterialsMailed(claim_id=claim.claim_id, person_id=person,
                                    tracking_no="XC123456789CN", mailed_at=now),
               ClaimStageDecided(claim_id=claim.claim_id, person_id=person,
                                 stage="verification", decision="approve", reviewer="s9",
                                 decided_at=now))
    approved = await poll(lambda: claim_of(stack, claim.claim_id),
                          lambda c: c.get("stage") == "approved")
    # Computed with the version in force on the expense date, the one just added.
    assert approved["calculation"]["policy_version"] == version
    # Resident, level 3, in region: (3,000 - 1,000) x 0.60 = 1,200.00
    assert approved["payable_fen"] == 120_000
    await poll(lambda: _metric_async(stack, "medins_claims_awaiting_policy"),
               lambda v: v == 0)
