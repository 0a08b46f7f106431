"""Statutory transfer clocks in Chinese working days (SPEC transfer 4, notice 003)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import date

from shared.identity import same_province
from shared.workdays import DueDate, WorkingCalendar


@dataclass(frozen=True)
class Clock:
    """Working days for the whole transfer and for each office's leg of it."""

    total: int
    out_leg: int
    in_leg: int
    source: str = "settings"  # where the figures come from, for the transfer's history


@dataclass(frozen=True)
class DeadlineRules:
    cross_province: Clock = Clock(total=15, out_leg=10, in_leg=5)
    intra_province: Clock = Clock(total=9, out_leg=6, in_leg=3)

    def clock_for(self, from_region: str, to_region: str) -> Clock:
        """9 working days within a province (same first two digits), 15 across provinces."""
        if same_province(from_region, to_region):
            return self.intra_province
        return self.cross_province


# Due dates already counted, per calendar: a calendar never changes once read (a new schedule
# file gives a new one), and a day's transfers all count the same few budgets from the same
# start, which walking the days again for each one made the bulk of a transfer's intake.
_counted: weakref.WeakKeyDictionary[WorkingCalendar, dict[tuple[date, int], DueDate]] = (
    weakref.WeakKeyDictionary())
_COUNTED_MAX = 4096


def due_after(calendar: WorkingCalendar, start: date, working_days: int) -> DueDate:
    """Never fails for a year without a holiday schedule: the date is then provisional
    (weekends only taken off there) and recounted when the schedule arrives."""
    counted = _counted.setdefault(calendar, {})
    found = counted.get((start, working_days))
    if found is None:
        found = calendar.due_date(start, working_days)
        if len(counted) >= _COUNTED_MAX:
            counted.clear()
        counted[(start, working_days)] = found
    return found


def working_days_left(calendar: WorkingCalendar, today: date, due: date) -> int:
    """Working days from today up to the due date; negative once overdue (provisional past
    the holiday data)."""
    return calendar.working_days_between(today, due, provisional=True)
