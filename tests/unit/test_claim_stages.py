"""The claim stage machine: no skipped stage, no action on a closed claim, one payment key."""
from datetime import date

import pytest

from services.reimbursement.domain.claims import (
    Claim,
    Stage,
    StageError,
    calculated,
    can_resubmit,
    decide,
    location_of,
    materials_mailed,
    payment_result,
)


def claim() -> Claim:
    return Claim("CLM-1", "210202198001011238", 1, Stage.PRELIMINARY_REVIEW, date(2026, 6, 1),
                 100_000, 100_000, 3, "in_region")


def test_full_path_to_paid() -> None:
    c = claim()
    assert decide(c, "preliminary_review", True, []) == Stage.MATERIALS_PENDING
    materials_mailed(c, "XA123456789CN")
    assert c.stage == Stage.VERIFICATION and c.tracking_no == "XA123456789CN"
    assert decide(c, "verification", True, []) == Stage.CALCULATION
    calculated(c, 54_000)
    assert c.stage == Stage.APPROVED and c.payment_attempts == 1
    assert payment_result(c, True, 3) == Stage.PAID


def test_skipping_a_stage_or_acting_on_a_closed_claim_is_refused() -> None:
    c = claim()
    with pytest.raises(StageError, match="not verification"):
        decide(c, "verification", True, [])
    with pytest.raises(StageError, match="only after preliminary approval"):
        materials_mailed(c, "XA123456789CN")
    decide(c, "preliminary_review", False, ["发票不清晰"])
    assert c.stage == Stage.REJECTED
    with pytest.raises(StageError):
        decide(c, "preliminary_review", True, [])
    with pytest.raises(StageError, match="no payment is outstanding"):
        payment_result(c, True, 3)


def test_rejection_needs_reasons_and_resubmission_makes_a_new_version() -> None:
    c = claim()
    with pytest.raises(StageError, match="reasons"):
        decide(c, "preliminary_review", False, [])
    with pytest.raises(StageError, match="only a rejected claim"):
        can_resubmit(c)
    decide(c, "preliminary_review", False, ["缺少明细"])
    assert can_resubmit(c) == 2 and can_resubmit(None) == 1


def test_failed_payments_retry_with_the_same_key_then_surface() -> None:
    c = claim()
    decide(c, "preliminary_review", True, [])
    materials_mailed(c, "XA123456789CN")
    decide(c, "verification", True, [])
    calculated(c, 1_000)
    key = c.idempotency_key
    assert payment_result(c, False, 2) == Stage.APPROVED and c.payment_attempts == 2
    assert c.idempotency_key == key == "CLM-1:v1"
    assert payment_result(c, False, 2) == Stage.PAYMENT_FAILED


def test_location_from_filings() -> None:
    filings = [("440300", date(2026, 1, 1), None)]
    assert location_of(None, "210200", filings, date(2026, 6, 1)) == "in_region"
    assert location_of("210204", "210200", filings, date(2026, 6, 1)) == "in_region"
    assert location_of("440300", "210200", filings, date(2026, 6, 1)) == "remote_filed"
    assert location_of("440300", "210200", filings, date(2025, 6, 1)) == "remote_unfiled"
    assert location_of("110105", "210200", filings, date(2026, 6, 1)) == "remote_unfiled"


def test_maternity_leave_days_and_allowance() -> None:
    from services.reimbursement.domain.claims import (
        MaternityRules,
        maternity_allowance,
        maternity_leave_days,
    )

    rules = MaternityRules()
    assert maternity_leave_days(rules, False, 1) == 98
    assert maternity_leave_days(rules, True, 2) == 128
    fen, working = maternity_allowance(rules, 600_000, 98)  # 6,000.00 a month
    assert fen == 1_960_000 and working == "6000.00 / 30 x 98 days = 19600.00"
    assert maternity_allowance(rules, 100_001, 1)[0] == 3_333  # 33.3336... -> 33.33
