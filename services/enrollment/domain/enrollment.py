"""Resident and flexible-worker enrollment: apply, review, tax payment confirms (SPEC 1)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.enrollment.domain import coverage
from services.enrollment.domain.coverage import Period
from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.lifecycle import status_changed
from services.enrollment.domain.model import Application, ApplicationState, InsuredStatus, Person
from shared.contracts.base import Payload
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.enrollment import (
    ApplicationApproved,
    ApplicationReceived,
    ApplicationRejected,
    ContactRecorded,
    ContributionRecorded,
    InsuredStatusChanged,
    PaymentParked,
)
from shared.contracts.tax import ContributionPaymentConfirmed


@dataclass
class Outcome:
    """What a decision changed and the events it produces, in order."""

    events: list[Payload] = field(default_factory=list)
    person: Person | None = None
    application: Application | None = None
    status_change: InsuredStatusChanged | None = None
    parked_reason: str | None = None
    # The person's coverage periods after the decision (None: unchanged), and the day a
    # payment for a period not yet begun makes the person active.
    periods: list[Period] | None = None
    activate_on: date | None = None


def submit_application(cmd: EnrollmentApplicationSubmitted, person: Person | None,
                       open_application: Application | None, region: str) -> Outcome:
    if cmd.region_code != region:
        raise RuleViolation("wrong_region",
                            f"region_code {cmd.region_code} is not this agency's region {region}")
    if person is not None and person.status in (InsuredStatus.ACTIVE, InsuredStatus.PENDING):
        raise RuleViolation("already_insured",
                            f"person is already insured here (status {person.status})")
    if person is not None and person.status == InsuredStatus.TERMINATED:
        raise RuleViolation("person_deceased", "person's insurance was cancelled on death")
    if open_application is not None and open_application.is_open:
        raise RuleViolation("application_open",
                            f"application {open_application.application_id} is still open")
    if person is None:
        person = Person(cmd.person_id, cmd.name, cmd.mobile, cmd.email, cmd.insurance_type)
    else:
        person.name, person.mobile, person.email = cmd.name, cmd.mobile, cmd.email
        person.insurance_type = cmd.insurance_type
    application = Application(cmd.application_id, cmd.person_id, cmd.insurance_type, cmd.channel)
    return Outcome(
        events=[
            ContactRecorded(person_id=person.person_id, name=person.name, mobile=person.mobile,
                            email=person.email),
            ApplicationReceived(application_id=application.application_id,
                                person_id=person.person_id,
                                insurance_type=cmd.insurance_type, channel=cmd.channel),
        ],
        person=person, application=application,
    )


def review_application(cmd: EnrollmentReviewDecided, application: Application | None,
                       person: Person | None) -> Outcome:
    if application is None or person is None:
        raise RuleViolation("unknown_application",
                            f"application_id {cmd.application_id} is not known here")
    if application.person_id != cmd.person_id:
        raise RuleViolation("person_mismatch",
                            f"application {cmd.application_id} belongs to another person")
    if application.state != ApplicationState.SUBMITTED:
        raise RuleViolation("review_not_pending",
                            f"application is {application.state}, not awaiting review")
    if cmd.decision == "reject":
        if not cmd.reasons:
            raise RuleViolation("reasons_required", "a rejection must give reasons")
        application.state, application.reasons = ApplicationState.REJECTED, list(cmd.reasons)
        return Outcome(events=[ApplicationRejected(
            application_id=application.application_id, person_id=person.person_id,
            reasons=list(cmd.reasons))], application=application)
    application.state = ApplicationState.APPROVED
    change = status_changed(person, InsuredStatus.PENDING,
                            "参保申请已审核通过，待向税务机关缴费", cmd.decided_at.date())
    return Outcome(
        events=[ApplicationApproved(application_id=application.application_id,
                                    person_id=person.person_id,
                                    insurance_type=application.insurance_type),  # type: ignore[arg-type]
                change],
        person=person, application=application, status_change=change,
    )


def confirm_payment(cmd: ContributionPaymentConfirmed, person: Person | None,
                    application: Application | None, periods: list[Period],
                    today: date, grace_days: int = 0) -> Outcome:
    """Record the paid period; the person is active only while it runs (or within the grace
    period after it): a payment in November for next year activates nothing before
    1 January, and one for a year long past only records that coverage. A payment matching
    nothing approved is parked, not lost."""
    parked = _why_parked(cmd, person, application)
    if parked:
        return Outcome(events=[PaymentParked(payment_ref=cmd.payment_ref, person_id=cmd.person_id,
                                             reason=parked)], parked_reason=parked)
    assert person is not None
    period = coverage.paid_period(cmd.insurance_type, cmd.period_start, cmd.period_end,
                                  cmd.payment_ref)
    periods = [*periods, period]
    if person.paid_until is None or period.end > person.paid_until:  # type: ignore[operator]
        person.paid_until = period.end
    events: list[Payload] = [ContributionRecorded(
        person_id=person.person_id, payment_ref=cmd.payment_ref, period_start=cmd.period_start,
        period_end=cmd.period_end, amount_fen=cmd.amount_fen)]
    change = None
    activate_on = None
    in_force = coverage.current(periods, today, grace_days)
    if person.status != InsuredStatus.ACTIVE:
        if in_force is not None:
            change = status_changed(person, InsuredStatus.ACTIVE,
                                    f"税务机关已确认缴费（{cmd.payment_ref}）", in_force.start)
            events.append(change)
        else:
            activate_on = coverage.next_start(periods, today)
    if application is not None and application.state == ApplicationState.APPROVED:
        application.state = ApplicationState.PAID
    return Outcome(events=events, person=person, application=application, status_change=change,
                   periods=periods, activate_on=activate_on)


def apply_scheduled_activation(person: Person, periods: list[Period],
                               on: date) -> InsuredStatusChanged | None:
    """A paid period has begun: a pending or suspended person becomes active."""
    if person.status not in (InsuredStatus.PENDING, InsuredStatus.SUSPENDED):
        return None
    period = coverage.covering(periods, on)
    if period is None:
        return None
    return status_changed(person, InsuredStatus.ACTIVE,
                          f"已缴费的参保期自{period.start.isoformat()}起开始", on)


def apply_lapse(person: Person, periods: list[Period], today: date,
                grace_days: int) -> InsuredStatusChanged | None:
    """An active person whose paid period ended with nothing paid for the next is suspended
    from the day after it ended, once the grace period has passed."""
    if person.status != InsuredStatus.ACTIVE:
        return None
    ended = coverage.lapsed(periods, today, grace_days)
    if ended is None:
        return None
    return status_changed(person, InsuredStatus.SUSPENDED,
                          "缴费期满后未续缴", ended)


def _why_parked(cmd: ContributionPaymentConfirmed, person: Person | None,
                application: Application | None) -> str | None:
    if person is None:
        return "no enrollment for this person"
    if cmd.application_id is not None:
        if application is None:
            return f"application {cmd.application_id} is unknown"
        if application.person_id != cmd.person_id:
            return f"application {cmd.application_id} belongs to another person"
        if application.state == ApplicationState.REJECTED:
            return f"application {cmd.application_id} was rejected"
        if application.state == ApplicationState.SUBMITTED:
            return f"application {cmd.application_id} is not yet approved"
    if person.status not in (InsuredStatus.PENDING, InsuredStatus.ACTIVE,
                             InsuredStatus.SUSPENDED):
        return f"person's insured status is {person.status}"
    return None
