"""`medins policy check`: gaps per region in a window, exit code, days left."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import cli
from shared.policy import SHIPPED_DIR


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["policy", "check", *args])
    return result.exit_code, result.output


def test_a_window_inside_the_shipped_versions_passes() -> None:
    code, out = run("--regions", "210200,370100", "--from", "2026-01-01", "--to", "2026-12-31")
    assert code == 0, out
    assert "210200: versions 2026.1 (2026-01-01..2026-12-31)" in out


def test_gaps_are_listed_per_region_and_fail_the_check() -> None:
    code, out = run("--regions", "210200", "--from", "2025-12-01", "--to", "2027-01-31",
                    "--json")
    assert code == 1
    found = json.loads(out)["regions"][0]
    assert found["gaps"] == [["2025-12-01", "2025-12-31"], ["2027-01-01", "2027-01-31"]]
    assert found["temporary_measures_today"] == []  # the shipped files carry none


def test_an_added_version_closes_the_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (SHIPPED_DIR / "210200-2026.1.toml").read_text(encoding="utf-8")
    (tmp_path / "210200-2027.1.toml").write_text(
        text.replace('version = "2026.1"', 'version = "2027.1"').replace(
            "2026-01-01", "2027-01-01").replace("2026-12-31", "2027-12-31").replace(
            "2026.1-", "2027.1-"), encoding="utf-8")
    monkeypatch.setenv("MEDINS_POLICY_DIRS", str(tmp_path))
    code, out = run("--regions", "210200", "--from", "2026-06-01", "--to", "2027-06-01")
    assert code == 0, out
    assert "2027.1 (2027-01-01..2027-12-31)" in out


def test_a_wrong_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "210200-bad.toml").write_text('region = "210200"\nversion = "x"\n'
                                              'effective_from = "2027-01-01"\n',
                                              encoding="utf-8")
    monkeypatch.setenv("MEDINS_POLICY_DIRS", str(tmp_path))
    code, out = run("--regions", "210200")
    assert code == 1 and "210200-bad.toml" in out and "effective_to is required" in out


def test_the_examples_are_enabled_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDINS_POLICY_DIRS", "examples")
    code, out = run("--regions", "150200", "--from", "2026-01-01", "--to", "2026-12-31",
                    "--json")
    assert code == 0, out
    assert json.loads(out)["folders"][1].endswith("shared/policies/examples")



def test_reference_data_is_checked_with_the_book(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run("--regions", "210200", "--from", "2026-01-01", "--to", "2026-12-31")
    assert code == 0 and "institution(s) named; postal address given" in out, out
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "210200.toml").write_text(
        'region = "210200"\n[agency]\nname = "x"\npostcode = "1160"\npostal_address = "y"\n'
        'recipient = "z"\n', encoding="utf-8")
    monkeypatch.setenv("MEDINS_POLICY_DIRS", str(tmp_path))
    code, out = run("--regions", "210200", "--from", "2026-01-01", "--to", "2026-12-31",
                    "--json")
    assert code == 1
    assert "postcode must be six digits" in json.loads(out)["reference_error"]
