"""Working-day arithmetic over statutory holidays and make-up days; provisional beyond them."""
import re
from datetime import date
from pathlib import Path

import pytest

from shared import workdays
from shared.workdays import (
    CalendarDataMissing,
    DueDate,
    ScheduleFileError,
    WorkingCalendar,
    YearSchedule,
    add_working_days,
)

TEST_CALENDAR = Path(__file__).parents[1] / "calendar"


def test_fifteen_working_days_across_national_day_2026() -> None:
    assert add_working_days(date(2026, 9, 28), 15) == date(2026, 10, 23)


def test_make_up_saturday_counts_and_holiday_does_not() -> None:
    cal = WorkingCalendar()
    assert cal.is_workday(date(2026, 10, 10))  # 调休 Saturday
    assert not cal.is_workday(date(2026, 10, 1))
    assert cal.working_days_between(date(2026, 9, 28), date(2026, 10, 23)) == 15
    assert cal.working_days_between(date(2026, 10, 23), date(2026, 9, 28)) == -15


def test_year_without_data_fails_loudly() -> None:
    with pytest.raises(CalendarDataMissing, match="2027"):
        add_working_days(date(2026, 12, 20), 15)


def test_official_schedule_file_supplies_a_new_year(tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text(
        'year = 2027\nholidays = ["2027-01-01"]\nworkdays = ["2027-01-09"]\n', encoding="utf-8")
    cal = WorkingCalendar([tmp_path])
    assert not cal.is_workday(date(2027, 1, 1))  # Friday, New Year
    assert cal.is_workday(date(2027, 1, 9))  # a make-up Saturday in the file
    # 2026-12-31 (Thu) + 3: skip 1-1 holiday and the weekend 1-2/1-3 -> 01-04, 01-05, 01-06
    assert cal.add_working_days(date(2026, 12, 31), 3) == date(2027, 1, 6)


def test_schedule_file_rejects_dates_outside_its_year(tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text('year = 2027\nholidays = ["2026-01-01"]\n')
    with pytest.raises(ValueError, match="outside year 2027"):
        WorkingCalendar([tmp_path])


def test_due_date_past_the_data_is_provisional_never_an_error(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    cal = WorkingCalendar([tmp_path])
    assert cal.due_date(date(2026, 9, 28), 15) == DueDate(date(2026, 10, 23))
    # 2027 without a schedule: weekends only are taken off there.
    assert cal.due_date(date(2026, 12, 20), 15) == DueDate(date(2027, 1, 8), True, (2027,))
    assert cal.due_date(date(2031, 3, 3), 15) == DueDate(date(2031, 3, 24), True, (2031,))
    with pytest.raises(CalendarDataMissing):  # the strict count stays available
        cal.add_working_days(date(2026, 12, 20), 15)
    assert cal.working_days_between(date(2027, 1, 1), date(2027, 1, 8), provisional=True) == 5


def test_coverage_counts_the_days_of_data_left(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    bare = WorkingCalendar([tmp_path]).coverage(date(2026, 11, 24))
    assert (bare.last_day, bare.days_left, bare.years[-1]) == (date(2026, 12, 31), 37, 2026)
    with_test_year = WorkingCalendar([TEST_CALENDAR]).coverage(date(2026, 11, 24))
    assert (with_test_year.last_day, with_test_year.days_left) == (date(2027, 12, 31), 402)
    # A file for a later year with a gap before it does not extend the unbroken data.
    (tmp_path / "2029.toml").write_text("year = 2029\n", encoding="utf-8")
    assert WorkingCalendar([tmp_path]).coverage(date(2026, 11, 24)).last_day == date(2026, 12, 31)


@pytest.mark.parametrize(("name", "text", "rule"), [
    ("2027", 'year = 2028\n', "name the file 2028.toml"),
    ("2027", 'year = 2027\nholidays = ["2027-01-02"]\n', "fall on a weekend"),
    ("2027", 'year = 2027\nworkdays = ["2027-01-04"]\n', "are weekdays"),
    ("2027", 'year = 2027\nholiday = ["2027-01-01"]\n', "unknown keys ['holiday']"),
    ("2027", 'year = 2027\nholidays = ["2027-13-01"]\n', "is not a date"),
    ("2027", 'year = "2027"\n', "must be an integer"),
])
def test_schedule_files_are_validated(tmp_path: Path, name: str, text: str, rule: str) -> None:
    (tmp_path / f"{name}.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleFileError, match=re.escape(rule)):
        WorkingCalendar([tmp_path])


def test_a_day_listed_both_ways_is_refused() -> None:
    # A weekday cannot be a make-up day, so "both" is caught as such; the rule also stands alone.
    with pytest.raises(ScheduleFileError):
        YearSchedule.parse('year = 2027\nholidays = ["2027-01-01"]\nworkdays = ["2027-01-01"]\n')


def test_the_test_calendar_is_labelled_and_valid() -> None:
    text = (TEST_CALENDAR / "2027.toml").read_text(encoding="utf-8")
    assert text.startswith("# TEST DATA ONLY")
    assert YearSchedule.parse(text).year == 2027


def test_a_schedule_added_to_the_folder_is_picked_up(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDINS_CALENDAR_DIR", str(tmp_path))
    monkeypatch.setattr(workdays, "_default", None)
    assert workdays.due_date(date(2026, 12, 20), 15).provisional
    assert not workdays.reload_calendar()  # nothing changed
    (tmp_path / "2027.toml").write_text(
        (TEST_CALENDAR / "2027.toml").read_text(encoding="utf-8"), encoding="utf-8")
    assert workdays.reload_calendar()
    assert workdays.due_date(date(2026, 12, 20), 15) == DueDate(date(2027, 1, 8))
    assert workdays.refresh_days_left(date(2026, 12, 20)).days_left == 376
    monkeypatch.setattr(workdays, "_default", None)
