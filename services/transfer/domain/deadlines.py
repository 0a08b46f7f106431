"""Statutory transfer clocks in Chinese working days (SPEC transfer 4, notice 003)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from shared.identity import same_province
from shared.workdays import CalendarDataMissing, WorkingCalendar


@dataclass(frozen=True)
class Clock:
    """Working days for the whole transfer and for each office's leg of it."""

    total: int
    out_leg: int
    in_leg: int


@dataclass(frozen=True)
class DeadlineRules:
    cross_province: Clock = Clock(total=15, out_leg=10, in_leg=5)
    intra_province: Clock = Clock(total=9, out_leg=6, in_leg=3)

    def clock_for(self, from_region: str, to_region: str) -> Clock:
        """9 working days within a province (same first two digits), 15 across provinces."""
        if same_province(from_region, to_region):
            return self.intra_province
        return self.cross_province


def due_after(calendar: WorkingCalendar, start: date, working_days: int) -> date:
    """Raises CalendarDataMissing when the count runs into a year without a schedule: the
    caller learns it the day the transfer starts, not the day the timer looks."""
    return calendar.add_working_days(start, working_days)


def extended(calendar: WorkingCalendar, due: date, paused_on: date, resumed_on: date) -> date:
    """A clock stopped while waiting on the person resumes with the working days it lost."""
    lost = max(0, calendar.working_days_between(paused_on, resumed_on))
    return calendar.add_working_days(due, lost)


def working_days_left(calendar: WorkingCalendar, today: date, due: date) -> int:
    """Working days from today up to the due date; negative once overdue."""
    return calendar.working_days_between(today, due)


def calendar_gap(calendar: WorkingCalendar, today: date, rules: DeadlineRules,
                 lookahead_days: int = 30) -> CalendarDataMissing | None:
    """The missing schedule that would stop a transfer starting within `lookahead_days`.

    Checked when the worker starts, so operators hear of it before a transfer needs it."""
    longest = max(rules.cross_province.total, rules.intra_province.total)
    try:
        calendar.add_working_days(today + timedelta(days=lookahead_days), longest)
    except CalendarDataMissing as missing:
        return missing
    return None
