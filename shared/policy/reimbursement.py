"""What the reimbursement figures mean: deductible, ratio and cap, with the measures in force."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from shared.policy.book import PolicyBook

FEN = Decimal("1")


@dataclass(frozen=True)
class AnnualTotals:
    """One benefit line's totals in one year, by where they come from: manual claims
    approved or paid here, and settlements made directly at the hospital."""

    line: str
    year: int
    claims_paid_fen: int = 0
    settled_paid_fen: int = 0
    claims_deductible_fen: int = 0
    settled_deductible_fen: int = 0

    @property
    def paid_fen(self) -> int:
        return self.claims_paid_fen + self.settled_paid_fen

    @property
    def deductible_fen(self) -> int:
        return self.claims_deductible_fen + self.settled_deductible_fen

    def describe(self) -> str:
        return (f"{self.line} totals {self.year}: paid {self.paid_fen / 100:.2f} (claims "
                f"{self.claims_paid_fen / 100:.2f} + settled at hospital "
                f"{self.settled_paid_fen / 100:.2f}), deductible met "
                f"{self.deductible_fen / 100:.2f} (claims {self.claims_deductible_fen / 100:.2f}"
                f" + settled at hospital {self.settled_deductible_fen / 100:.2f})")


@dataclass(frozen=True)
class ClaimFacts:
    insurance_type: str
    hospital_level: int
    location: str
    expense_date: date
    eligible_fen: int  # the part of the expense the catalogue covers
    deductible_used_fen: int = 0  # deductible already met this year
    paid_this_year_fen: int = 0  # reimbursed this year, towards the cap
    epidemic_patient: bool = False  # confirmed or suspected patient of a declared epidemic
    # The medical line's totals for the expense year; when given they replace the two
    # figures above and the working names them.
    totals: AnnualTotals | None = None
    filing_level: str | None = None  # remote_filed: the benefit level the filing gives
    # medical, or maternity_medical (childbirth costs: their own figures and totals)
    benefit_line: str = "medical"


@dataclass(frozen=True)
class Calculation:
    policy_version: str
    overrides: list[str]  # ids of the measures that changed the result
    eligible_fen: int
    deductible_fen: int
    ratio: Decimal
    cap_remaining_fen: int
    payable_fen: int
    working: list[str] = field(default_factory=list)


def calculate(book: PolicyBook, claim: ClaimFacts) -> Calculation:
    """Deductible, then ratio, then the annual cap, by the version and measures in force on
    the expense date; every step written down. Raises NoPolicyInForce for a day no version
    covers (never another period's figures) and PolicyError for a missing rule."""
    policy = book.in_force(claim.expense_date)
    applied: list[str] = []
    if claim.epidemic_patient:
        epidemic = book.epidemic_coverage(claim.expense_date)
        if epidemic is not None:
            return Calculation(policy.version, [epidemic.measure_id], claim.eligible_fen, 0,
                               Decimal(1), claim.eligible_fen, claim.eligible_fen,
                               [f"measure {epidemic.measure_id} ({epidemic.notice}): epidemic "
                                "patient, costs fully covered"])
    if claim.benefit_line == "maternity_medical":
        return _maternity_medical(book, claim)
    location = claim.location
    if location != "in_region":
        same = book.remote_same_as_local(claim.expense_date)
        if same is not None:
            applied.append(same.measure_id)
            location = "in_region"
    rule = policy.rule(claim.insurance_type, claim.hospital_level, location,
                       claim.filing_level if location == "remote_filed" else None)
    used, paid = ((claim.totals.deductible_fen, claim.totals.paid_fen) if claim.totals
                  else (claim.deductible_used_fen, claim.paid_this_year_fen))
    deductible = max(0, min(rule.deductible_fen - used, claim.eligible_fen))
    base = Decimal(claim.eligible_fen - deductible)
    by_ratio = int((base * rule.ratio).quantize(FEN, rounding=ROUND_HALF_UP))
    cap_remaining = max(0, rule.annual_cap_fen - paid)
    payable = min(by_ratio, cap_remaining)
    working = [
        f"policy {policy.region}/{policy.version} in force on {claim.expense_date.isoformat()}, "
        f"rule {rule.insurance_type} level {rule.hospital_level} {rule.location}"
        + (f" ({rule.filing_level} filing)" if rule.filing_level else "")
        + (f" (measures {applied})" if applied else ""),
        f"eligible {claim.eligible_fen / 100:.2f} - deductible {deductible / 100:.2f}"
        f" = {base / 100:.2f}",
        f"{base / 100:.2f} x ratio {rule.ratio} = {by_ratio / 100:.2f}",
        f"cap remaining {cap_remaining / 100:.2f} -> payable {payable / 100:.2f}",
    ]
    if claim.totals is not None:
        working.append(claim.totals.describe() + f"; deductible {rule.deductible_fen / 100:.2f}"
                       f", annual cap {rule.annual_cap_fen / 100:.2f}")
    return Calculation(policy.version, applied, claim.eligible_fen, deductible, rule.ratio,
                       cap_remaining, payable, working)


def _maternity_medical(book: PolicyBook, claim: ClaimFacts) -> Calculation:
    """Childbirth medical costs by their own line's figures and totals, wherever treated."""
    policy = book.in_force(claim.expense_date)
    applied = book.maternity_medical(claim.expense_date)
    figures = applied.value
    used, paid = ((claim.totals.deductible_fen, claim.totals.paid_fen) if claim.totals
                  else (claim.deductible_used_fen, claim.paid_this_year_fen))
    deductible = max(0, min(figures.deductible_fen - used, claim.eligible_fen))
    base = Decimal(claim.eligible_fen - deductible)
    by_ratio = int((base * figures.ratio).quantize(FEN, rounding=ROUND_HALF_UP))
    cap_remaining = max(0, figures.annual_cap_fen - paid)
    payable = min(by_ratio, cap_remaining)
    working = [
        f"policy {policy.region}/{policy.version} in force on {claim.expense_date.isoformat()}, "
        f"maternity medical line: measure {applied.measure_id} ({applied.notice})",
        f"eligible {claim.eligible_fen / 100:.2f} - deductible {deductible / 100:.2f}"
        f" = {base / 100:.2f}",
        f"{base / 100:.2f} x ratio {figures.ratio} = {by_ratio / 100:.2f}",
        f"cap remaining {cap_remaining / 100:.2f} -> payable {payable / 100:.2f}",
    ]
    if claim.totals is not None:
        working.append(claim.totals.describe() + f"; deductible {figures.deductible_fen / 100:.2f}"
                       f", annual cap {figures.annual_cap_fen / 100:.2f}")
    return Calculation(policy.version, [], claim.eligible_fen, deductible, figures.ratio,
                       cap_remaining, payable, working)
