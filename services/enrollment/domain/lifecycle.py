"""Insured lifecycle: stopping contributions, employer rosters, retirement, death (SPEC 2-4)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.model import InsuredStatus, Person
from shared.contracts.base import Payload
from shared.contracts.employer import RosterRow
from shared.contracts.enrollment import InsuredStatusChanged, PersonRetired
from shared.identity import IdentifierError, check_resident_id, validate_cn_mobile


def status_changed(person: Person, to: InsuredStatus, reason: str,
                   on: date) -> InsuredStatusChanged:
    previous = person.transition(to)
    return InsuredStatusChanged(
        person_id=person.person_id, insurance_type=person.insurance_type,  # type: ignore[arg-type]
        from_status=previous.value, to_status=to.value,  # type: ignore[arg-type]
        reason=reason, effective_on=on, paid_until=person.paid_until,
    )


def stop_contributions(person: Person | None, today: date) -> date:
    """The day the person becomes suspended: the day after the paid period ends."""
    if person is None or person.status != InsuredStatus.ACTIVE:
        raise RuleViolation("not_active", "only an active insured person can stop contributions"
                            f" (status {person.status if person else 'not insured here'})")
    if person.insurance_type not in ("resident", "flexible"):
        raise RuleViolation("employer_pays", "employee insurance is stopped by the employer's "
                            "staff-decrease roster, not by the person")
    return max(today, person.paid_until + timedelta(days=1)) if person.paid_until else today


def apply_scheduled_suspension(person: Person, on: date) -> InsuredStatusChanged | None:
    """Suspend when the stop falls due, unless the person paid again in the meantime."""
    if person.status != InsuredStatus.ACTIVE:
        return None
    if person.paid_until is not None and person.paid_until >= on:
        return None  # a later payment extended the period: the stop no longer applies
    return status_changed(person, InsuredStatus.SUSPENDED,
                          "已申请停止缴费，缴费期已满", on)


@dataclass
class RowOutcome:
    person: Person | None
    events: list[Payload] = field(default_factory=list)
    reason: str = "applied"


def apply_roster_row(row: RosterRow, person: Person | None, employer_code: str) -> RowOutcome:
    """One staff change; raises RuleViolation naming the field for a bad row."""
    try:
        check_resident_id(row.person_id)
    except IdentifierError as exc:
        raise RuleViolation("invalid_row", f"row {row.row} person_id: {exc}") from None
    if row.action == "increase":
        return _increase(row, person, employer_code)
    if person is None or person.employer_code != employer_code:
        raise RuleViolation("not_on_staff",
                            f"row {row.row}: person is not insured through this employer")
    if person.status != InsuredStatus.ACTIVE:
        raise RuleViolation("not_active", f"row {row.row}: person is {person.status}")
    if row.action == "decrease":
        change = status_changed(person, InsuredStatus.SUSPENDED,
                                f"参保单位（{employer_code}）办理减员", row.effective_on)
        person.employer_code = None
        return RowOutcome(person, [change], "suspended")
    if person.retired:
        raise RuleViolation("already_retired", f"row {row.row}: person is already retired")
    person.retired = True
    return RowOutcome(person, [PersonRetired(person_id=person.person_id,
                                             employer_code=employer_code,
                                             retired_on=row.effective_on)], "retired")


def _increase(row: RosterRow, person: Person | None, employer_code: str) -> RowOutcome:
    try:
        mobile = validate_cn_mobile(row.mobile)
    except IdentifierError as exc:
        raise RuleViolation("invalid_row", f"row {row.row} mobile: {exc}") from None
    if not row.name:
        raise RuleViolation("invalid_row", f"row {row.row} name: required for a staff increase")
    if person is not None and person.status == InsuredStatus.TERMINATED:
        raise RuleViolation("person_deceased", f"row {row.row}: person is deceased")
    if (person is not None and person.status == InsuredStatus.ACTIVE
            and person.employer_code not in (None, employer_code)):
        raise RuleViolation("insured_elsewhere",
                            f"row {row.row}: person is insured through another employer")
    if person is None:
        person = Person(row.person_id, row.name, mobile, row.email, "employee")
    person.name, person.mobile, person.email = row.name, mobile, row.email or person.email
    person.insurance_type = "employee"
    person.employer_code = employer_code
    events: list[Payload] = []
    if person.status != InsuredStatus.ACTIVE:
        events.append(status_changed(person, InsuredStatus.ACTIVE,
                                     f"参保单位（{employer_code}）办理增员",
                                     row.effective_on))
    return RowOutcome(person, events, "enrolled")


def record_death(person: Person | None, date_of_death: date, source: str) -> InsuredStatusChanged:
    """Recorded whatever the status (pending, suspended, transferred out): the record ends."""
    if person is None:
        raise RuleViolation("not_insured", "person is not insured here")
    if person.status == InsuredStatus.TERMINATED:
        raise RuleViolation("already_cancelled", "insurance was already cancelled on death")
    return status_changed(person, InsuredStatus.TERMINATED, f"死亡（{source}）", date_of_death)


def record_transfer_out(person: Person | None, transfer_id: str, to_region: str,
                        on: date) -> InsuredStatusChanged | None:
    """SPEC transfer 3: the partner took the person in, so the insurance here ends; a person
    already terminated or transferred here stays as they are (returns None)."""
    if person is None or person.status in (InsuredStatus.TERMINATED,
                                           InsuredStatus.TRANSFERRED_OUT):
        return None
    if person.status != InsuredStatus.SUSPENDED:
        raise RuleViolation("not_suspended", f"transfer {transfer_id} completed while the "
                            f"person is {person.status} here; only a suspended person moves")
    return status_changed(person, InsuredStatus.TRANSFERRED_OUT,
                          f"医保关系已转往{to_region}（转移编号{transfer_id}）", on)


def end_coverage_here(person: Person, last_day: date, today: date,
                      reason: str) -> InsuredStatusChanged | None:
    """Insurance here ends on `last_day` because the person is insured elsewhere from the next
    day: suspended now if that day has come (None: nothing to change yet, or not active)."""
    if person.paid_until is not None and person.paid_until > last_day:
        person.paid_until = last_day
    if person.status != InsuredStatus.ACTIVE or today <= last_day:
        return None
    return status_changed(person, InsuredStatus.SUSPENDED, reason, last_day + timedelta(days=1))


def check_death_applicant(person: Person | None, applicant: str,
                          employer_code: str | None) -> None:
    """Employers cancel their staff; an agent applies only for a flexible worker (SPEC 4)."""
    if person is None:
        raise RuleViolation("not_insured", "person is not insured here")
    if applicant == "employer" and person.employer_code != employer_code:
        raise RuleViolation("not_on_staff", "person is not insured through this employer")
    if applicant == "agent" and person.insurance_type != "flexible":
        raise RuleViolation("agent_only_for_flexible",
                            "an agent may apply only for a flexible worker")
