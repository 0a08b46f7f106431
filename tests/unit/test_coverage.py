"""Coverage periods: payments for future periods, lapses, employment, death and transfers."""
from datetime import UTC, date, datetime

from services.enrollment.domain import coverage, lifecycle
from services.enrollment.domain import enrollment as rules
from services.enrollment.domain.coverage import Period
from services.enrollment.domain.model import Application, ApplicationState, InsuredStatus, Person
from shared.contracts.tax import ContributionPaymentConfirmed

PID = "210202198001011238"


def person(status: InsuredStatus = InsuredStatus.PENDING, kind: str = "resident") -> Person:
    return Person(PID, "王伟", "13800138000", None, kind, status)


def payment(start: date, end: date, ref: str = "TAX-1",
            kind: str = "resident") -> ContributionPaymentConfirmed:
    return ContributionPaymentConfirmed(
        payment_ref=ref, person_id=PID, application_id="APP-1", insurance_type=kind,  # type: ignore[arg-type]
        period_start=start, period_end=end, amount_fen=40000,
        paid_at=datetime(2026, 11, 20, tzinfo=UTC))


def approved() -> Application:
    return Application("APP-1", PID, "resident", "wechat", ApplicationState.APPROVED)


def year(y: int, ref: str = "TAX") -> Period:
    return Period("resident", date(y, 1, 1), date(y, 12, 31), "tax_payment", ref)


def test_payment_in_november_for_next_year_activates_nothing_before_1_january() -> None:
    p = person()
    outcome = rules.confirm_payment(payment(date(2027, 1, 1), date(2027, 12, 31)), p,
                                    approved(), [], date(2026, 11, 24))
    assert p.status == InsuredStatus.PENDING and outcome.status_change is None
    assert outcome.activate_on == date(2027, 1, 1)
    assert outcome.periods == [year(2027, "TAX-1")]
    change = rules.apply_scheduled_activation(p, outcome.periods, date(2027, 1, 1))
    assert change is not None and change.to_status == "active"
    assert change.effective_on == date(2027, 1, 1)


def test_payment_for_the_current_year_activates_from_its_start() -> None:
    p = person()
    outcome = rules.confirm_payment(payment(date(2026, 1, 1), date(2026, 12, 31)), p,
                                    approved(), [], date(2026, 3, 5))
    assert p.status == InsuredStatus.ACTIVE and outcome.activate_on is None
    assert outcome.status_change and outcome.status_change.effective_on == date(2026, 1, 1)


def test_resident_payment_covers_the_calendar_year() -> None:
    period = coverage.paid_period("resident", date(2026, 3, 1), date(2026, 3, 31), "T")
    assert period.end == date(2026, 12, 31)
    flexible = coverage.paid_period("flexible", date(2026, 3, 1), date(2026, 5, 31), "T")
    assert flexible.end == date(2026, 5, 31)


def test_unpaid_next_year_lapses_after_the_grace_period_from_the_day_after() -> None:
    p = person(InsuredStatus.ACTIVE)
    periods = [year(2026)]
    assert rules.apply_lapse(p, periods, date(2026, 12, 31), 15) is None
    assert rules.apply_lapse(p, periods, date(2027, 1, 10), 15) is None  # within grace
    change = rules.apply_lapse(p, periods, date(2027, 1, 16), 15)
    assert change is not None and change.to_status == "suspended"
    assert change.effective_on == date(2027, 1, 1)


def test_paid_next_year_or_employed_never_lapses() -> None:
    assert coverage.lapsed([year(2026), year(2027)], date(2027, 2, 1), 0) is None
    employed = [Period("employee", date(2020, 5, 1), None, "employer", "E")]
    assert coverage.lapsed(employed, date(2030, 1, 1), 0) is None
    assert coverage.lapsed([], date(2030, 1, 1), 0) is None


def test_covering_judges_a_date_not_today() -> None:
    periods = coverage.end_all([year(2026)], date(2026, 6, 30))  # died 30 June
    assert coverage.covering(periods, date(2026, 6, 1)) is not None
    assert coverage.covering(periods, date(2026, 7, 1)) is None
    assert coverage.covering(periods, date(2025, 12, 31)) is None


def test_end_all_drops_periods_not_yet_begun() -> None:
    ended = coverage.end_all([year(2026), year(2027)], date(2026, 8, 31))
    assert ended == [Period("resident", date(2026, 1, 1), date(2026, 8, 31), "tax_payment",
                            "TAX")]


def test_employment_opens_and_closes_an_employee_period() -> None:
    joined = coverage.employment_changed([], "increase", date(2026, 4, 1), "E1", "R1")
    assert joined == [Period("employee", date(2026, 4, 1), None, "employer", "E1:R1")]
    moved = coverage.employment_changed(joined, "increase", date(2026, 9, 1), "E2", "R2")
    assert moved[0].end == date(2026, 8, 31) and moved[1].end is None
    left = coverage.employment_changed(moved, "decrease", date(2026, 11, 1), "E2", "R3")
    assert left[1].end == date(2026, 10, 31)


def test_death_is_recorded_whatever_the_status() -> None:
    for status in (InsuredStatus.TRANSFERRED_OUT, InsuredStatus.SUSPENDED,
                   InsuredStatus.PENDING, InsuredStatus.NONE):
        p = person(status)
        change = lifecycle.record_death(p, date(2026, 5, 1), "civil affairs")
        assert change.to_status == "terminated" and p.status == InsuredStatus.TERMINATED


def test_automatic_transfer_ends_coverage_the_day_before_the_new_region() -> None:
    p = person(InsuredStatus.ACTIVE)
    p.paid_until = date(2026, 12, 31)
    early = lifecycle.end_coverage_here(p, date(2026, 11, 30), date(2026, 11, 24), "moved")
    assert early is None and p.paid_until == date(2026, 11, 30)  # suspended when the day comes
    change = lifecycle.end_coverage_here(p, date(2026, 11, 30), date(2026, 12, 2), "moved")
    assert change is not None and change.effective_on == date(2026, 12, 1)
    assert lifecycle.apply_scheduled_suspension(person(InsuredStatus.ACTIVE),
                                                date(2026, 12, 1)) is not None


def test_a_payment_for_a_year_long_past_records_coverage_but_does_not_activate() -> None:
    p = person()
    outcome = rules.confirm_payment(payment(date(2025, 1, 1), date(2025, 12, 31)), p,
                                    approved(), [], date(2026, 11, 24), 15)
    assert p.status == InsuredStatus.PENDING and outcome.activate_on is None
    assert outcome.periods == [year(2025, "TAX-1")]


def test_a_late_payment_for_the_period_just_ended_activates_within_the_grace_period() -> None:
    p = person(kind="flexible")
    outcome = rules.confirm_payment(
        payment(date(2026, 10, 1), date(2026, 10, 31), kind="flexible"), p, approved(), [],
        date(2026, 11, 5), 15)
    assert p.status == InsuredStatus.ACTIVE and outcome.status_change is not None
    assert rules.apply_lapse(p, outcome.periods or [], date(2026, 11, 16), 15) is not None
