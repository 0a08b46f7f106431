"""Claim intake rules known so far: an insured claimant, a fresh receipt, within validity."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date


class ClaimRefused(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Receipt:
    invoice_no: str
    institution_code: str


def validity_deadline(expense_date: date) -> date:
    """SPEC reimbursement 3: a sporadic claim must be filed within one year of the expense."""
    try:
        return expense_date.replace(year=expense_date.year + 1)
    except ValueError:  # 29 February
        return expense_date.replace(year=expense_date.year + 1, day=28)


def accept_claim(*, insured_status: str | None, expense_date: date, filed_on: date,
                 earlier_claim_for_receipt: str | None) -> None:
    reasons = []
    if insured_status not in ("active", "suspended"):
        reasons.append(f"claimant is not insured here (status {insured_status or 'unknown'})")
    if expense_date > filed_on:
        reasons.append("expense_date: must not be in the future")
    elif filed_on > validity_deadline(expense_date):
        reasons.append(f"expense_date: claims must be filed within one year, by "
                       f"{validity_deadline(expense_date).isoformat()}")
    if earlier_claim_for_receipt:
        reasons.append(f"receipt already claimed in {earlier_claim_for_receipt}")
    if reasons:
        raise ClaimRefused(reasons)
