"""Contracts produced by the enrollment service."""
from __future__ import annotations

from datetime import date

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import (
    Channel, CnMobile, Email, Fen, InsuranceType, InsuredStatus, Reference, ResidentId,
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
