"""Policy-driven amounts: deductible, ratio, cap, versions and effective-dated overrides."""
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from services.reimbursement.domain.policy import (
    ClaimFacts,
    PolicyBook,
    PolicyError,
    calculate,
    claim_deadline,
    load_policy,
)

POLICIES = Path(__file__).resolve().parents[2] / "services" / "reimbursement" / "policies"
BOOK = PolicyBook.load(POLICIES, "210200")


def facts(**kw: object) -> ClaimFacts:
    base: dict[str, object] = dict(insurance_type="employee", hospital_level=3,
                                   location="in_region", expense_date=date(2026, 6, 1),
                                   eligible_fen=1_000_000)
    return ClaimFacts(**(base | kw))  # type: ignore[arg-type]


def test_deductible_ratio_and_working_recorded() -> None:
    calc = calculate(BOOK.in_force(date(2026, 6, 1)), facts())
    # (10,000.00 - 800.00) x 0.85 = 7,820.00
    assert (calc.deductible_fen, calc.ratio, calc.payable_fen) == (80_000, Decimal("0.85"),
                                                                   782_000)
    assert calc.policy_version == "2026.1" and calc.overrides == []
    assert "9200.00 x ratio 0.85 = 7820.00" in calc.working[2]


def test_deductible_already_met_and_cap_reached() -> None:
    policy = BOOK.in_force(date(2026, 6, 1))
    met = calculate(policy, facts(deductible_used_fen=80_000))
    assert met.deductible_fen == 0 and met.payable_fen == 850_000
    capped = calculate(policy, facts(paid_this_year_fen=39_800_000))
    assert capped.payable_fen == 200_000  # only 2,000.00 of the 400,000.00 cap is left


def test_remote_unfiled_gets_a_reduced_ratio_and_flexible_counts_as_employee() -> None:
    policy = BOOK.in_force(date(2026, 6, 1))
    unfiled = calculate(policy, facts(location="remote_unfiled", insurance_type="flexible"))
    assert unfiled.ratio == Decimal("0.75")


def test_rounding_to_fen_half_up() -> None:
    calc = calculate(BOOK.in_force(date(2026, 6, 1)),
                     facts(insurance_type="resident", hospital_level=2, eligible_fen=50_001))
    # deductible 500.00 leaves 0.01 x 0.70 = 0.007 -> 0.01
    assert calc.payable_fen == 1


def test_emergency_override_lifts_the_remote_cut_only_while_in_force() -> None:
    policy = BOOK.in_force(date(2026, 12, 10))
    during = calculate(policy, facts(location="remote_unfiled", expense_date=date(2026, 12, 10)))
    assert during.ratio == Decimal("0.85")
    assert during.overrides == ["2026-emergency-remote-same-ratio"]
    before = calculate(policy, facts(location="remote_unfiled", expense_date=date(2026, 11, 30)))
    assert before.ratio == Decimal("0.75") and before.overrides == []


def test_epidemic_patients_fully_covered_during_the_declared_epidemic() -> None:
    policy = BOOK.in_force(date(2026, 12, 10))
    calc = calculate(policy, facts(epidemic_patient=True, expense_date=date(2026, 12, 10)))
    assert calc.payable_fen == calc.eligible_fen
    assert calc.overrides == ["2026-epidemic-full-coverage"]


def test_claim_deadline_one_year_extended_by_the_emergency() -> None:
    assert claim_deadline(BOOK, date(2026, 3, 15)) == (date(2027, 3, 15), [])
    # The year runs out on 2027-01-10, inside the extension window: +2 months.
    assert claim_deadline(BOOK, date(2026, 1, 10)) == (
        date(2027, 3, 10), ["2026-emergency-claim-extension"])


def test_versions_and_bad_files(tmp_path: Path) -> None:
    newer = (POLICIES / "210200-2026.1.toml").read_text(encoding="utf-8").replace(
        'version = "2026.1"', 'version = "2026.2"').replace(
        'effective_from = "2026-01-01"', 'effective_from = "2026-07-01"')
    (tmp_path / "210200-2026.1.toml").write_text(
        (POLICIES / "210200-2026.1.toml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "210200-2026.2.toml").write_text(newer, encoding="utf-8")
    book = PolicyBook.load(tmp_path, "210200")
    assert book.in_force(date(2026, 6, 30)).version == "2026.1"
    assert book.in_force(date(2026, 7, 1)).version == "2026.2"
    with pytest.raises(PolicyError, match="no policy in force"):
        book.in_force(date(2025, 12, 31))
    (tmp_path / "bad.toml").write_text('region = "1"\nversion = "x"\neffective_from = "2026-01-01"'
                                       '\n[[rule]]\ninsurance_type = "employee"\n'
                                       'hospital_level = 1\nlocation = "moon"\n'
                                       'deductible_yuan = "1"\nratio = "2"\n'
                                       'annual_cap_yuan = "1"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match="bad rule"):
        load_policy(tmp_path / "bad.toml")


def test_epidemic_coverage_only_while_declared() -> None:
    from services.reimbursement.domain.policy import epidemic_coverage

    declared = epidemic_coverage(BOOK, date(2026, 12, 3))
    assert declared is not None and declared.id == "2026-epidemic-full-coverage"
    assert epidemic_coverage(BOOK, date(2026, 11, 3)) is None
    assert epidemic_coverage(BOOK, date(2025, 12, 3)) is None  # before any policy
