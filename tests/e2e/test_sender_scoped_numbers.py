"""The same number from two senders is two things: people's channel numbers, hospitals' births."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from shared.clock import china_today
from shared.contracts.channels import (
    ChronicDiseaseApplied,
    ChronicDiseaseReviewed,
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    RemoteTreatmentFilingApplied,
    RemoteTreatmentFilingEnded,
)
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.db.sealed import resident_keys
from shared.devstack import people
from shared.progress import collect_progress
from tests.conftest import REGION, TestStack
from tests.e2e.test_enrollment_stories import decision_waits, enrollment, send, this_year_end
from tests.helpers import poll


async def test_two_people_under_one_channel_number_each_get_their_own(
        stack: TestStack, workers: dict[str, Any]) -> None:
    now, tag = datetime.now(UTC), uuid.uuid4().hex[:6].upper()
    first, second = people.resident_id(), people.resident_id()
    number = f"APP-{tag}"

    # Both apply under one number; the desk approves and the tax authority confirms each
    # under that number, naming the person: both are enrolled.
    def apply(person: str) -> EnrollmentApplicationSubmitted:
        return EnrollmentApplicationSubmitted(
            application_id=number, person_id=person, name="王芳", insurance_type="resident",
            mobile=people.mobile(), channel="wechat", region_code=REGION, submitted_at=now)

    def pay(person: str) -> ContributionPaymentConfirmed:
        return ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id=number,
            insurance_type="resident", period_start=date(china_today().year, 1, 1),
            period_end=this_year_end(), amount_fen=40_000, paid_at=now)

    await send(stack, apply(first), apply(second))
    await send(stack, *(EnrollmentReviewDecided(application_id=number, person_id=p,
                                                decision="approve", reviewer="s2",
                                                decided_at=now) for p in (first, second)))
    await send(stack, pay(first), pay(second))
    found = {p: await poll(lambda p=p: enrollment(stack, p),
                           lambda e: e.get("person", {}).get("status") == "active")
             for p in (first, second)}
    [one] = found[first]["applications"]
    [other] = found[second]["applications"]
    assert (one["application_id"], one["channel_ref"], one["state"]) == (number, None, "paid")
    assert other["application_id"].startswith(f"{number}-") and other["state"] == "paid"
    assert other["channel_ref"] == number

    # Both file under one number; the second ends "their" filing: only theirs ends.
    filing = f"F-{tag}"
    await send(stack, *(RemoteTreatmentFilingApplied(
        filing_id=filing, person_id=p, kind="temporary", treatment_area="440300",
        start_date=china_today(), channel="national_app", submitted_at=now)
        for p in (first, second)))
    for p in (first, second):
        await poll(lambda p=p: enrollment(stack, p),
                   lambda e: [f["state"] for f in e.get("filings", [])] == ["active"])
    await send(stack, RemoteTreatmentFilingEnded(filing_id=filing, person_id=second,
                                                 requested_at=now))
    ended = await poll(lambda: enrollment(stack, second),
                       lambda e: [f["state"] for f in e["filings"]] == ["ended"])
    assert ended["filings"][0]["filing_id"] != filing
    assert ended["filings"][0]["channel_ref"] == filing
    kept = await enrollment(stack, first)
    assert [(f["filing_id"], f["state"]) for f in kept["filings"]] == [(filing, "active")]
    # Reimbursement keeps each person's filing as theirs, the second's ended.
    conn = await stack.connect("reimbursement")
    try:
        def filings_of(person: str) -> Any:
            return conn.fetch("SELECT filing_id, active FROM filings_view"
                              " WHERE person_key = ANY($1::text[])", resident_keys(person))

        await poll(lambda: filings_of(first), lambda rs: [tuple(r) for r in rs] == [
            (filing, True)])
        await poll(lambda: filings_of(second), lambda rs: [tuple(r) for r in rs] == [
            (ended["filings"][0]["filing_id"], False)])
    finally:
        await conn.close()

    # Both apply for a chronic disease under one number. The desk's approval of the second's
    # arrives before the second's application: the first's case under that number is not
    # theirs, so it waits, and decides the second's own case when it comes.
    case = f"CD-{tag}"

    def chronic(person: str) -> ChronicDiseaseApplied:
        return ChronicDiseaseApplied(
            application_id=case, person_id=person, action="recognise", disease="diabetes",
            institution_code="H21020003", channel="wechat", submitted_at=now)

    await send(stack, chronic(first))
    await poll(lambda: collect_progress(stack.settings(), first),
               lambda f: any(c["state"] == "submitted"
                             for c in f["enrollment"].get("cases", [])))
    await send(stack, ChronicDiseaseReviewed(application_id=case, person_id=second,
                                             decision="approve", reviewer="s4",
                                             decided_at=now))
    await decision_waits(stack, case)
    await send(stack, chronic(second))
    recognised = await poll(lambda: enrollment(stack, second),
                            lambda e: bool(e.get("chronic_diseases")))
    assert [c["disease"] for c in recognised["chronic_diseases"]] == ["diabetes"]
    waiting = await collect_progress(stack.settings(), first)
    assert [(c["case_id"], c["state"]) for c in waiting["enrollment"]["cases"]] == [
        (case, "submitted")]
    assert (await enrollment(stack, first)).get("chronic_diseases") == []
    theirs = await collect_progress(stack.settings(), second)
    [own_case] = theirs["enrollment"]["cases"]
    assert own_case["case_id"].startswith(f"{case}-") and own_case["state"] == "approved"
