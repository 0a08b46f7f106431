"""Working-day arithmetic over statutory holidays and make-up days."""
from datetime import date
from pathlib import Path

import pytest

from shared.workdays import CalendarDataMissing, WorkingCalendar, add_working_days


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
