"""`medins calendar check`: years covered, last day with data, days left, exit codes."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared import clock
from shared.cli import cli

TEST_CALENDAR = Path(__file__).parents[1] / "calendar"


@pytest.fixture(autouse=True)
def on_24_november(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    monkeypatch.setattr(clock, "china_today", lambda: date(2026, 11, 24))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["calendar", "check", *args])
    return result.exit_code, result.output


def test_under_the_threshold_it_says_what_to_add_and_fails() -> None:
    code, out = run()
    assert code == 1, out
    assert "last day with a holiday schedule: 2026-12-31" in out
    assert "days left from 2026-11-24: 37" in out and "2027.toml" in out
    assert run("--min-days", "30")[0] == 0


def test_a_schedule_file_extends_the_data() -> None:
    code, out = run("--dir", str(TEST_CALENDAR), "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert (shown["last_day"], shown["days_left"], shown["years"][-1]) == ("2027-12-31", 402, 2027)


def test_an_invalid_file_is_named_with_its_rule(tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text('year = 2027\nholidays = ["2027-01-02"]\n')
    code, out = run("--dir", str(tmp_path))
    assert code == 2 and "2027.toml" in out and "weekend" in out
