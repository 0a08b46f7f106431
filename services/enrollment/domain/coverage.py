"""Coverage periods: the days a person was insured here, and the status they imply on a date."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from shared.contracts.enrollment import CoveragePeriod


@dataclass(frozen=True)
class Period:
    """Insured from `start` to `end` inclusive (`end` None: open, as while employed)."""

    insurance_type: str
    start: date
    end: date | None
    source: str  # tax_payment, employer, transfer_in
    reference: str

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)

    def to_contract(self) -> CoveragePeriod:
        return CoveragePeriod(insurance_type=self.insurance_type,  # type: ignore[arg-type]
                              start=self.start, end=self.end,
                              source=self.source, reference=self.reference)  # type: ignore[arg-type]


def paid_period(insurance_type: str, period_start: date, period_end: date,
                reference: str) -> Period:
    """What a confirmed contribution buys: resident insurance is annual, so it covers to the
    end of the calendar year it was paid for; a flexible worker exactly the paid period."""
    end = date(period_end.year, 12, 31) if insurance_type == "resident" else period_end
    return Period(insurance_type, period_start, end, "tax_payment", reference)


def covering(periods: list[Period], day: date) -> Period | None:
    """The period in force on `day`, the latest-starting one if several overlap."""
    found = [p for p in periods if p.covers(day)]
    return max(found, key=lambda p: p.start) if found else None


def current(periods: list[Period], today: date, grace_days: int) -> Period | None:
    """The period that keeps the person active today: one covering today, or one that ended
    within the grace period (a late payment for the period just ended)."""
    found = covering(periods, today)
    if found is not None:
        return found
    recent = [p for p in periods if p.end is not None and p.start <= today
              and today - timedelta(days=grace_days) <= p.end < today]
    return max(recent, key=lambda p: p.end or p.start) if recent else None


def next_start(periods: list[Period], after: date) -> date | None:
    """The first day after `after` on which a period begins (a payment for a future period)."""
    starts = [p.start for p in periods if p.start > after]
    return min(starts) if starts else None


def _blocks(periods: list[Period]) -> list[tuple[date, date | None]]:
    """Periods merged into unbroken stretches of coverage (an open end stays open)."""
    blocks: list[tuple[date, date | None]] = []
    for p in sorted(periods, key=lambda p: p.start):
        if blocks:
            start, end = blocks[-1]
            if end is None or p.start <= end + timedelta(days=1):
                blocks[-1] = (start, None if end is None or p.end is None else max(end, p.end))
                continue
        blocks.append((p.start, p.end))
    return blocks


def lapsed(periods: list[Period], today: date, grace_days: int) -> date | None:
    """The day an active person stops being insured because nothing was paid for the next
    period: the day after the last covered day, once `grace_days` have passed since then.
    None while covered, within the grace period, or before any coverage began."""
    if covering(periods, today) is not None:
        return None
    before = [b for b in _blocks(periods) if b[0] <= today]
    if not before or before[-1][1] is None:
        return None
    ended = before[-1][1] + timedelta(days=1)
    return ended if today >= ended + timedelta(days=grace_days) else None


def close_open(periods: list[Period], last_day: date, source: str | None = None) -> list[Period]:
    """End open periods (of `source`, or every source) on `last_day`."""
    return [replace(p, end=last_day) if p.end is None and (source is None or p.source == source)
            and p.start <= last_day else p for p in periods]


def end_all(periods: list[Period], last_day: date) -> list[Period]:
    """Coverage ends for good on `last_day` (death, or moving to another region): periods
    running past it are cut there, periods that had not begun are dropped."""
    kept = []
    for p in periods:
        if p.start > last_day:
            continue
        kept.append(replace(p, end=last_day) if p.end is None or p.end > last_day else p)
    return kept


def employment_changed(periods: list[Period], action: str, effective_on: date,
                       employer_code: str, roster_id: str) -> list[Period]:
    """An employer's roster: an increase opens an employee period (closing one with another
    employer the day before), a decrease ends it the day before it takes effect."""
    if action == "increase":
        closed = close_open(periods, effective_on - timedelta(days=1), "employer")
        return [*closed, Period("employee", effective_on, None, "employer",
                                f"{employer_code}:{roster_id}")]
    if action == "decrease":
        return close_open(periods, effective_on - timedelta(days=1), "employer")
    return periods  # retirement keeps the person insured through the employer
