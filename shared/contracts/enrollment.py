"""Contracts produced by the enrollment service."""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import (
    Channel,
    CnMobile,
    Email,
    Fen,
    InsuranceType,
    InsuredStatus,
    Reference,
    ResidentId,
)

T = topics.ENROLLMENT_EVENTS


@event("cn.medins.enrollment.application.received.v1", T, person_facing=True)
class ApplicationReceived(Payload):
    application_id: Reference
    person_id: ResidentId
    insurance_type: InsuranceType
    channel: Channel


@event("cn.medins.enrollment.application.approved.v1", T, person_facing=True)
class ApplicationApproved(Payload):
    application_id: Reference
    person_id: ResidentId
    insurance_type: InsuranceType


@event("cn.medins.enrollment.application.rejected.v1", T, person_facing=True)
class ApplicationRejected(Payload):
    application_id: Reference
    person_id: ResidentId
    reasons: list[str]


@event("cn.medins.enrollment.contact.recorded.v1", T)
class ContactRecorded(Payload):
    """Where a person can be reached; notify keeps its own copy from this event."""

    person_id: ResidentId
    name: str
    mobile: CnMobile
    email: Email | None = None


@event("cn.medins.enrollment.status.changed.v1", T, person_facing=True)
class InsuredStatusChanged(Payload):
    person_id: ResidentId
    insurance_type: InsuranceType
    from_status: InsuredStatus
    to_status: InsuredStatus
    reason: str
    effective_on: date
    paid_until: date | None = None


class CoveragePeriod(BaseModel):
    """Days a person was insured here under one insurance type; `end` None while open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    insurance_type: InsuranceType
    start: date
    end: date | None = None
    # tax_payment (resident: calendar year; flexible: the paid period), employer (while on
    # staff), transfer_in (credited by a completed transfer-in)
    source: Literal["tax_payment", "employer", "transfer_in"]
    reference: str


@event("cn.medins.enrollment.coverage.changed.v1", T)
class CoverageChanged(Payload):
    """The person's complete list of coverage periods after a change, oldest first: other
    services replace their copy with it and judge a fact by the period covering its date."""

    person_id: ResidentId
    periods: list[CoveragePeriod]
    cause: str


@event("cn.medins.enrollment.payment.recorded.v1", T)
class ContributionRecorded(Payload):
    person_id: ResidentId
    payment_ref: Reference
    period_start: date
    period_end: date
    amount_fen: Fen


@event("cn.medins.enrollment.payment.parked.v1", T)
class PaymentParked(Payload):
    """A payment that matches no approved application: kept and visible, not dropped."""

    payment_ref: Reference
    person_id: ResidentId
    reason: str


@event("cn.medins.enrollment.request.rejected.v1", T, person_facing=True)
class RequestRejected(Payload):
    """A request the rules refuse (e.g. a review of an unknown application), with why."""

    reference: str
    person_id: ResidentId | None = None
    rule: str
    reason: str


@event("cn.medins.enrollment.contribution.stop-accepted.v1", T, person_facing=True)
class ContributionStopAccepted(Payload):
    request_id: Reference
    person_id: ResidentId
    suspended_from: date


@event("cn.medins.enrollment.employer.enrolled.v1", T)
class EmployerEnrolled(Payload):
    employer_code: str
    name: str


@event("cn.medins.enrollment.roster.row-processed.v1", T)
class RosterRowProcessed(Payload):
    """One roster row's outcome, reported to the employer individually."""

    roster_id: str
    employer_code: str
    row: int
    person_id: str
    action: str
    accepted: bool
    reason: str


@event("cn.medins.enrollment.roster.processed.v1", T)
class RosterProcessed(Payload):
    roster_id: str
    employer_code: str
    rows: int
    accepted: int
    rejected: int


@event("cn.medins.enrollment.person.retired.v1", T, person_facing=True)
class PersonRetired(Payload):
    person_id: ResidentId
    employer_code: str
    retired_on: date


@event("cn.medins.enrollment.civil-servant-benefit.decided.v1", T)
class CivilServantBenefitDecided(Payload):
    application_id: Reference
    employer_code: str
    approved: bool
    reasons: list[str]


@event("cn.medins.enrollment.death-cancellation.decided.v1", T, person_facing=True)
class DeathCancellationDecided(Payload):
    """The result of a death cancellation, emailed to the applicant (not the deceased)."""

    application_id: Reference
    person_id: ResidentId
    approved: bool
    reasons: list[str]
    applicant_email: Email


@event("cn.medins.enrollment.person.deceased.v1", T)
class PersonDeceased(Payload):
    """Other services end their open work for the person on this event."""

    person_id: ResidentId
    date_of_death: date
    source: str
    ended_filings: list[str]
    ended_authorisations: list[str]
    ended_chronic_bindings: list[str] = []


@event("cn.medins.enrollment.remote-filing.accepted.v1", T, person_facing=True)
class RemoteFilingAccepted(Payload):
    filing_id: Reference
    person_id: ResidentId
    kind: str
    source: str
    treatment_area: str
    start_date: date
    end_date: date | None
    benefit_level: str
    chronic_diseases: list[str]


@event("cn.medins.enrollment.remote-filing.ended.v1", T, person_facing=True)
class RemoteFilingEnded(Payload):
    filing_id: Reference
    person_id: ResidentId
    reason: str


@event("cn.medins.enrollment.chronic-disease.recognised.v1", T, person_facing=True)
class ChronicDiseaseRecognised(Payload):
    reference: Reference
    person_id: ResidentId
    disease: str
    institution_code: str
    effective_from: date
    without_application: bool
    # Longest prescription the policy in force allows for the disease, in months.
    prescription_months: int | None = None


@event("cn.medins.enrollment.chronic-disease.institution-changed.v1", T, person_facing=True)
class DesignatedInstitutionChanged(Payload):
    application_id: Reference
    person_id: ResidentId
    disease: str
    institution_code: str
    effective_from: date


@event("cn.medins.enrollment.family-aid.authorised.v1", T, person_facing=True)
class FamilyAidAccepted(Payload):
    authorisation_id: Reference
    person_id: ResidentId
    relative_id: ResidentId
    relationship: str


@event("cn.medins.enrollment.family-aid.ended.v1", T, person_facing=True)
class FamilyAidEnded(Payload):
    authorisation_id: Reference
    person_id: ResidentId
    reason: str


@event("cn.medins.enrollment.accident-injury.accepted.v1", T, person_facing=True)
class AccidentInjuryAccepted(Payload):
    filing_id: Reference
    person_id: ResidentId
    admitted_on: date
    deadline: date
    # Counted past the official holiday schedules (weekdays only) until the year's file.
    deadline_provisional: bool = False
