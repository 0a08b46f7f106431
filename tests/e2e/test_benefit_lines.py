"""Annual totals per benefit line with hospital settlements, and claims scoped by person."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts.channels import ClaimMaterialsMailed, ClaimStageDecided, ClaimSubmitted
from shared.contracts.hospital import DirectSettlementRecorded
from shared.status import collect_status
from tests.conftest import TestStack
from tests.e2e.test_enrollment_stories import send
from tests.e2e.test_reimbursement_story import enroll_for_claims
from tests.helpers import poll


async def person_claims(stack: TestStack, person: str) -> list[dict[str, Any]]:
    found = await collect_status(stack.settings(), person)
    return list(found.get("reimbursement", {}).get("claims", []))


async def test_what_the_hospital_settled_counts_towards_the_deductible_and_cap(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    expense = now.date() - timedelta(days=3)
    # Earlier this year the hospital settled directly: the deductible was met there and the
    # fund paid 198,000.00 of the resident cap of 200,000.00 (example policy).
    await send(stack, DirectSettlementRecorded(
        settlement_id=f"SET-{uuid.uuid4().hex[:6]}", person_id=person,
        invoice_no=f"S{uuid.uuid4().hex[:8]}", institution_code="H21020011",
        settled_on=expense - timedelta(days=1), fund_paid_fen=19_800_000,
        deductible_used_fen=100_000))
    claim_id = f"CLM-{uuid.uuid4().hex[:8]}"
    await send(stack, ClaimSubmitted(
        claim_id=claim_id, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H21020003", expense_date=expense, amount_fen=1_000_000,
        hospital_level=3, channel="wechat", submitted_at=now))
    await poll(lambda: person_claims(stack, person),
               lambda cs: any(c["stage"] == "preliminary_review" for c in cs))
    for stage in ("preliminary_review", "verification"):
        if stage == "verification":
            await send(stack, ClaimMaterialsMailed(claim_id=claim_id, person_id=person,
                                                   tracking_no="XC123456789CN", mailed_at=now))
        await send(stack, ClaimStageDecided(claim_id=claim_id, person_id=person, stage=stage,  # type: ignore[arg-type]
                                            decision="approve", reviewer="s8", decided_at=now))
    [claim] = await poll(lambda: person_claims(stack, person),
                         lambda cs: any(c["stage"] == "approved" for c in cs))
    # No deductible again: 10,000.00 x 0.60 = 6,000.00, but only 2,000.00 of the cap is left.
    calc = claim["calculation"]
    assert calc["deductible_fen"] == 0 and claim["payable_fen"] == 200_000
    assert calc["totals"]["settled_paid_fen"] == 19_800_000
    assert calc["totals"]["settled_deductible_fen"] == 100_000
    assert "settled at hospital 198000.00" in calc["working"][-1]
    assert claim["benefit_line"] == "medical"

    # Childbirth costs are their own claim type and line: the nearly spent medical cap and
    # the medical totals are not theirs (default figures: in full, up to 5,000.00 a year).
    maternity_id = f"CLM-{uuid.uuid4().hex[:8]}"
    await send(stack, ClaimSubmitted(
        claim_id=maternity_id, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H21020003", expense_date=expense, amount_fen=300_000,
        hospital_level=3, channel="wechat", submitted_at=now, claim_type="maternity_medical"))
    # One person's events are keyed alike, so they are taken in this order.
    await send(stack, ClaimStageDecided(claim_id=maternity_id, person_id=person,
                                        stage="preliminary_review", decision="approve",
                                        reviewer="s8", decided_at=now),
               ClaimMaterialsMailed(claim_id=maternity_id, person_id=person,
                                    tracking_no="XD123456789CN", mailed_at=now),
               ClaimStageDecided(claim_id=maternity_id, person_id=person,
                                 stage="verification", decision="approve",
                                 reviewer="s8", decided_at=now))
    claims = await poll(lambda: person_claims(stack, person), lambda cs: any(
        c["claim_id"] == maternity_id and c["stage"] == "approved" for c in cs))
    [maternity] = [c for c in claims if c["claim_id"] == maternity_id]
    assert maternity["benefit_line"] == "maternity_medical"
    assert maternity["payable_fen"] == 300_000
    assert maternity["calculation"]["working"][-1].startswith(
        "maternity_medical totals")


async def test_the_same_claim_reference_from_two_people_is_two_claims(
        stack: TestStack, workers: dict[str, Any]) -> None:
    first, _ = await enroll_for_claims(stack)
    second, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    reference = f"WX-{uuid.uuid4().hex[:8]}"

    def claim(person: str) -> ClaimSubmitted:
        return ClaimSubmitted(claim_id=reference, person_id=person,
                              invoice_no=f"INV{uuid.uuid4().hex[:8]}",
                              institution_code="H21020004",
                              expense_date=now.date() - timedelta(days=2), amount_fen=40_000,
                              channel="wechat", submitted_at=now)

    await send(stack, claim(first), claim(second), ClaimStageDecided(
        claim_id=reference, person_id=second, stage="preliminary_review", decision="reject",
        reasons=["发票照片不清晰"], reviewer="s9", decided_at=now))
    for person, stage in ((first, "preliminary_review"), (second, "rejected")):
        [found] = await poll(lambda p=person: person_claims(stack, p),  # type: ignore[misc]
                             lambda cs, s=stage: [c["stage"] for c in cs] == [s])
        assert found["claim_id"] == reference and found["person_id"] == person
        assert [h["stage"] for h in found["history"]][-1] == stage
