"""The claim stage machine: no skipped stage, no action on a closed claim, one payment key."""
from datetime import date

import pytest

from services.reimbursement.domain.claims import (
    Claim,
    FilingOnRecord,
    Stage,
    StageError,
    area_covers,
    calculated,
    can_resubmit,
    decide,
    location_of,
    materials_mailed,
    payment_result,
)


def claim() -> Claim:
    return Claim("CLM-1", "210202198001011238", 1, Stage.PRELIMINARY_REVIEW, date(2026, 6, 1),
                 100_000, 100_000, 3, "in_region")


def test_full_path_to_paid() -> None:
    c = claim()
    assert decide(c, "preliminary_review", True, []) == Stage.MATERIALS_PENDING
    materials_mailed(c, "XA123456789CN")
    assert c.stage == Stage.VERIFICATION and c.tracking_no == "XA123456789CN"
    assert decide(c, "verification", True, []) == Stage.CALCULATION
    calculated(c, 54_000)
    assert c.stage == Stage.APPROVED and c.payment_attempts == 1
    assert payment_result(c, True, 3) == Stage.PAID


def test_skipping_a_stage_or_acting_on_a_closed_claim_is_refused() -> None:
    c = claim()
    with pytest.raises(StageError, match="not verification"):
        decide(c, "verification", True, [])
    with pytest.raises(StageError, match="only after preliminary approval"):
        materials_mailed(c, "XA123456789CN")
    decide(c, "preliminary_review", False, ["发票不清晰"])
    assert c.stage == Stage.REJECTED
    with pytest.raises(StageError):
        decide(c, "preliminary_review", True, [])
    with pytest.raises(StageError, match="no payment is outstanding"):
        payment_result(c, True, 3)


def test_rejection_needs_reasons_and_resubmission_makes_a_new_version() -> None:
    c = claim()
    with pytest.raises(StageError, match="reasons"):
        decide(c, "preliminary_review", False, [])
    with pytest.raises(StageError, match="only a rejected claim"):
        can_resubmit(c)
    decide(c, "preliminary_review", False, ["缺少明细"])
    assert can_resubmit(c) == 2 and can_resubmit(None) == 1


def test_failed_payments_retry_with_the_same_key_then_surface() -> None:
    c = claim()
    decide(c, "preliminary_review", True, [])
    materials_mailed(c, "XA123456789CN")
    decide(c, "verification", True, [])
    calculated(c, 1_000)
    key = c.idempotency_key
    assert payment_result(c, False, 2) == Stage.APPROVED and c.payment_attempts == 2
    assert c.idempotency_key == key == "CLM-1:v1"
    assert payment_result(c, False, 2) == Stage.PAYMENT_FAILED


def test_location_from_filings() -> None:
    filings = [FilingOnRecord("440300", date(2026, 1, 1), None, "long_term")]
    assert location_of(None, "210200", filings, date(2026, 6, 1)) == ("in_region", None)
    assert location_of("210204", "210200", filings, date(2026, 6, 1)) == ("in_region", None)
    assert location_of("440300", "210200", filings, date(2026, 6, 1)) == ("remote_filed",
                                                                          "long_term")
    assert location_of("440300", "210200", filings, date(2025, 6, 1)) == ("remote_unfiled",
                                                                          None)
    assert location_of("110105", "210200", filings, date(2026, 6, 1)) == ("remote_unfiled",
                                                                          None)


def test_a_province_or_city_filing_covers_the_places_inside_it() -> None:
    day = date(2026, 6, 1)
    city = [FilingOnRecord("110100", date(2026, 1, 1), None, "temporary")]
    province = [FilingOnRecord("440000", date(2026, 1, 1), None, "referral")]
    county = [FilingOnRecord("440305", date(2026, 1, 1), None, "temporary")]
    assert location_of("110105", "210200", city, day) == ("remote_filed", "temporary")
    assert location_of("120101", "210200", city, day)[0] == "remote_unfiled"
    assert location_of("440305", "210200", province, day) == ("remote_filed", "referral")
    assert location_of("440300", "210200", county, day)[0] == "remote_unfiled"
    # The most specific filing gives the level.
    both = province + county
    assert location_of("440305", "210200", both, day) == ("remote_filed", "temporary")
    assert area_covers("440000", "440305") and not area_covers("440300", "440400")


def test_within_shandong_a_trip_to_another_city_needs_no_filing() -> None:
    day = date(2026, 6, 1)
    # Weihai (371000) insured, treated in Jinan (370102): filed at the temporary level.
    assert location_of("370102", "371000", [], day, True) == ("remote_filed", "temporary")
    assert location_of("110105", "371000", [], day, True) == ("remote_unfiled", None)
    assert location_of("370102", "371000", [], day, False) == ("remote_unfiled", None)
    # Inside the insured city it is never remote, filing or not.
    assert location_of("371002", "371000", [], day, True) == ("in_region", None)


def test_maternity_leave_days_and_allowance() -> None:
    from services.reimbursement.domain.claims import (
        MaternityRules,
        maternity_allowance,
        maternity_leave_days,
    )

    rules = MaternityRules()
    assert maternity_leave_days(rules, False, 1) == 98
    assert maternity_leave_days(rules, True, 2) == 128
    fen, working = maternity_allowance(rules, 600_000, 98)  # 6,000.00 a month
    assert fen == 1_960_000 and working == "6000.00 / 30 x 98 days = 19600.00"
    assert maternity_allowance(rules, 100_001, 1)[0] == 3_333  # 33.3336... -> 33.33


def test_a_claim_is_judged_by_the_coverage_on_the_expense_date() -> None:
    from services.reimbursement.domain.claims import Coverage, coverage_on, intake_reasons

    # Insured 2025 as a resident, then as an employee from March 2026 until death in June.
    periods = [Coverage("resident", date(2025, 1, 1), date(2025, 12, 31)),
               Coverage("employee", date(2026, 3, 1), date(2026, 6, 10))]
    assert coverage_on(periods, date(2025, 7, 1)) == periods[0]
    assert coverage_on(periods, date(2026, 6, 10)) == periods[1]
    assert coverage_on(periods, date(2026, 2, 1)) is None  # a gap
    assert coverage_on(periods, date(2026, 6, 11)) is None  # after death
    assert coverage_on([Coverage("flexible", date(2026, 11, 23), None)],
                       date(2026, 10, 30)) is None  # insured only since yesterday

    def reasons(**kw: object) -> list[str]:
        base: dict[str, object] = dict(coverage=periods[1], expense_date=date(2026, 6, 1),
                                       filed_on=date(2026, 11, 24), deadline=date(2027, 6, 1),
                                       earlier_claim_for_receipt=None)
        return intake_reasons(**(base | kw))  # type: ignore[arg-type]

    assert reasons() == []  # heirs claim an expense from while the person was insured
    [gap] = reasons(coverage=None, expense_date=date(2026, 2, 1))
    assert "2026-02-01" in gap and "不在本统筹区参保期内" in gap
    [late] = reasons(deadline=date(2026, 11, 23))
    assert "2026-11-23" in late and "一年内" in late
    [future] = reasons(expense_date=date(2026, 11, 25))
    assert "晚于申请受理日期" in future
    assert reasons(deadline=None) == []  # no policy yet: the deadline waits for it
    assert len(reasons(earlier_claim_for_receipt="CLM-0", settled_as="S-1")) == 2


def test_a_claim_waits_for_the_policy_then_goes_on() -> None:
    from services.reimbursement.domain.claims import awaiting_policy, policy_added

    waiting = claim()
    waiting.filed_on = date(2026, 11, 24)
    awaiting_policy(waiting, "intake")
    assert waiting.stage == Stage.AWAITING_POLICY and waiting.waiting_for == "intake"
    assert policy_added(waiting, date(2027, 6, 1)) == []
    assert waiting.stage == Stage.PRELIMINARY_REVIEW and waiting.waiting_for is None
    late = claim()
    late.filed_on = date(2026, 11, 24)
    awaiting_policy(late, "intake")
    [reason] = policy_added(late, date(2026, 11, 1))
    assert late.stage == Stage.REJECTED and late.reasons == [reason]
    calc = claim()
    awaiting_policy(calc, "calculation")
    assert policy_added(calc, date(2027, 6, 1)) == [] and calc.stage == Stage.CALCULATION
    with pytest.raises(StageError):
        policy_added(calc, date(2027, 6, 1))


def test_a_filing_that_ended_later_still_covers_the_expense() -> None:
    # Filed from January, ended on 2026-05-31: an expense in May was filed, one in June not.
    filings = [FilingOnRecord("440300", date(2026, 1, 1), date(2026, 5, 31), "temporary")]
    assert location_of("440300", "210200", filings, date(2026, 5, 20))[0] == "remote_filed"
    assert location_of("440300", "210200", filings, date(2026, 6, 2))[0] == "remote_unfiled"


def test_proactive_reimbursement_covers_local_outpatient_costs_only() -> None:
    from services.reimbursement.domain.claims import proactive_route

    assert proactive_route(care="outpatient", treatment_area=None, region="330300") is None
    assert proactive_route(care="outpatient", treatment_area="330302", region="330300") is None
    assert "住院" in (proactive_route(care="inpatient", treatment_area=None, region="330300")
                    or "")
    assert "市外" in (proactive_route(care="outpatient", treatment_area="330100",
                                     region="330300") or "")


def test_the_declared_outage_decides_never_the_institutions_window() -> None:
    from services.reimbursement.domain.claims import (
        Coverage,
        DeclaredOutage,
        check_proactive_record,
        declared_outage_for,
    )

    declared = [DeclaredOutage("OUT-1", date(2022, 3, 4), date(2022, 3, 6), date(2022, 6, 30))]
    insured = Coverage("resident", date(2022, 1, 1), None)

    def check(day: date) -> str | None:
        return check_proactive_record(person_id_error=None, coverage=insured, expense_date=day,
                                      outage=declared_outage_for(declared, day),
                                      declared=declared, amount_fen=100, eligible_fen=100)

    assert check(date(2022, 3, 5)) is None
    assert declared_outage_for(declared, date(2022, 3, 5)) == declared[0]
    assert "outside the outage the agency declared (2022-03-04..2022-03-06)" in (
        check(date(2022, 3, 3)) or "")


def test_proactive_claims_are_scoped_by_the_institution() -> None:
    from services.reimbursement.domain.claims import proactive_claim_id

    assert proactive_claim_id("H1", "0001") != proactive_claim_id("H2", "0001")
    assert proactive_claim_id("H1", "0001") == "PRO-H1-0001"
    odd = proactive_claim_id("H1", "记录 0001/甲")  # not a reference: a stable digest
    assert odd.startswith("PRO-H1-") and odd == proactive_claim_id("H1", "记录 0001/甲")
