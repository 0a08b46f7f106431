"""Policy-driven amounts: deductible, ratio, cap, versions and the measures in force."""
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from shared.policy import (
    EXAMPLES_DIR,
    SHIPPED_DIR,
    ClaimFacts,
    NoPolicyInForce,
    PolicyBook,
    calculate,
)

BOOK = PolicyBook.load("210200")
EXERCISE = PolicyBook.load("210200", [SHIPPED_DIR, EXAMPLES_DIR])


def facts(**kw: object) -> ClaimFacts:
    base: dict[str, object] = dict(insurance_type="employee", hospital_level=3,
                                   location="in_region", expense_date=date(2026, 6, 1),
                                   eligible_fen=1_000_000)
    return ClaimFacts(**(base | kw))  # type: ignore[arg-type]


def test_deductible_ratio_and_working_recorded() -> None:
    calc = calculate(BOOK, facts())
    # (10,000.00 - 800.00) x 0.85 = 7,820.00
    assert (calc.deductible_fen, calc.ratio, calc.payable_fen) == (80_000, Decimal("0.85"),
                                                                   782_000)
    assert calc.policy_version == "2026.1" and calc.overrides == []
    assert "9200.00 x ratio 0.85 = 7820.00" in calc.working[2]


def test_deductible_already_met_and_cap_reached() -> None:
    met = calculate(BOOK, facts(deductible_used_fen=80_000))
    assert met.deductible_fen == 0 and met.payable_fen == 850_000
    capped = calculate(BOOK, facts(paid_this_year_fen=39_800_000))
    assert capped.payable_fen == 200_000  # only 2,000.00 of the 400,000.00 cap is left


def test_remote_unfiled_gets_a_reduced_ratio_and_flexible_counts_as_employee() -> None:
    unfiled = calculate(BOOK, facts(location="remote_unfiled", insurance_type="flexible"))
    assert unfiled.ratio == Decimal("0.75")


def test_rounding_to_fen_half_up() -> None:
    calc = calculate(BOOK, facts(insurance_type="resident", hospital_level=2, eligible_fen=50_001))
    # deductible 500.00 leaves 0.01 x 0.70 = 0.007 -> 0.01
    assert calc.payable_fen == 1


def test_same_ratio_measure_lifts_the_remote_cut_only_while_in_force() -> None:
    during = calculate(EXERCISE, facts(location="remote_unfiled",
                                       expense_date=date(2026, 12, 10)))
    assert during.ratio == Decimal("0.85")
    assert during.overrides == ["example-001-remote-same-as-local"]
    before = calculate(EXERCISE, facts(location="remote_unfiled",
                                       expense_date=date(2026, 11, 30)))
    assert before.ratio == Decimal("0.75") and before.overrides == []
    # The shipped files declare no such measure.
    assert calculate(BOOK, facts(location="remote_unfiled",
                                 expense_date=date(2026, 12, 10))).ratio == Decimal("0.75")


def test_epidemic_patients_fully_covered_only_under_a_declared_measure() -> None:
    calc = calculate(EXERCISE, facts(epidemic_patient=True, expense_date=date(2026, 12, 10)))
    assert calc.payable_fen == calc.eligible_fen
    assert calc.overrides == ["example-001-epidemic-full-coverage"]
    shipped = calculate(BOOK, facts(epidemic_patient=True, expense_date=date(2026, 12, 10)))
    assert shipped.payable_fen == 782_000 and shipped.overrides == []


def test_no_policy_in_force_is_never_computed_with_another_years_figures() -> None:
    with pytest.raises(NoPolicyInForce, match="no policy in force for region 210200 on "
                                              "2027-01-05"):
        calculate(BOOK, facts(expense_date=date(2027, 1, 5)))
    with pytest.raises(NoPolicyInForce):
        calculate(BOOK, facts(expense_date=date(2025, 12, 15)))


def test_annual_totals_count_hospital_settlements_and_the_working_names_them() -> None:
    from shared.policy import AnnualTotals

    totals = AnnualTotals("medical", 2026, claims_paid_fen=100_000, settled_paid_fen=39_600_000,
                          claims_deductible_fen=0, settled_deductible_fen=80_000)
    calc = calculate(BOOK, facts(totals=totals, deductible_used_fen=0, paid_this_year_fen=0))
    # Deductible met at the hospital: none again; 400,000.00 - 397,000.00 = 3,000.00 left.
    assert calc.deductible_fen == 0 and calc.cap_remaining_fen == 300_000
    assert calc.payable_fen == 300_000
    assert calc.working[-1].startswith("medical totals 2026: paid 397000.00 (claims 1000.00 + "
                                       "settled at hospital 396000.00), deductible met 800.00")
    assert "annual cap 400000.00" in calc.working[-1]


def test_other_benefit_lines_never_use_the_medical_totals() -> None:
    from shared.policy import AnnualTotals

    # The caller passes only the medical line's totals; an empty line leaves the cap whole.
    fresh = calculate(BOOK, facts(totals=AnnualTotals("medical", 2026)))
    assert fresh.payable_fen == 782_000 and "paid 0.00" in fresh.working[-1]


def test_each_filing_kind_gets_the_level_its_policy_gives() -> None:
    """Every shipped version gives each filing kind its own rule (labelled ASSUMED DEFAULT
    figures): long-term at the local level, referral and temporary below it."""
    from shared.policy import FILING_LEVELS

    for region in ("150200", "210200", "330300", "370100", "371000"):
        version = PolicyBook.load(region).in_force(date(2026, 6, 1))
        for kind in ("employee", "resident"):
            for level in (1, 2, 3):
                own = {f: version.rule(kind, level, "remote_filed", f) for f in FILING_LEVELS}
                assert all(rule.filing_level == f for f, rule in own.items()), (region, kind)
                local = version.rule(kind, level, "in_region")
                assert local.ratio == own["long_term"].ratio > own["referral"].ratio \
                    > own["temporary"].ratio, (region, kind, level)
    ratios = {f: calculate(BOOK, facts(location="remote_filed", filing_level=f))
              for f in FILING_LEVELS}
    # Employee, level 3, Dalian: local 0.85; referral 0.82; temporary (and an emergency
    # admission, which counts as temporary) 0.80.
    assert {f: c.ratio for f, c in ratios.items()} == {
        "temporary": Decimal("0.80"), "long_term": Decimal("0.85"), "referral": Decimal("0.82")}
    assert "(temporary filing)" in ratios["temporary"].working[0]
    # (10,000.00 - 800.00) x 0.80 = 7,360.00
    assert ratios["temporary"].payable_fen == 736_000


def test_a_filing_level_rule_must_be_remote_filed(tmp_path: Path) -> None:
    from shared.policy import PolicyError

    text = (SHIPPED_DIR / "210200-2026.1.toml").read_text(encoding="utf-8")
    (tmp_path / "210200-2026.1.toml").write_text(
        text + '\n[[rule]]\ninsurance_type = "employee"\nhospital_level = 3\n'
        'location = "in_region"\nfiling_level = "temporary"\ndeductible_yuan = "800"\n'
        'ratio = "0.75"\nannual_cap_yuan = "400000"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match="filing_level"):
        PolicyBook.load("210200", [tmp_path])


def test_shandong_versions_carry_the_intra_province_rule() -> None:
    for region in ("370100", "371000"):
        applied = PolicyBook.load(region).intra_province_without_filing(date(2026, 6, 1))
        assert applied is not None and applied.notice.startswith("003")
    assert BOOK.intra_province_without_filing(date(2026, 6, 1)) is None


def test_childbirth_costs_have_their_own_figures_and_totals() -> None:
    from shared.policy import AnnualTotals

    spent = AnnualTotals("medical", 2026, claims_paid_fen=40_000_000)  # medical cap used up
    medical = calculate(BOOK, facts(totals=spent))
    assert medical.payable_fen == 0
    # The default maternity figures (labelled ASSUMED DEFAULT): in full up to 5,000.00 a year.
    own = AnnualTotals("maternity_medical", 2026, claims_paid_fen=450_000)
    calc = calculate(BOOK, facts(benefit_line="maternity_medical", eligible_fen=300_000,
                                 totals=own))
    assert (calc.deductible_fen, calc.cap_remaining_fen, calc.payable_fen) == (0, 50_000,
                                                                               50_000)
    assert "maternity medical line" in calc.working[0]
    assert calc.working[-1].startswith("maternity_medical totals 2026: paid 4500.00")
    assert BOOK.maternity_medical(date(2026, 6, 1)).measure_id == "210200-2026.1-maternity-medical"
