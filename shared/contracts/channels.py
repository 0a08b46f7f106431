"""Contracts produced by the service channels and agency staff (applications, reviews)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field, model_validator

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import (
    AreaCode,
    Channel,
    CnMobile,
    CrossProvinceChronicDisease,
    Email,
    EmployerCode,
    Fen,
    Reference,
    RegionCode,
    ResidentId,
)
from shared.identity import AnyRegionCode


@event("cn.medins.channels.enrollment.submitted.v1", topics.ENROLLMENT_FROM_CHANNELS)
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


class StaffDecision(Payload):
    """A reviewer's decision; reasons are what the applicant is told on a rejection."""

    application_id: Reference
    decision: Literal["approve", "reject"]
    reasons: list[str] = Field(default_factory=list)
    reviewer: str = Field(min_length=1, max_length=64)
    decided_at: datetime


@event("cn.medins.review.enrollment.decided.v1", topics.ENROLLMENT_FROM_REVIEW_DESK)
class EnrollmentReviewDecided(StaffDecision):
    """Agency staff's background review (后台审核) of an application.

    It names the person too: messages are keyed by person, so a review can never overtake
    the application it decides.
    """

    person_id: ResidentId


@event("cn.medins.channels.transfer-out.requested.v1", topics.TRANSFER_FROM_CHANNELS)
class TransferOutRequested(Payload):
    """A person asks to move their insurance from this region to another (转出)."""

    transfer_id: Reference
    person_id: ResidentId
    to_region: AnyRegionCode  # any region: one not connected is reached by paper letter
    channel: Channel
    requested_at: datetime


@event("cn.medins.channels.claim.submitted.v1", topics.REIMBURSEMENT_FROM_CHANNELS)
class ClaimSubmitted(Payload):
    """A manual reimbursement claim with photos uploaded online (手工报销)."""

    claim_id: Reference
    person_id: ResidentId
    invoice_no: Reference
    institution_code: Reference
    expense_date: date
    amount_fen: Fen = Field(gt=0)
    # The part the catalogue covers (政策范围内); the whole amount when not given.
    eligible_fen: Fen | None = None
    hospital_level: Literal[1, 2, 3] = 3
    # Where treated; none or inside the insured city means local treatment.
    treatment_area: AreaCode | None = None
    channel: Channel
    submitted_at: datetime
    # Childbirth medical costs are their own claim type and benefit line (生育医疗费用), with
    # their own figures and annual totals; they never use up the medical cap.
    claim_type: Literal["medical", "maternity_medical"] = "medical"


@event("cn.medins.review.claim.decided.v1", topics.REIMBURSEMENT_FROM_REVIEW_DESK)
class ClaimStageDecided(Payload):
    """Staff decide a claim's preliminary review (初审) or verification of the originals."""

    claim_id: Reference
    person_id: ResidentId
    stage: Literal["preliminary_review", "verification"]
    decision: Literal["approve", "reject"]
    reasons: list[str] = Field(default_factory=list)
    reviewer: str = Field(min_length=1, max_length=64)
    decided_at: datetime


@event("cn.medins.channels.claim.materials-mailed.v1", topics.REIMBURSEMENT_FROM_CHANNELS)
class ClaimMaterialsMailed(Payload):
    """The person mailed the originals; the registered-mail tracking number is kept."""

    claim_id: Reference
    person_id: ResidentId
    tracking_no: str = Field(pattern=r"^[A-Z0-9]{8,20}$")
    mailed_at: datetime


@event("cn.medins.channels.notify.preferences.set.v1", topics.NOTIFY_REQUESTS)
class NotificationPreferencesSet(Payload):
    """A person chooses which channels they want to be told on."""

    person_id: ResidentId
    sms: bool
    email: bool
    changed_at: datetime


@event("cn.medins.channels.contribution.stop-requested.v1", topics.ENROLLMENT_FROM_CHANNELS)
class StopContributionRequested(Payload):
    """A resident or flexible worker stops paying (停止缴费): suspended after the paid period."""

    request_id: Reference
    person_id: ResidentId
    channel: Channel
    requested_at: datetime


@event("cn.medins.channels.death-cancellation.applied.v1", topics.ENROLLMENT_FROM_CHANNELS)
class DeathCancellationApplied(Payload):
    """Death cancellation (死亡注销) by the employer, or by an agent for a flexible worker."""

    application_id: Reference
    person_id: ResidentId
    date_of_death: date
    certificate_ref: str = Field(min_length=1, max_length=64)
    applicant: Literal["employer", "agent"]
    employer_code: EmployerCode | None = None
    agent_id: ResidentId | None = None
    agent_mobile: CnMobile | None = None
    applicant_email: Email
    channel: Channel
    submitted_at: datetime

    @model_validator(mode="after")
    def _applicant_details(self) -> DeathCancellationApplied:
        if self.applicant == "employer" and self.employer_code is None:
            raise ValueError("employer_code: required when the employer applies")
        if self.applicant == "agent" and (self.agent_id is None or self.agent_mobile is None):
            raise ValueError("agent_id and agent_mobile: required when an agent applies")
        return self


@event("cn.medins.review.death-cancellation.decided.v1", topics.ENROLLMENT_FROM_REVIEW_DESK)
class DeathCancellationReviewed(StaffDecision):
    person_id: ResidentId


@event("cn.medins.channels.remote-filing.applied.v1", topics.ENROLLMENT_FROM_CHANNELS)
class RemoteTreatmentFilingApplied(Payload):
    """Remote-treatment filing (异地就医备案): temporary, long-term or referral."""

    filing_id: Reference
    person_id: ResidentId
    kind: Literal["temporary", "long_term", "referral"]
    long_term_reason: Literal["retiree", "resident_elsewhere", "posted_elsewhere",
                              "student"] | None = None
    is_student: bool = False
    treatment_area: AreaCode
    start_date: date
    end_date: date | None = None
    chronic_diseases: list[CrossProvinceChronicDisease] = Field(default_factory=list)
    channel: Channel
    submitted_at: datetime


@event("cn.medins.channels.remote-filing.change-requested.v1", topics.ENROLLMENT_FROM_CHANNELS)
class RemoteTreatmentFilingEnded(Payload):
    """The person changes or withdraws a filing (a long-term one stays until this)."""

    filing_id: Reference
    person_id: ResidentId
    requested_at: datetime


@event("cn.medins.channels.chronic-disease.applied.v1", topics.ENROLLMENT_FROM_CHANNELS)
class ChronicDiseaseApplied(Payload):
    """Outpatient chronic disease (门诊慢特病) recognition, or a change of institution.

    `reimbursed_this_month` is asked of the settlement system by the channel: it decides when
    a change of designated institution takes effect.
    """

    application_id: Reference
    person_id: ResidentId
    action: Literal["recognise", "change_institution"]
    disease: str = Field(min_length=1, max_length=64)
    institution_code: Reference
    reimbursed_this_month: bool = False
    channel: Channel
    submitted_at: datetime


@event("cn.medins.review.chronic-disease.decided.v1", topics.ENROLLMENT_FROM_REVIEW_DESK)
class ChronicDiseaseReviewed(StaffDecision):
    person_id: ResidentId


@event("cn.medins.channels.family-aid.authorised.v1", topics.ENROLLMENT_FROM_CHANNELS)
class FamilyAidAuthorised(Payload):
    """An employee lets a close relative spend from their personal account (家庭共济)."""

    authorisation_id: Reference
    person_id: ResidentId
    relative_id: ResidentId
    relative_name: str = Field(min_length=1, max_length=50)
    relationship: Literal["spouse", "parent", "child"]
    relative_region: AreaCode
    commitment_signed: bool
    id_photo_uploaded: bool
    channel: Channel
    submitted_at: datetime


@event("cn.medins.channels.family-aid.revoked.v1", topics.ENROLLMENT_FROM_CHANNELS)
class FamilyAidRevoked(Payload):
    authorisation_id: Reference
    person_id: ResidentId
    revoked_at: datetime


@event("cn.medins.channels.accident-injury.filed.v1", topics.ENROLLMENT_FROM_CHANNELS)
class AccidentInjuryFiled(Payload):
    """Inpatient filing of an accident injury without a liable third party."""

    filing_id: Reference
    person_id: ResidentId
    hospital_code: Reference
    in_city: bool
    admitted_on: date
    injury_description: str = Field(min_length=1, max_length=500)
    no_third_party_declared: bool
    channel: Channel
    submitted_at: datetime
