"""Chinese working days: statutory holidays off, make-up working days on, no guessing."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import chinese_calendar

BUNDLED_SCHEDULES = Path(__file__).parent / "calendar"


class CalendarDataMissing(LookupError):
    """No official holiday schedule is known for a year, so working days cannot be counted."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no holiday schedule for {year}: chinesecalendar has none and no schedule file "
            f"{year}.toml was found; add the State Council's {year} schedule (see README)"
        )
        self.year = year


@dataclass(frozen=True)
class YearSchedule:
    """An official schedule file: days off on weekdays and make-up working days on weekends."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]

    @classmethod
    def load(cls, path: Path) -> YearSchedule:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        year = int(data["year"])
        holidays = frozenset(date.fromisoformat(d) for d in data.get("holidays", []))
        workdays = frozenset(date.fromisoformat(d) for d in data.get("workdays", []))
        for d in holidays | workdays:
            if d.year != year:
                raise ValueError(f"{path}: {d} is outside year {year}")
        return cls(year, holidays, workdays)

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays


class WorkingCalendar:
    """Counts working days from chinesecalendar, or from schedule files for later years."""

    def __init__(self, schedule_dirs: list[Path] | None = None) -> None:
        dirs = list(schedule_dirs or [])
        env_dir = os.environ.get("MEDINS_CALENDAR_DIR")
        if env_dir:
            dirs.append(Path(env_dir))
        dirs.append(BUNDLED_SCHEDULES)
        self._schedules: dict[int, YearSchedule] = {}
        for folder in reversed(dirs):  # earlier folders win
            for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
                schedule = YearSchedule.load(path)
                self._schedules[schedule.year] = schedule

    def is_workday(self, day: date) -> bool:
        schedule = self._schedules.get(day.year)
        if schedule is not None:
            return schedule.is_workday(day)
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            raise CalendarDataMissing(day.year) from None

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start` (start itself not counted)."""
        if days < 0:
            raise ValueError("days must not be negative")
        current = start
        remaining = days
        while remaining:
            current += timedelta(days=1)
            if self.is_workday(current):
                remaining -= 1
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (negative if end < start)."""
        sign, lo, hi = (1, start, end) if end >= start else (-1, end, start)
        count, day = 0, lo
        while day < hi:
            day += timedelta(days=1)
            count += self.is_workday(day)
        return sign * count


@lru_cache(maxsize=1)
def default_calendar() -> WorkingCalendar:
    return WorkingCalendar()


def add_working_days(start: date, days: int) -> date:
    return default_calendar().add_working_days(start, days)
