"""Enrollment items: stop, rosters, death, filings, accident deadlines, chronic disease, aid."""
from datetime import date, datetime, timedelta, timezone

import pytest

from services.enrollment.domain import benefits, filings, lifecycle
from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.model import InsuredStatus, Person
from shared.contracts.channels import (
    AccidentInjuryFiled,
    ChronicDiseaseApplied,
    FamilyAidAuthorised,
    RemoteTreatmentFilingApplied,
)
from shared.contracts.employer import RosterRow
from shared.contracts.hospital import EmergencyAdmissionFlagged
from shared.policy import AccidentFilingLimits, ChronicChangeRule, Limit
from shared.workdays import WorkingCalendar

PID = "210202198001011238"
RELATIVE = "370102199001011231"
EMPLOYER = "91210200MA0Y6G2K14"
CST = timezone(timedelta(hours=8))


def person(status: InsuredStatus = InsuredStatus.ACTIVE, kind: str = "resident",
           paid_until: date | None = date(2026, 12, 31), employer: str | None = None) -> Person:
    return Person(PID, "王伟", "13800138000", None, kind, status, paid_until, employer)


# --- stop contributions ---

def test_stop_suspends_the_day_after_the_paid_period() -> None:
    assert lifecycle.stop_contributions(person(), date(2026, 11, 1)) == date(2027, 1, 1)


def test_stop_after_the_period_ended_takes_effect_today() -> None:
    assert lifecycle.stop_contributions(person(paid_until=date(2026, 6, 30)),
                                        date(2026, 11, 1)) == date(2026, 11, 1)


def test_stop_is_only_for_residents_and_flexible_workers_who_are_active() -> None:
    with pytest.raises(RuleViolation, match="roster"):
        lifecycle.stop_contributions(person(kind="employee"), date(2026, 11, 1))
    with pytest.raises(RuleViolation) as err:
        lifecycle.stop_contributions(person(InsuredStatus.SUSPENDED), date(2026, 11, 1))
    assert err.value.rule == "not_active"


def test_scheduled_suspension_applies_unless_paid_again() -> None:
    p = person(paid_until=date(2026, 12, 31))
    assert lifecycle.apply_scheduled_suspension(p, date(2026, 12, 31)) is None
    change = lifecycle.apply_scheduled_suspension(p, date(2027, 1, 1))
    assert change and change.to_status == "suspended" and p.status == InsuredStatus.SUSPENDED


# --- employer rosters, retirement ---

def row(n: int, action: str, pid: str = PID, mobile: str = "13800138000") -> RosterRow:
    return RosterRow(row=n, action=action, person_id=pid, name="王伟", mobile=mobile,  # type: ignore[arg-type]
                     effective_on=date(2026, 3, 1))


def test_increase_enrolls_an_employee_at_once() -> None:
    outcome = lifecycle.apply_roster_row(row(1, "increase"), None, EMPLOYER)
    assert outcome.person and outcome.person.status == InsuredStatus.ACTIVE
    assert outcome.person.insurance_type == "employee" and outcome.person.has_personal_account
    assert outcome.events[0].to_status == "active"  # type: ignore[attr-defined]


def test_bad_rows_name_the_row_and_field() -> None:
    with pytest.raises(RuleViolation, match="row 2 person_id"):
        lifecycle.apply_roster_row(row(2, "increase", pid="210202198001011230"), None, EMPLOYER)
    with pytest.raises(RuleViolation, match="row 3 mobile"):
        lifecycle.apply_roster_row(row(3, "increase", mobile="123"), None, EMPLOYER)


def test_decrease_and_retire_only_for_own_staff() -> None:
    staff = person(kind="employee", employer=EMPLOYER)
    retired = lifecycle.apply_roster_row(row(1, "retire"), staff, EMPLOYER)
    assert staff.retired and retired.events[0].event_type.endswith("person.retired.v1")
    with pytest.raises(RuleViolation, match="another|not insured through"):
        lifecycle.apply_roster_row(row(2, "decrease"), staff, "91210200MA0Y6G2K22")
    decreased = lifecycle.apply_roster_row(row(3, "decrease"), staff, EMPLOYER)
    assert staff.status == InsuredStatus.SUSPENDED and decreased.reason == "suspended"


# --- death ---

def test_death_terminates_and_cannot_repeat() -> None:
    p = person()
    change = lifecycle.record_death(p, date(2026, 5, 1), "civil affairs")
    assert change.to_status == "terminated" and p.status == InsuredStatus.TERMINATED
    with pytest.raises(RuleViolation, match="already"):
        lifecycle.record_death(p, date(2026, 5, 1), "again")


def test_completed_transfer_out_marks_a_suspended_person_transferred_out() -> None:
    p = person(InsuredStatus.SUSPENDED)
    change = lifecycle.record_transfer_out(p, "TR-1", "370100", date(2026, 11, 23))
    assert change is not None and change.to_status == "transferred_out"
    assert p.status == InsuredStatus.TRANSFERRED_OUT and "370100" in change.reason
    assert lifecycle.record_transfer_out(p, "TR-1", "370100", date(2026, 11, 24)) is None
    with pytest.raises(RuleViolation, match="only a suspended person moves"):
        lifecycle.record_transfer_out(person(InsuredStatus.ACTIVE), "TR-2", "370100",
                                      date(2026, 11, 23))


def test_agent_may_apply_only_for_flexible_workers() -> None:
    with pytest.raises(RuleViolation, match="flexible"):
        lifecycle.check_death_applicant(person(kind="resident"), "agent", None)
    lifecycle.check_death_applicant(person(kind="flexible"), "agent", None)
    with pytest.raises(RuleViolation, match="employer"):
        lifecycle.check_death_applicant(person(kind="employee", employer="X"), "employer",
                                        EMPLOYER)


# --- remote-treatment filing ---

def filing(kind: str = "long_term", start: date = date(2026, 11, 18),
           filed: datetime = datetime(2026, 11, 23, 10, tzinfo=CST), **kw: object
           ) -> RemoteTreatmentFilingApplied:
    return RemoteTreatmentFilingApplied(
        filing_id="F-1", person_id=PID, kind=kind,  # type: ignore[arg-type]
        treatment_area=kw.pop("treatment_area", "440300"),  # type: ignore[arg-type]
        long_term_reason=kw.pop("reason", "retiree" if kind == "long_term" else None),
        start_date=start, channel="wechat", submitted_at=filed, **kw)  # type: ignore[arg-type]


def test_long_term_backfill_at_most_five_days() -> None:
    accepted = filings.accept_remote_filing(filing(start=date(2026, 11, 18)), person(), "210200")
    assert accepted.end_date is None  # valid until changed
    with pytest.raises(RuleViolation, match="earliest 2026-11-18"):
        filings.accept_remote_filing(filing(start=date(2026, 11, 17)), person(), "210200")


def test_temporary_backfill_unrestricted_and_given_an_end() -> None:
    accepted = filings.accept_remote_filing(filing("temporary", start=date(2025, 1, 1)),
                                            person(), "210200")
    assert accepted.end_date == date(2025, 1, 1) + timedelta(days=180)


def test_filing_needs_active_insurance_and_a_remote_place() -> None:
    with pytest.raises(RuleViolation) as err:
        filings.accept_remote_filing(filing(), person(InsuredStatus.SUSPENDED), "210200")
    assert err.value.rule == "not_insured" and "person_id" in err.value.reason
    local = filing().model_copy(update={"treatment_area": "210204"})
    with pytest.raises(RuleViolation, match="treatment_area"):
        filings.accept_remote_filing(local, person(), "210200")


def test_students_are_not_residents_living_elsewhere() -> None:
    with pytest.raises(RuleViolation, match="student"):
        filings.accept_remote_filing(filing(reason="resident_elsewhere", is_student=True),
                                     person(), "210200")


def test_emergency_admission_counts_as_temporary_filing() -> None:
    flag = EmergencyAdmissionFlagged(admission_id="ADM-1", person_id=PID, hospital_code="H1",
                                     treatment_area="440300", admitted_on=date(2026, 10, 2),
                                     emergency=True)
    made = filings.emergency_filing(flag, person())
    assert made and made.kind == "temporary" and made.benefit_level == "temporary"
    assert filings.emergency_filing(flag.model_copy(update={"emergency": False}),
                                    person()) is None
    # At a hospital of the insured city (a district of Dalian) nothing is remote.
    local = flag.model_copy(update={"treatment_area": "210204"})
    assert filings.emergency_filing(local, person(), region="210200") is None
    assert filings.emergency_filing(flag, person(), region="210200") is not None
    # The admission number is the hospital's: the same number from another hospital is
    # another filing.
    other = filings.emergency_filing(flag.model_copy(update={"hospital_code": "H2"}), person())
    assert made.filing_id == "EMG-H1-ADM-1" and other and other.filing_id == "EMG-H2-ADM-1"


def test_status_change_ends_open_filings() -> None:
    open_ = [filings.accept_remote_filing(filing(), person(), "210200")]
    assert filings.filings_ended_by_status(open_, InsuredStatus.SUSPENDED) == open_
    assert filings.filings_ended_by_status(open_, InsuredStatus.ACTIVE) == []


# --- accident injury ---

def accident(in_city: bool, admitted: date, filed: datetime) -> AccidentInjuryFiled:
    return AccidentInjuryFiled(filing_id="A-1", person_id=PID, hospital_code="H1",
                               in_city=in_city, admitted_on=admitted, injury_description="摔伤",
                               no_third_party_declared=True, channel="phone",
                               submitted_at=filed)


# Baotou's emergency limits [002 十三]: 7 working days in the city, 1 month outside.
EMERGENCY = AccidentFilingLimits(Limit(7, "working_days"), Limit(1, "months"))


def strict(start: date, limit: Limit) -> tuple[date, bool]:
    return limit.due(start, WorkingCalendar().add_working_days), False


def file(in_city: bool, admitted: date, filed: date, limits: AccidentFilingLimits = EMERGENCY,
         due: filings.DueCounter = strict) -> filings.AccidentDeadline:
    return filings.accept_accident_filing(
        accident(in_city, admitted, datetime(filed.year, filed.month, filed.day, tzinfo=CST)),
        person(), limits, due, filed)


def test_in_city_deadline_is_seven_working_days_across_national_day() -> None:
    # Admitted 2026-09-29 (Tue); 10-01..10-07 off: 09-30, 10-08, 10-09, 10-10 (make-up
    # Saturday), 10-12, 10-13, 10-14 -> the seventh working day is 10-14.
    assert file(True, date(2026, 9, 29), date(2026, 10, 14)).on == date(2026, 10, 14)
    with pytest.raises(RuleViolation, match="by 2026-10-14"):
        file(True, date(2026, 9, 29), date(2026, 10, 15))


def test_out_of_city_deadline_is_one_month() -> None:
    assert file(False, date(2026, 1, 31), date(2026, 2, 28)).on == date(2026, 2, 28)
    with pytest.raises(RuleViolation, match="1 months"):
        file(False, date(2026, 1, 31), date(2026, 3, 1))


def test_the_limits_are_the_policy_books_not_fixed_in_code() -> None:
    normal = AccidentFilingLimits(Limit(3, "working_days"), Limit(3, "working_days"))
    with pytest.raises(RuleViolation, match="3 working days"):
        file(True, date(2026, 11, 2), date(2026, 11, 6), normal)


def test_a_provisional_deadline_never_refuses() -> None:
    def beyond_the_schedule(start: date, limit: Limit) -> tuple[date, bool]:
        return date(2027, 1, 8), True  # weekdays only: a holiday could only move it later

    found = file(True, date(2026, 12, 30), date(2027, 1, 11), due=beyond_the_schedule)
    assert found == filings.AccidentDeadline(date(2027, 1, 8), provisional=True)


def test_admission_after_filing_day_is_refused() -> None:
    with pytest.raises(RuleViolation, match="admitted_on"):
        file(True, date(2026, 11, 24), date(2026, 11, 23))


# --- chronic disease, family aid ---

def test_institution_change_effective_at_once_or_next_month() -> None:
    rule = ChronicChangeRule()  # the standing rule of the policy book [002 六]
    assert rule.effective_on(date(2026, 11, 23), False) == date(2026, 11, 23)
    assert rule.effective_on(date(2026, 11, 23), True) == date(2026, 12, 1)
    assert rule.effective_on(date(2026, 12, 5), True) == date(2027, 1, 1)


def test_institution_change_needs_a_recognition() -> None:
    cmd = ChronicDiseaseApplied(application_id="C-1", person_id=PID, action="change_institution",
                                disease="diabetes", institution_code="H2", channel="wechat",
                                submitted_at=datetime(2026, 11, 23, tzinfo=CST))
    with pytest.raises(RuleViolation, match="recognition first"):
        benefits.check_chronic_application(cmd, person(), None)
    benefits.check_chronic_application(cmd, person(), "H1")


def aid(relative_region: str = "210200", **kw: object) -> FamilyAidAuthorised:
    return FamilyAidAuthorised(authorisation_id="FA-1", person_id=PID, relative_id=RELATIVE,
                               relative_name="王芳", relationship="spouse",
                               relative_region=relative_region,
                               commitment_signed=kw.get("signed", True), id_photo_uploaded=True,
                               channel="alipay", submitted_at=datetime(2026, 11, 23, tzinfo=CST))


def test_family_aid_rules() -> None:
    employee = person(kind="employee", employer=EMPLOYER)
    benefits.check_family_aid(aid("211100"), employee, "210200")  # same province (21)
    with pytest.raises(RuleViolation, match="same province"):
        benefits.check_family_aid(aid("370100"), employee, "210200")
    with pytest.raises(RuleViolation, match="personal account"):
        benefits.check_family_aid(aid(), person(kind="resident"), "210200")
    with pytest.raises(RuleViolation, match="commitment"):
        benefits.check_family_aid(aid(signed=False), employee, "210200")


def test_a_filing_for_the_own_province_or_city_is_not_remote() -> None:
    for area in ("210000", "210204"):
        with pytest.raises(RuleViolation, match="treatment_area"):
            filings.accept_remote_filing(filing(kind="temporary", treatment_area=area),
                                         person(), "210200")
    # Another province, or another city of the same province, is remote.
    for area in ("440000", "210100"):
        made = filings.accept_remote_filing(filing(kind="temporary", treatment_area=area),
                                            person(), "210200")
        assert made.treatment_area == area
