"""Contracts produced by the service channels and agency staff (applications, reviews)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import (
    Channel, CnMobile, Email, Fen, Reference, RegionCode, ResidentId,
)


@event("cn.medins.channels.enrollment.submitted.v1", topics.ENROLLMENT_REQUESTS)
class EnrollmentApplicationSubmitted(Payload):
    """A resident or flexible worker applies online to enroll (参保登记)."""

    application_id: Reference
    person_id: ResidentId
    name: str = Field(min_length=1, max_length=50)
    insurance_type: Literal["resident", "flexible"]
    mobile: CnMobile
    email: Email | None = None
    channel: Channel
    region_code: RegionCode
    submitted_at: datetime
    materials: list[str] = Field(default_factory=list)


@event("cn.medins.review.enrollment.decided.v1", topics.ENROLLMENT_REQUESTS)
class EnrollmentReviewDecided(Payload):
    """Agency staff's background review (后台审核) of an application.

    It names the person too: messages are keyed by person, so a review can never overtake
    the application it decides.
    """

    application_id: Reference
    person_id: ResidentId
    decision: Literal["approve", "reject"]
    reasons: list[str] = Field(default_factory=list)
    reviewer: str = Field(min_length=1, max_length=64)
    decided_at: datetime


@event("cn.medins.channels.transfer-out.requested.v1", topics.TRANSFER_REQUESTS)
class TransferOutRequested(Payload):
    """A person asks to move their insurance from this region to another (转出)."""

    transfer_id: Reference
    person_id: ResidentId
    to_region: RegionCode
    channel: Channel
    requested_at: datetime


@event("cn.medins.channels.claim.submitted.v1", topics.REIMBURSEMENT_REQUESTS)
class ClaimSubmitted(Payload):
    """A manual reimbursement claim with photos uploaded online (手工报销)."""

    claim_id: Reference
    person_id: ResidentId
    invoice_no: Reference
    institution_code: Reference
    expense_date: date
    amount_fen: Fen = Field(gt=0)
    channel: Channel
    submitted_at: datetime


@event("cn.medins.channels.notify.preferences.set.v1", topics.NOTIFY_REQUESTS)
class NotificationPreferencesSet(Payload):
    """A person chooses which channels they want to be told on."""

    person_id: ResidentId
    sms: bool
    email: bool
    changed_at: datetime
