"""Claims: intake rules and the review stage machine (SPEC reimbursement 1 and 3)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class ClaimRefused(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class StageError(Exception):
    """A decision that would skip a stage or act on a closed claim; never applied."""


class Stage(StrEnum):
    SUBMITTED = "submitted"
    PRELIMINARY_REVIEW = "preliminary_review"
    MATERIALS_PENDING = "materials_pending"
    VERIFICATION = "verification"
    CALCULATION = "calculation"
    APPROVED = "approved"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    REJECTED = "rejected"


REVIEW_STAGES = (Stage.PRELIMINARY_REVIEW, Stage.VERIFICATION)
# Originals to mail after preliminary approval (审核通过), per the notices.
MATERIALS = ["发票原件", "费用明细清单", "出院小结", "身份证复印件", "银行卡或社保卡复印件"]


@dataclass
class Claim:
    claim_id: str
    person_id: str
    version: int
    stage: Stage
    expense_date: date
    amount_fen: int
    eligible_fen: int
    hospital_level: int
    location: str
    tracking_no: str | None = None
    payable_fen: int | None = None
    payment_attempts: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def idempotency_key(self) -> str:
        """One payment per claim version, whatever the retries: the bank dedupes on it."""
        return f"{self.claim_id}:v{self.version}"


def accept_claim(*, insured_status: str | None, expense_date: date, filed_on: date,
                 deadline: date, earlier_claim_for_receipt: str | None,
                 settled_as: str | None = None) -> None:
    reasons = []
    if insured_status not in ("active", "suspended"):
        reasons.append(f"claimant is not insured here (status {insured_status or 'unknown'})")
    if expense_date > filed_on:
        reasons.append("expense_date: must not be in the future")
    elif filed_on > deadline:
        reasons.append(f"expense_date: claims must be filed within one year (plus any "
                       f"extension in force), by {deadline.isoformat()}")
    if earlier_claim_for_receipt:
        reasons.append(f"receipt already claimed in {earlier_claim_for_receipt}")
    if settled_as:
        reasons.append(f"receipt already settled directly at the hospital ({settled_as})")
    if reasons:
        raise ClaimRefused(reasons)


def can_resubmit(current: Claim | None) -> int:
    """The version a submission under this claim id gets; only a rejected claim reopens."""
    if current is None:
        return 1
    if current.stage != Stage.REJECTED:
        raise StageError(f"claim is {current.stage}; only a rejected claim can be resubmitted")
    return current.version + 1


def decide(claim: Claim, stage: str, approve: bool, reasons: list[str]) -> Stage:
    """Apply a staff decision for `stage`; returns the claim's next stage."""
    if claim.stage != stage:
        raise StageError(f"claim is at {claim.stage}, not {stage}")
    if not approve:
        if not reasons:
            raise StageError("a rejection must give reasons")
        claim.stage, claim.reasons = Stage.REJECTED, list(reasons)
        return claim.stage
    claim.stage = (Stage.MATERIALS_PENDING if stage == Stage.PRELIMINARY_REVIEW
                   else Stage.CALCULATION)
    return claim.stage


def materials_mailed(claim: Claim, tracking_no: str) -> None:
    if claim.stage != Stage.MATERIALS_PENDING:
        raise StageError(f"claim is at {claim.stage}; originals are expected only after "
                         "preliminary approval")
    claim.tracking_no = tracking_no
    claim.stage = Stage.VERIFICATION


def calculated(claim: Claim, payable_fen: int) -> None:
    if claim.stage != Stage.CALCULATION:
        raise StageError(f"claim is at {claim.stage}, not calculation")
    claim.payable_fen = payable_fen
    claim.stage = Stage.APPROVED
    claim.payment_attempts = 1


def payment_result(claim: Claim, succeeded: bool, max_attempts: int) -> Stage:
    """Paid; or instructed again (same idempotency key) up to `max_attempts`; then surfaced."""
    if claim.stage != Stage.APPROVED:
        raise StageError(f"claim is at {claim.stage}; no payment is outstanding")
    if succeeded:
        claim.stage = Stage.PAID
    elif claim.payment_attempts >= max_attempts:
        claim.stage = Stage.PAYMENT_FAILED
    else:
        claim.payment_attempts += 1
    return claim.stage


def location_of(treatment_area: str | None, region: str,
                filings: list[tuple[str, date, date | None]], expense_date: date) -> str:
    """in_region, or remote_filed when a filing covered that place and day, else unfiled."""
    if treatment_area is None or treatment_area[:4] == region[:4]:
        return "in_region"
    for area, start, end in filings:
        if area == treatment_area and start <= expense_date and (end is None
                                                                 or expense_date <= end):
            return "remote_filed"
    return "remote_unfiled"


def check_proactive_record(*, person_id_error: str | None, insured_status: str | None,
                           expense_date: date, outage_from: date, outage_to: date,
                           amount_fen: int, eligible_fen: int) -> str | None:
    """Why an outage record cannot become a claim, or None when it can [004]."""
    if person_id_error:
        return f"person_id: {person_id_error}"
    if insured_status not in ("active", "suspended"):
        return f"person_id: not insured here (status {insured_status or 'unknown'})"
    if not outage_from <= expense_date <= outage_to:
        return (f"expense_date: {expense_date.isoformat()} is outside the outage "
                f"{outage_from.isoformat()}..{outage_to.isoformat()}")
    if eligible_fen > amount_fen:
        return "eligible_fen: must not exceed amount_fen"
    return None


@dataclass(frozen=True)
class MaternityRules:
    """Practice, configurable: 98 days' leave, 15 more for a difficult birth and per extra
    baby; the allowance is last year's average monthly wage / 30 x leave days."""

    base_days: int = 98
    difficult_extra_days: int = 15
    per_extra_baby_days: int = 15
    days_per_month: int = 30


def maternity_leave_days(rules: MaternityRules, difficult: bool, babies: int) -> int:
    return (rules.base_days + (rules.difficult_extra_days if difficult else 0)
            + rules.per_extra_baby_days * (babies - 1))


def maternity_allowance(rules: MaternityRules, average_monthly_wage_fen: int,
                        leave_days: int) -> tuple[int, str]:
    """The allowance in fen and its working, rounded half-up to the fen."""
    exact = Decimal(average_monthly_wage_fen) / rules.days_per_month * leave_days
    fen = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return fen, (f"{average_monthly_wage_fen / 100:.2f} / {rules.days_per_month} x {leave_days}"
                 f" days = {fen / 100:.2f}")
