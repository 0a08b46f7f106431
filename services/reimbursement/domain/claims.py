"""Claims: intake rules and the review stage machine (SPEC reimbursement 1 and 3)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Literal

from shared.contracts.common import sender_scoped


class StageError(Exception):
    """A decision that would skip a stage or act on a closed claim; never applied."""


class Stage(StrEnum):
    SUBMITTED = "submitted"
    PRELIMINARY_REVIEW = "preliminary_review"
    MATERIALS_PENDING = "materials_pending"
    VERIFICATION = "verification"
    CALCULATION = "calculation"
    # No policy version covers the expense date: nothing is computed with another period's
    # figures; the claim goes on by itself when the agency adds the policy.
    AWAITING_POLICY = "awaiting_policy"
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
    insurance_type: str | None = None  # of the coverage period on the expense date
    filed_on: date | None = None  # the platform's date of receipt, never the sender's
    waiting_for: str | None = None  # intake or calculation, while awaiting a policy
    # The benefit line whose annual totals it counts towards: medical (deductible and cap),
    # maternity_allowance, maternity_medical, epidemic; each line has its own totals.
    benefit_line: str = "medical"
    payee: str = "insured"  # or "institution": epidemic costs are paid to the hospital
    channel: str | None = None
    filing_level: str | None = None  # the benefit level of the filing that covered it

    @property
    def idempotency_key(self) -> str:
        """One payment per claim version, whatever the retries: the bank dedupes on it."""
        return f"{self.claim_id}:v{self.version}"


@dataclass(frozen=True)
class Coverage:
    """A period the person was insured here (from enrollment's coverage.changed)."""

    insurance_type: str
    start: date
    end: date | None

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


def coverage_on(periods: list[Coverage], day: date) -> Coverage | None:
    """The period in force on `day` (the latest-starting one if several overlap): a claim is
    judged by it, not by today's status, so heirs and transferred-out people are paid for
    what was spent while insured, and a newcomer is not paid for last month."""
    found = [p for p in periods if p.covers(day)]
    return max(found, key=lambda p: p.start) if found else None


def intake_reasons(*, coverage: Coverage | None, expense_date: date, filed_on: date,
                   deadline: date | None, earlier_claim_for_receipt: str | None,
                   settled_as: str | None = None) -> list[str]:
    """Why a claim cannot be accepted, in Chinese for the person (field names for staff).
    `deadline` None: no policy in force on the expense date yet, so not judged here."""
    reasons = []
    if expense_date > filed_on:
        reasons.append(f"费用日期（expense_date {expense_date.isoformat()}）晚于申请受理日期"
                       f"{filed_on.isoformat()}，不能报销尚未发生的费用")
    elif coverage is None:
        reasons.append(f"费用发生日（expense_date {expense_date.isoformat()}）您不在本统筹区"
                       "参保期内，不能报销")
    elif deadline is not None and filed_on > deadline:
        reasons.append(late_reason(deadline))
    if earlier_claim_for_receipt:
        reasons.append(f"该票据已在报销申请{earlier_claim_for_receipt}中申报（invoice_no）")
    if settled_as:
        reasons.append(f"该票据已在医院直接结算（结算号{settled_as}），不能重复报销（invoice_no）")
    return reasons


# A staff tag in a reason names the field it is about, with the value or alone:
# （expense_date 2026-01-01）, （invoice_no）. The person reads the value, never the field name.
_STAFF_TAG = re.compile(r"（([a-z][a-z_]*)(?: ([^）]*))?）")


def for_person(reasons: list[str]) -> list[str]:
    """The reasons as the person reads them: the staff's field tags taken out."""
    return [_STAFF_TAG.sub(lambda m: f"（{m.group(2)}）" if m.group(2) else "", r)
            for r in reasons]


def late_reason(deadline: date) -> str:
    return (f"零星报销须在费用发生后一年内（含政策延期）申请，本笔费用最迟应于"
            f"{deadline.isoformat()}申请（expense_date）")


def future_timestamp_reason(field_name: str, claimed: str, received: str) -> str:
    return (f"提交时间（{field_name} {_china_time(claimed)}）晚于平台收到申请的时间"
            f"{_china_time(received)}，申请日期以平台收到的时间为准，不能是将来的时间")


def _china_time(instant: str) -> str:
    """An ISO instant as a person reads it: Beijing time to the minute."""
    try:
        parsed = datetime.fromisoformat(instant)
    except ValueError:
        return instant
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone(timedelta(hours=8)))
    return parsed.strftime("%Y-%m-%d %H:%M")


def awaiting_policy(claim: Claim, waiting_for: str) -> None:
    """No policy in force on the expense date: wait, visibly, for the agency to add it."""
    claim.stage, claim.waiting_for = Stage.AWAITING_POLICY, waiting_for


def policy_added(claim: Claim, deadline: date) -> list[str]:
    """The policy for the expense date arrived: the intake check it waited for, or back to
    calculation. Returns the reasons for a rejection (empty: it goes on)."""
    if claim.stage != Stage.AWAITING_POLICY:
        raise StageError(f"claim is {claim.stage}, not awaiting a policy")
    waiting_for, claim.waiting_for = claim.waiting_for, None
    if waiting_for == "calculation":
        claim.stage = Stage.CALCULATION
        return []
    assert claim.filed_on is not None  # the rest of intake was checked on receipt
    reasons = [late_reason(deadline)] if claim.filed_on > deadline else []
    claim.stage, claim.reasons = ((Stage.REJECTED, reasons) if reasons
                                  else (Stage.PRELIMINARY_REVIEW, []))
    return reasons


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


def area_covers(filed: str, place: str) -> bool:
    """GB/T 2260: a province (XX0000) covers every place whose first 2 digits match, a city
    (XXXX00) every place of its first 4, a county only itself."""
    if filed[2:] == "0000":
        return place[:2] == filed[:2]
    if filed[4:] == "00":
        return place[:4] == filed[:4]
    return place == filed


@dataclass(frozen=True)
class FilingOnRecord:
    """A remote filing as reimbursement knows it, with its last valid day (None: open)."""

    area: str
    start: date
    last_day: date | None
    benefit_level: str  # temporary (an emergency admission too), long_term, referral

    def covers(self, place: str, day: date) -> bool:
        return area_covers(self.area, place) and self.start <= day and (
            self.last_day is None or day <= self.last_day)


def location_of(treatment_area: str | None, region: str, filings: list[FilingOnRecord],
                expense_date: date, intra_province_without_filing: bool = False,
                ) -> tuple[str, str | None]:
    """(location, filing level). Inside the insured city it is never remote. Else
    remote_filed at the level of the most specific filing that covered the place on the
    expense day (one that ended later still counts), or, where a trip within the province
    needs no filing [003 Shandong], at the temporary level; else remote_unfiled."""
    if treatment_area is None or treatment_area[:4] == region[:4]:
        return "in_region", None
    covering = [f for f in filings if f.covers(treatment_area, expense_date)]
    if covering:
        best = max(covering, key=lambda f: (len(f.area.rstrip("0")), f.start))
        return "remote_filed", best.benefit_level
    if intra_province_without_filing and treatment_area[:2] == region[:2]:
        return "remote_filed", "temporary"
    return "remote_unfiled", None


@dataclass(frozen=True)
class DeclaredOutage:
    """A real-time settlement outage as the agency declared it [004]; empty institution_codes
    means every designated institution of the region."""

    outage_id: str
    outage_from: date
    outage_to: date
    pay_by: date
    institution_codes: tuple[str, ...] = ()

    def covers(self, day: date) -> bool:
        return self.outage_from <= day <= self.outage_to


def declared_outage_for(outages: list[DeclaredOutage], day: date) -> DeclaredOutage | None:
    """The declared outage (of those naming this institution or all) that covers `day`."""
    found = [o for o in outages if o.covers(day)]
    return min(found, key=lambda o: o.pay_by) if found else None


def proactive_route(*, care: str, treatment_area: str | None, region: str) -> str | None:
    """Notice 004 reimburses proactively only local (in the city) outpatient costs: anything
    else goes to manual reimbursement at a window. Returns why, or None for proactive."""
    if care != "outpatient":
        return ("care: 住院费用不属于主动报范围，请参保人持票据等材料到参保地医保经办窗口"
                "办理手工报销 (inpatient costs go to manual reimbursement)")
    if treatment_area is not None and treatment_area[:4] != region[:4]:
        return ("treatment_area: 市外就医费用不属于主动报范围，请参保人到参保地医保经办窗口"
                "办理手工报销 (out-of-city costs go to manual reimbursement)")
    return None


def check_proactive_record(*, person_id_error: str | None, coverage: Coverage | None,
                           expense_date: date, outage: DeclaredOutage | None,
                           declared: list[DeclaredOutage], amount_fen: int,
                           eligible_fen: int) -> str | None:
    """Why an outage record cannot become a claim, or None when it can [004]. The window is
    the one the agency declared, never what the institution says."""
    if person_id_error:
        return f"person_id: {person_id_error}"
    if coverage is None:
        return f"person_id: not insured here on {expense_date.isoformat()}"
    if outage is None:
        windows = ", ".join(f"{o.outage_from.isoformat()}..{o.outage_to.isoformat()}"
                            for o in declared)
        return (f"expense_date: {expense_date.isoformat()} is outside the outage the agency "
                f"declared ({windows})")
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


# Where an outage record goes: paid the proactive way, left to a manual claim, kept until
# the agency declares the outage, or rejected.
Route = Literal["proactive", "manual", "rejected", "awaiting_declaration"]


def route_of_record(*, region: str, person_id_error: str | None, care: str,
                    treatment_area: str | None, expense_date: date, amount_fen: int,
                    eligible_fen: int, periods: list[Coverage],
                    outages: list[DeclaredOutage]
                    ) -> tuple[Route, str, Coverage | None, DeclaredOutage | None]:
    """An outage record's route before any calculation, why, and the coverage and declared
    outage it falls under (notice 004: only local outpatient costs go the proactive way;
    the outage window is the agency's declaration, never the institution's)."""
    coverage = None if person_id_error else coverage_on(periods, expense_date)
    outage = declared_outage_for(outages, expense_date)
    manual = None if person_id_error else proactive_route(
        care=care, treatment_area=treatment_area, region=region)
    if manual is not None:
        return "manual", manual, coverage, outage
    if person_id_error is None and not outages:
        # Uploaded before the agency declared the outage: kept, and reimbursed when the
        # declaration comes.
        return ("awaiting_declaration", "waiting for the agency to declare the settlement "
                "outage", coverage, outage)
    rejected = check_proactive_record(
        person_id_error=person_id_error, coverage=coverage, expense_date=expense_date,
        outage=outage, declared=outages, amount_fen=amount_fen, eligible_fen=eligible_fen)
    return ("rejected", rejected, coverage, outage) if rejected else (
        "proactive", "", coverage, outage)


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


# Claims the agency opens itself, without an application: their ids scoped by the outside
# sender of the record they come from (the same number from two hospitals is two claims).

def proactive_claim_id(institution: str, record_id: str) -> str:
    """The agency's claim for an outage record; a digest when the two do not fit a
    reference."""
    return sender_scoped("PRO", institution, record_id)


def maternity_claim_id(institution: str, birth_id: str) -> str:
    """The allowance's claim for a birth (a birth kept before hospitals were named keeps the
    id it would have had then)."""
    return sender_scoped("MAT", institution, birth_id) if institution else f"MAT-{birth_id}"


def epidemic_claim_id(institution: str, settlement_id: str) -> str:
    """The full coverage of an epidemic patient's settlement."""
    return sender_scoped("EPI", institution, settlement_id)
