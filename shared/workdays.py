"""Chinese working days: statutory holidays off, make-up days on; provisional beyond the data."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
from chinese_calendar import constants as _library
from prometheus_client import Gauge

BUNDLED_SCHEDULES = Path(__file__).parent / "calendar"
LIBRARY_YEARS = range(min(_library.holidays).year, max(_library.holidays).year + 1)
SCHEDULE_KEYS = frozenset({"year", "holidays", "workdays", "notice"})
# The State Council publishes next year's schedule between late October and December: warn
# from two months before the data ends (`medins calendar check`, the alert, worker start).
WARN_DAYS = 60


class CalendarDataMissing(LookupError):
    """No official holiday schedule is known for a year, so working days cannot be counted."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no holiday schedule for {year}: chinesecalendar has none and no schedule file "
            f"{year}.toml was found; add the State Council's {year} schedule (see README)"
        )
        self.year = year


class ScheduleFileError(ValueError):
    """A schedule file that cannot be trusted; the message names the file and the rule."""


@dataclass(frozen=True)
class YearSchedule:
    """An official schedule file: days off on weekdays and make-up working days on weekends."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]

    @classmethod
    def parse(cls, text: str, source: str = "<schedule>") -> YearSchedule:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScheduleFileError(f"{source}: not TOML ({exc})") from None
        unknown = sorted(set(data) - SCHEDULE_KEYS)
        if unknown:
            # A misspelt key ("holiday") would silently drop the year's holidays.
            raise ScheduleFileError(f"{source}: unknown keys {unknown}; allowed "
                                    f"{sorted(SCHEDULE_KEYS)}")
        year = data.get("year")
        if not isinstance(year, int):
            raise ScheduleFileError(f"{source}: `year` must be an integer")

        def days(key: str) -> frozenset[date]:
            raw = data.get(key, [])
            if not isinstance(raw, list):
                raise ScheduleFileError(f"{source}: `{key}` must be a list of dates")
            out = set()
            for item in raw:
                try:
                    day = item if isinstance(item, date) else date.fromisoformat(str(item))
                except ValueError:
                    raise ScheduleFileError(f"{source}: {key}: {item!r} is not a date") from None
                if day.year != year:
                    raise ScheduleFileError(f"{source}: {key}: {day} is outside year {year}")
                out.add(day)
            return frozenset(out)

        holidays, workdays = days("holidays"), days("workdays")
        weekend_holidays = sorted(d for d in holidays if d.weekday() >= 5)
        if weekend_holidays:
            raise ScheduleFileError(f"{source}: holidays {weekend_holidays} fall on a weekend; "
                                    "list only weekdays that are days off")
        weekday_workdays = sorted(d for d in workdays if d.weekday() < 5)
        if weekday_workdays:
            raise ScheduleFileError(f"{source}: workdays {weekday_workdays} are weekdays; list "
                                    "only weekend days that are make-up working days")
        both = sorted(holidays & workdays)
        if both:
            raise ScheduleFileError(f"{source}: {both} listed as holiday and as workday")
        return cls(year, holidays, workdays)

    @classmethod
    def load(cls, path: Path) -> YearSchedule:
        schedule = cls.parse(path.read_text(encoding="utf-8"), str(path))
        if path.stem != str(schedule.year):
            raise ScheduleFileError(f"{path}: declares year {schedule.year}; name the file "
                                    f"{schedule.year}.toml")
        return schedule

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays


@dataclass(frozen=True)
class DueDate:
    """A date `n` working days on. Provisional when the count crossed a year without a
    schedule (weekends only were taken off there): recompute it when the year is added."""

    on: date
    provisional: bool = False
    missing_years: tuple[int, ...] = ()


@dataclass(frozen=True)
class Coverage:
    """What the schedule data covers, for `medins calendar check` and the gauge."""

    years: tuple[int, ...]
    last_day: date  # last day of the unbroken run of years from the library's first
    days_left: int  # from `today` to last_day


def _folders(schedule_dirs: list[Path] | None) -> list[Path]:
    dirs = list(schedule_dirs or [])
    env_dir = os.environ.get("MEDINS_CALENDAR_DIR")
    if env_dir:
        dirs.extend(Path(p) for p in env_dir.split(",") if p.strip())
    dirs.append(BUNDLED_SCHEDULES)
    return dirs


def _signature(dirs: list[Path]) -> tuple[tuple[str, float], ...]:
    found: list[tuple[str, float]] = []
    for folder in dirs:
        if folder.is_dir():
            found.extend((str(p), p.stat().st_mtime) for p in sorted(folder.glob("*.toml")))
    return tuple(found)


class WorkingCalendar:
    """Counts working days from chinesecalendar, or from schedule files for later years."""

    def __init__(self, schedule_dirs: list[Path] | None = None) -> None:
        self.folders = _folders(schedule_dirs)
        self.signature = _signature(self.folders)
        self._schedules: dict[int, YearSchedule] = {}
        for folder in reversed(self.folders):  # earlier folders win
            for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
                schedule = YearSchedule.load(path)
                self._schedules[schedule.year] = schedule

    def covers(self, year: int) -> bool:
        return year in self._schedules or year in LIBRARY_YEARS

    def coverage(self, today: date) -> Coverage:
        years = sorted(set(LIBRARY_YEARS) | set(self._schedules))
        last = LIBRARY_YEARS.start
        while self.covers(last + 1):
            last += 1
        last_day = date(last, 12, 31)
        return Coverage(tuple(years), last_day, (last_day - today).days)

    def is_workday(self, day: date, *, provisional: bool = False) -> bool:
        """Strict by default; `provisional=True` takes only weekends off in a year without data."""
        schedule = self._schedules.get(day.year)
        if schedule is not None:
            return schedule.is_workday(day)
        if day.year in LIBRARY_YEARS:
            return bool(chinese_calendar.is_workday(day))
        if provisional:
            return day.weekday() < 5
        raise CalendarDataMissing(day.year)

    def add_working_days(self, start: date, days: int, *, provisional: bool = False) -> date:
        """The date `days` working days after `start` (start itself not counted)."""
        if days < 0:
            raise ValueError("days must not be negative")
        current = start
        remaining = days
        while remaining:
            current += timedelta(days=1)
            if self.is_workday(current, provisional=provisional):
                remaining -= 1
        return current

    def due_date(self, start: date, days: int) -> DueDate:
        """Never raises for missing data: a date beyond it is marked provisional."""
        on = self.add_working_days(start, days, provisional=True)
        missing = self.missing_years(start, on)
        return DueDate(on, bool(missing), missing)

    def missing_years(self, start: date, end: date) -> tuple[int, ...]:
        lo, hi = min(start, end), max(start, end)
        return tuple(y for y in range(lo.year, hi.year + 1) if not self.covers(y))

    def working_days_between(self, start: date, end: date, *,
                             provisional: bool = False) -> int:
        """Working days after `start` up to and including `end` (negative if end < start)."""
        sign, lo, hi = (1, start, end) if end >= start else (-1, end, start)
        count, day = 0, lo
        while day < hi:
            day += timedelta(days=1)
            count += self.is_workday(day, provisional=provisional)
        return sign * count


_default: WorkingCalendar | None = None


def default_calendar() -> WorkingCalendar:
    """The platform's calendar (bundled files, MEDINS_CALENDAR_DIR); see `reload_calendar`."""
    global _default
    if _default is None:
        _default = WorkingCalendar()
    return _default


def reload_calendar() -> bool:
    """Re-read the schedule folders if a file was added or changed; True when it changed.

    Called by timers, so a year's schedule dropped in the folder takes effect without a
    restart. A broken new file keeps the previous calendar (and raises for the caller to log).
    """
    global _default
    current = default_calendar()
    if _signature(current.folders) == current.signature:
        return False
    _default = WorkingCalendar()
    return True


_days_left_gauge: Gauge | None = None


def refresh_days_left(today: date) -> Coverage:
    """Reload the schedule folders if they changed and set `medins_calendar_days_left`.

    The gauge is registered on the first call, so only a worker that keeps it up to date (the
    transfer worker's timer; enrollment may call this from its own) exports it: a worker that
    merely imports this module never shows a 0 that would fire the alert."""
    global _days_left_gauge
    reload_calendar()
    coverage = default_calendar().coverage(today)
    if _days_left_gauge is None:
        _days_left_gauge = Gauge(
            "medins_calendar_days_left",
            "Days from today to the last day with a holiday schedule (chinesecalendar or a "
            "schedule file); working-day counts beyond it are provisional")
    _days_left_gauge.set(coverage.days_left)
    return coverage


def add_working_days(start: date, days: int) -> date:
    return default_calendar().add_working_days(start, days)


def due_date(start: date, days: int) -> DueDate:
    return default_calendar().due_date(start, days)
