"""What each effective-dated measure means: pure value types and rules, no I/O."""
from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.policy.errors import PolicyError

UNITS = ("days", "working_days", "months")
UNIT_ZH = {"days": "天", "working_days": "个工作日", "months": "个月"}


def add_months(day: date, months: int) -> date:
    """Same day `months` later, clipped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month,
                       day=min(day.day, calendar.monthrange(year, month)[1]))


def first_of_next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


@dataclass(frozen=True)
class Limit:
    """A time limit such as 7 working days or 1 month, counted from a start day."""

    count: int
    unit: str  # days, working_days, months

    @classmethod
    def parse(cls, raw: Any, where: str) -> Limit:
        if not isinstance(raw, Mapping) or set(raw) != {"count", "unit"}:
            raise PolicyError(f"{where}: a limit is {{ count = N, unit = \"working_days\" }}")
        count, unit = raw["count"], raw["unit"]
        if not isinstance(count, int) or count < 0 or unit not in UNITS:
            raise PolicyError(f"{where}: count must be a whole number >= 0 and unit one of "
                              f"{', '.join(UNITS)}")
        return cls(count, unit)

    def due(self, start: date,
            add_working_days: Callable[[date, int], date] | None = None) -> date:
        """The last day the limit allows. Working days need the caller's calendar (it may
        lack a year's schedule; that is the calendar's business, not the policy's)."""
        if self.unit == "months":
            return add_months(start, self.count)
        if self.unit == "working_days":
            if add_working_days is None:
                raise PolicyError("a working-day limit needs a working calendar")
            return add_working_days(start, self.count)
        return date.fromordinal(start.toordinal() + self.count)

    def zh(self) -> str:
        return f"{self.count}{UNIT_ZH[self.unit]}"

    def __str__(self) -> str:
        return f"{self.count} {self.unit.replace('_', ' ')}"


@dataclass(frozen=True)
class AccidentFilingLimits:
    """Inpatient accident injury without a liable third party: how long after admission the
    filing may come, in the city and outside it [002 第十三条 for the emergency values]."""

    in_city: Limit
    out_of_city: Limit

    def limit(self, in_city: bool) -> Limit:
        return self.in_city if in_city else self.out_of_city


@dataclass(frozen=True)
class ChronicChangeRule:
    """Changing the designated chronic-disease institution [002 第六条]. Normally at once
    unless the person had a chronic-disease outpatient reimbursement this month, then from
    the 1st of next month. During an emergency nearby pharmacies may be chosen as well, and
    those temporary choices revert to the former institution when the measure ends."""

    deferred_if_reimbursed_this_month: bool = True
    institution_kinds: tuple[str, ...] = ("hospital",)
    temporary_until: date | None = None  # set by an emergency: switches revert after it

    def effective_on(self, requested_on: date, reimbursed_this_month: bool) -> date:
        if reimbursed_this_month and self.deferred_if_reimbursed_this_month:
            return first_of_next_month(requested_on)
        return requested_on

    def allows(self, institution_kind: str) -> bool:
        return institution_kind in self.institution_kinds


@dataclass(frozen=True)
class RecognitionPostponement:
    """Chronic-disease recognition postponed, except the urgent kinds that are recognised at
    once at the institution's insurance window [002 第八条]. Urgent kinds are code prefixes:
    `malignant_tumour` covers malignant_tumour_outpatient and ..._radiochemotherapy."""

    months: int
    urgent: tuple[str, ...]

    def is_urgent(self, disease: str) -> bool:
        return any(disease == u or disease.startswith(u + "_") for u in self.urgent)

    def recognition_from(self, applied_on: date, disease: str) -> date:
        """The day a recognition applied for on `applied_on` may be decided."""
        return applied_on if self.is_urgent(disease) else add_months(applied_on, self.months)


@dataclass(frozen=True)
class PrescriptionLimits:
    """Longest outpatient prescription by disease, in months [000 十三; 002 第五条]."""

    default_months: int
    by_disease: Mapping[str, int]

    def months_for(self, disease: str | None) -> int:
        if disease is None:
            return self.default_months
        return self.by_disease.get(disease, self.default_months)


@dataclass(frozen=True)
class TransferDeadlines:
    """Statutory transfer deadlines in working days [003], with the per-office legs
    (national practice, not in the notice)."""

    cross_province: int
    intra_province: int
    out_leg_cross_province: int
    in_leg_cross_province: int
    out_leg_intra_province: int
    in_leg_intra_province: int

    def total(self, same_province: bool) -> int:
        return self.intra_province if same_province else self.cross_province

    def legs(self, same_province: bool) -> tuple[int, int]:
        """(transfer-out office, transfer-in office) working days."""
        if same_province:
            return self.out_leg_intra_province, self.in_leg_intra_province
        return self.out_leg_cross_province, self.in_leg_cross_province


def claim_deadline(expense_date: date, validity_months: int,
                   extension_months: int = 0) -> date:
    """Sporadic claims within `validity_months` of the expense [004], plus an emergency
    extension in force when that time runs out [002 第二条]."""
    return add_months(add_months(expense_date, validity_months), extension_months)
