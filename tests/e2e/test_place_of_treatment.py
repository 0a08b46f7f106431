"""Place of treatment by GB/T 2260: city filings cover districts, the own city files nothing."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts.channels import RemoteTreatmentFilingApplied
from shared.contracts.hospital import EmergencyAdmissionFlagged
from tests.conftest import TestStack
from tests.e2e.test_benefit_lines import person_claims
from tests.e2e.test_enrollment_stories import enrollment, send
from tests.e2e.test_reimbursement_story import enroll_for_claims
from tests.helpers import poll


async def test_an_emergency_in_the_own_city_files_nothing(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll_for_claims(stack)
    today = datetime.now(UTC).date()
    local, away = f"ADM{uuid.uuid4().hex[:6]}", f"ADM{uuid.uuid4().hex[:6]}"
    # A district hospital of the insured city (Dalian 210200), then one in Shenzhen: both
    # keyed by the person, so once the second is filed the first has been decided.
    await send(stack, EmergencyAdmissionFlagged(
        admission_id=local, person_id=person, hospital_code="H210204", treatment_area="210204",
        admitted_on=today, emergency=True), EmergencyAdmissionFlagged(
        admission_id=away, person_id=person, hospital_code="H440305", treatment_area="440305",
        admitted_on=today, emergency=True))
    found = await poll(lambda: enrollment(stack, person), lambda e: bool(e.get("filings")))
    assert [f["filing_id"] for f in found["filings"]] == [f"EMG-H440305-{away}"]


async def test_a_city_filing_covers_its_districts_at_its_kinds_level(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from shared.contracts.channels import ClaimSubmitted

    person, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    filing_id = f"F-{uuid.uuid4().hex[:6]}"
    await send(stack, RemoteTreatmentFilingApplied(
        filing_id=filing_id, person_id=person, kind="temporary", treatment_area="110100",
        start_date=now.date() - timedelta(days=10), channel="wechat", submitted_at=now))
    await poll(lambda: enrollment(stack, person), lambda e: bool(e.get("filings")))
    # Beijing's Chaoyang district (110105) is inside the filed city; Tianjin (120101) is not.
    await send(stack, *(ClaimSubmitted(
        claim_id=f"CLM-{area}-{uuid.uuid4().hex[:6]}", person_id=person,
        invoice_no=f"INV{uuid.uuid4().hex[:8]}", institution_code=f"H{area}",
        expense_date=now.date() - timedelta(days=3), amount_fen=50_000, hospital_level=3,
        treatment_area=area, channel="wechat", submitted_at=now) for area in ("110105",
                                                                             "120101")))
    claims = await poll(lambda: person_claims(stack, person), lambda cs: len(cs) == 2)
    where = {c["treatment_area"]: (c["location"], c["filing_level"]) for c in claims}
    assert where == {"110105": ("remote_filed", "temporary"),
                     "120101": ("remote_unfiled", None)}
