"""The policy book: shipped files carry no emergency measure, examples parse, dated lookups."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from shared.identity import REGIONS
from shared.policy import (
    EXAMPLES_DIR,
    KINDS,
    SHIPPED_DIR,
    BookCache,
    Limit,
    NoPolicyInForce,
    PolicyBook,
    PolicyError,
)
from shared.policy.book import DEFAULTS

SHIPPED = {region: PolicyBook.load(region) for region in REGIONS}
WITH_EXAMPLES = PolicyBook.load("150200", [SHIPPED_DIR, EXAMPLES_DIR])
DEC = date(2026, 12, 10)


def _version_text(region: str = "210200", version: str = "2027.1", start: str = "2027-01-01",
                  end: str = "2027-12-31") -> str:
    return (SHIPPED_DIR / f"{region}-2026.1.toml").read_text(encoding="utf-8").replace(
        'version = "2026.1"', f'version = "{version}"').replace(
        'effective_from = "2026-01-01"', f'effective_from = "{start}"').replace(
        'effective_to = "2026-12-31"', f'effective_to = "{end}"').replace("2026.1-", f"{version}-")


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_shipped_files_carry_no_emergency_measure(region: str) -> None:
    book = SHIPPED[region]
    assert book.temporary == []
    assert [v.version for v in book.versions] == ["2026.1"]
    for day in (date(2026, 1, 1), DEC, date(2026, 12, 31)):
        assert all(m.standing for m in book.measures_on(day))
        assert book.epidemic_coverage(day) is None
        assert book.remote_same_as_local(day) is None
        assert book.claim_extension(day) is None
        assert book.recognition_postponement(day) is None
    # Every standing kind is written out in the file, none left to a built-in default.
    assert not [m.id for m in book.versions[0].measures if ":default-" in m.id]


def test_every_shipped_folder_toml_is_a_version_and_examples_stay_out() -> None:
    assert sorted(p.name for p in SHIPPED_DIR.glob("*.toml")) == sorted(
        f"{r}-2026.1.toml" for r in REGIONS)
    assert not any(p.name in ("001-jinan-epidemic.toml",) for p in SHIPPED_DIR.glob("*.toml"))


def test_examples_parse_and_carry_one_measure_of_each_temporary_kind() -> None:
    kinds = {m.kind for m in WITH_EXAMPLES.temporary}
    # every kind that may be temporary has an example
    assert kinds == {kind for kind, (_, _, temporary) in KINDS.items() if temporary}
    assert all(m.notice[:3] in ("001", "002", "003", "004") for m in WITH_EXAMPLES.temporary)
    assert all(m.ends >= m.starts for m in WITH_EXAMPLES.temporary)


def test_emergency_measures_apply_only_while_in_force_then_the_normal_rule() -> None:
    book = WITH_EXAMPLES
    emergency = book.accident_filing_limits(DEC)
    assert emergency.value.in_city == Limit(7, "working_days")
    assert emergency.value.out_of_city == Limit(1, "months")
    assert emergency.measure_id == "example-002-accident-filing"
    assert emergency.policy_version == "2026.1" and emergency.notice.startswith("002")
    normal = book.accident_filing_limits(date(2026, 11, 30))
    assert normal.measure_id == "150200-2026.1-accident-filing"
    assert normal.value.limit(False) == Limit(3, "working_days")
    assert normal.record() == {"measure": "150200-2026.1-accident-filing",
                               "kind": "accident_filing", "notice": normal.notice,
                               "policy_version": "2026.1"}
    assert Limit(1, "months").due(date(2026, 1, 31)) == date(2026, 2, 28)
    assert Limit(7, "working_days").due(date(2026, 12, 1), lambda d, n: d + timedelta(n + 2)) \
        == date(2026, 12, 10)
    assert Limit(7, "working_days").zh() == "7个工作日"


def test_chronic_change_rule_normal_and_pharmacy_switch() -> None:
    normal = WITH_EXAMPLES.chronic_change_rule(date(2026, 11, 20)).value
    assert normal.effective_on(date(2026, 11, 20), reimbursed_this_month=False) == \
        date(2026, 11, 20)
    assert normal.effective_on(date(2026, 11, 20), reimbursed_this_month=True) == \
        date(2026, 12, 1)
    assert not normal.allows("pharmacy") and normal.temporary_until is None
    switch = WITH_EXAMPLES.chronic_change_rule(DEC)
    assert switch.value.allows("pharmacy") and switch.value.temporary_until == date(2026, 12, 31)
    assert switch.value.effective_on(DEC, True) == date(2027, 1, 1)
    assert switch.measure_id == "example-002-chronic-pharmacy-switch"


def test_recognition_postponed_a_month_except_the_four_urgent_kinds() -> None:
    applied = WITH_EXAMPLES.recognition_postponement(DEC)
    assert applied is not None
    rule = applied.value
    for urgent in ("malignant_tumour_outpatient", "organ_transplant_anti_rejection",
                   "uraemia_dialysis", "leukaemia"):
        assert rule.is_urgent(urgent) and rule.recognition_from(DEC, urgent) == DEC
    assert not rule.is_urgent("hypertension") and not rule.is_urgent("organ_transplantx")
    assert rule.recognition_from(DEC, "hypertension") == date(2027, 1, 10)
    assert WITH_EXAMPLES.recognition_postponement(date(2026, 11, 30)) is None


def test_prescription_limits_emergency_and_dalian_normal() -> None:
    assert WITH_EXAMPLES.prescription_limit(DEC, "hypertension_grade3").value == 3
    assert WITH_EXAMPLES.prescription_limit(DEC, "diabetes_insulin").value == 3
    assert WITH_EXAMPLES.prescription_limit(DEC, "copd").value == 2
    assert WITH_EXAMPLES.prescription_limit(date(2026, 11, 1), "copd").value == 1
    dalian = SHIPPED["210200"].prescription_limit(DEC, "copd")
    assert dalian.value == 3 and dalian.notice.startswith("000")
    # The emergency relaxes, never shortens: Dalian keeps its 3 months for other diseases.
    dalian_emergency = PolicyBook.load("210200", [SHIPPED_DIR, EXAMPLES_DIR])
    assert dalian_emergency.prescription_limit(DEC, "copd").measure_id == \
        "210200-2026.1-long-prescription"
    assert dalian_emergency.prescription_limit(DEC, "diabetes_insulin").value == 3


def test_claim_validity_and_extension() -> None:
    dalian = SHIPPED["210200"]
    deadline, applied = dalian.claim_deadline(date(2026, 1, 10))
    assert deadline == date(2027, 1, 10) and [a.measure_id for a in applied] == [
        "210200-2026.1-claim-validity"]
    # The year runs out on 2027-01-10, inside the example extension: 2 months more.
    deadline, applied = WITH_EXAMPLES.claim_deadline(date(2026, 1, 10))
    assert deadline == date(2027, 3, 10)
    assert [a.measure_id for a in applied][-1] == "example-002-claim-extension"
    assert WITH_EXAMPLES.claim_deadline(date(2026, 3, 15))[0] == date(2027, 3, 15)


def test_transfer_deadlines_readable_by_transfer() -> None:
    d = SHIPPED["371000"].transfer_deadlines(DEC).value
    assert (d.total(False), d.total(True), d.legs(False), d.legs(True)) == (15, 9, (10, 5),
                                                                           (6, 3))


def test_an_expense_in_2027_has_no_policy_never_the_2026_figures() -> None:
    book = SHIPPED["210200"]
    day = date(2027, 1, 5)
    with pytest.raises(NoPolicyInForce) as caught:
        book.in_force(day)
    assert (caught.value.region, caught.value.day) == ("210200", day)
    for lookup in (book.claim_validity, book.accident_filing_limits, book.chronic_change_rule,
                   book.transfer_deadlines, book.prescription_limit):
        with pytest.raises(NoPolicyInForce):
            lookup(day)
    # Even with an emergency measure running into 2027, the figures do not.
    with pytest.raises(NoPolicyInForce):
        WITH_EXAMPLES.accident_filing_limits(date(2027, 1, 5))


def test_gaps_and_days_left(tmp_path: Path) -> None:
    book = SHIPPED["210200"]
    assert book.gaps(date(2025, 11, 24), date(2027, 1, 23)) == [
        (date(2025, 11, 24), date(2025, 12, 31)), (date(2027, 1, 1), date(2027, 1, 23))]
    assert book.gaps(date(2026, 2, 1), date(2026, 3, 1)) == []
    assert book.days_left(date(2026, 11, 24)) == 38
    assert book.days_left(date(2027, 1, 1)) == 0
    (tmp_path / "210200-2026.1.toml").write_text(
        (SHIPPED_DIR / "210200-2026.1.toml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "210200-2027.1.toml").write_text(_version_text(start="2027-02-01"),
                                                 encoding="utf-8")
    two = PolicyBook.load("210200", [tmp_path])
    assert two.gaps(date(2026, 12, 1), date(2027, 3, 1)) == [(date(2027, 1, 1),
                                                              date(2027, 1, 31))]
    assert two.in_force(date(2027, 2, 1)).version == "2027.1"
    assert two.covered_until(date(2026, 12, 1)) == date(2026, 12, 31)


def test_bad_files_are_refused_naming_file_and_key(tmp_path: Path) -> None:
    def load(text: str) -> PolicyBook:
        (tmp_path / "210200-x.toml").write_text(text, encoding="utf-8")
        return PolicyBook.load("210200", [tmp_path])

    with pytest.raises(PolicyError, match="effective_to is required"):
        load(_version_text().replace('effective_to = "2027-12-31"\n', ""))
    with pytest.raises(PolicyError, match="bad rule"):
        load(_version_text().replace('ratio = "0.92"', 'ratio = "2"', 1))
    with pytest.raises(PolicyError, match="temporary measure"):
        load(_version_text() + '[[measure]]\nid = "e"\nkind = "epidemic_full_coverage"\n')
    with pytest.raises(PolicyError, match="needs from and to"):
        load('region = "210200"\n[[measure]]\nid = "e"\nkind = "claim_extension"\nmonths = 2\n')
    with pytest.raises(PolicyError, match="kind 'moon'"):
        load('region = "210200"\n[[measure]]\nid = "e"\nkind = "moon"\nfrom = 2026-01-01\n'
             'to = 2026-02-01\n')
    with pytest.raises(PolicyError, match="unit"):
        load('region = "*"\n[[measure]]\nid = "a"\nkind = "accident_filing"\nfrom = 2026-01-01'
             '\nto = 2026-02-01\nin_city = { count = 7, unit = "weeks" }\n'
             'out_of_city = { count = 1, unit = "months" }\n')
    (tmp_path / "210200-x.toml").unlink()
    (tmp_path / "210200-a.toml").write_text(_version_text(), encoding="utf-8")
    (tmp_path / "210200-b.toml").write_text(_version_text(version="2027.2", start="2027-06-01"),
                                            encoding="utf-8")
    with pytest.raises(PolicyError, match="overlaps"):
        PolicyBook.load("210200", [tmp_path])


def test_a_version_without_standing_measures_gets_labelled_defaults(tmp_path: Path) -> None:
    text = _version_text().split("# Standing measures")[0]
    (tmp_path / "210200-2027.1.toml").write_text(text, encoding="utf-8")
    book = PolicyBook.load("210200", [tmp_path])
    applied = book.accident_filing_limits(date(2027, 3, 1))
    assert applied.measure_id == "210200-2027.1:default-accident_filing"
    assert "ASSUMED DEFAULT" in applied.notice
    assert book.claim_validity(date(2027, 3, 1)).value == 12
    assert set(DEFAULTS) <= {m.kind for m in book.versions[0].measures}


def test_book_cache_rereads_when_a_file_is_added(tmp_path: Path) -> None:
    (tmp_path / "210200-2026.1.toml").write_text(
        (SHIPPED_DIR / "210200-2026.1.toml").read_text(encoding="utf-8"), encoding="utf-8")
    cache = BookCache("210200", [tmp_path])
    assert cache.refresh() == (False, None)
    (tmp_path / "210200-2027.1.toml").write_text("not toml [", encoding="utf-8")
    changed, error = cache.refresh()
    assert not changed and error is not None and "210200-2027.1.toml" in str(error)
    (tmp_path / "210200-2027.1.toml").write_text(_version_text(), encoding="utf-8")
    assert cache.refresh() == (True, None)
    assert cache.book.in_force(date(2027, 1, 5)).version == "2027.1"
