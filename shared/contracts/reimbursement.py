"""Contracts of the reimbursement service: what it produces; the agency's outage declarations."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field, model_validator

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Fen, Reference, ResidentId

T = topics.REIMBURSEMENT_EVENTS
# What the money is for, so a message names it rightly (a maternity allowance is no
# reimbursement of costs): medical, maternity_medical, maternity_allowance, epidemic.
BenefitLine = Literal["medical", "maternity_medical", "maternity_allowance", "epidemic"]


@event("cn.medins.reimbursement.claim.received.v1", T, person_facing=True)
class ClaimReceived(Payload):
    claim_id: Reference
    person_id: ResidentId
    amount_fen: Fen
    stage: str


@event("cn.medins.reimbursement.claim.rejected.v1", T, person_facing=True)
class ClaimRejected(Payload):
    claim_id: Reference
    person_id: ResidentId
    reasons: list[str]


@event("cn.medins.reimbursement.claim.preliminary-approved.v1", T, person_facing=True)
class ClaimPreliminaryApproved(Payload):
    """审核通过: the person is told to mail the originals."""

    claim_id: Reference
    person_id: ResidentId
    mail_to: str
    materials: list[str]


@event("cn.medins.reimbursement.claim.approved.v1", T, person_facing=True)
class ClaimApproved(Payload):
    claim_id: Reference
    person_id: ResidentId
    version: int
    payable_fen: Fen
    policy_version: str
    overrides: list[str]
    working: list[str]
    benefit_line: BenefitLine = "medical"
    # Reimbursed by the agency from an institution's outage records (notice 004): the person
    # never applied, and is told where they were treated.
    proactive: bool = False
    institution_code: str | None = None
    # The figures of the calculation, so the person reads it in Chinese (`working` is the
    # staff's): absent for an allowance or a top-up.
    eligible_fen: Fen | None = None
    deductible_fen: Fen | None = None
    ratio: str | None = None  # a decimal string, e.g. "0.85"
    cap_remaining_fen: Fen | None = None


@event("cn.medins.reimbursement.claim.paid.v1", T, person_facing=True)
class ClaimPaid(Payload):
    """Paid to the person's own account (money paid to an institution is not told as this)."""

    claim_id: Reference
    person_id: ResidentId
    payable_fen: Fen
    benefit_line: BenefitLine = "medical"
    proactive: bool = False  # as ClaimApproved
    institution_code: str | None = None


@event("cn.medins.reimbursement.claim.payment-failed.v1", T, person_facing=True)
class ClaimPaymentFailed(Payload):
    """Payment to the person's own account failed after the allowed retries: staff and the
    person must act (money owed to an institution fails as InstitutionPaymentFailed)."""

    claim_id: Reference
    person_id: ResidentId
    reason: str
    attempts: int
    benefit_line: BenefitLine = "medical"


@event("cn.medins.reimbursement.institution-payment.failed.v1", T)
class InstitutionPaymentFailed(Payload):
    """Payment to an institution as payee (epidemic full coverage) failed after the allowed
    retries: staff settle it with the institution; the patient owes and does nothing."""

    claim_id: Reference
    person_id: ResidentId
    institution_code: str | None = None
    reason: str
    attempts: int
    benefit_line: BenefitLine = "epidemic"


@event("cn.medins.reimbursement.request.refused.v1", T)
class ClaimRequestRefused(Payload):
    """A stage decision that would skip a stage or act on a closed claim: not applied."""

    claim_id: Reference
    person_id: ResidentId
    reason: str
    rule: str | None = None  # a stable code (services.reimbursement.handlers); reason is staff's


@event("cn.medins.reimbursement.payment.instructed.v1", topics.PAYMENT_INSTRUCTIONS)
class PaymentInstructed(Payload):
    """To the bank: pay once per idempotency key (claim and version), however often sent."""

    idempotency_key: str
    claim_id: Reference
    person_id: ResidentId
    payable_fen: Fen
    attempt: int
    pay_by: date | None = None
    # Who receives the money: the insured person (their bank or social-security-card account)
    # or, for costs the fund bears at the hospital (epidemic coverage), the institution.
    payee: Literal["insured", "institution"] = "insured"
    payee_code: str | None = None  # the institution's code when payee is "institution"


@event("cn.medins.reimbursement.proactive.record-processed.v1", T)
class ProactiveRecordProcessed(Payload):
    """Reported back to the institution, one per record: accepted with the claim, or why not."""

    batch_id: Reference
    institution_code: Reference
    record_id: str
    accepted: bool
    claim_id: str | None
    reason: str
    # proactive: paid by the agency; manual: not covered by proactive reimbursement (inpatient,
    # out of the city), the person claims at a window; awaiting_declaration: kept until the
    # agency declares the outage; rejected: see reason.
    route: Literal["proactive", "manual", "rejected", "awaiting_declaration"] = "proactive"
    pay_by: date | None = None


@event("cn.medins.reimbursement.epidemic.covered.v1", T, person_facing=True)
class EpidemicCostsCovered(Payload):
    """The person is told their epidemic treatment costs are fully borne; nothing to claim."""

    settlement_id: Reference
    person_id: ResidentId
    institution_code: str
    cost_fen: Fen
    override: str


@event("cn.medins.reimbursement.epidemic.refused.v1", T)
class EpidemicSettlementRefused(Payload):
    """Back to the institution: no declared epidemic coverage on the treatment day."""

    settlement_id: Reference
    person_id: ResidentId
    institution_code: str
    reason: str


@event("cn.medins.review.settlement-outage.declared.v1", topics.REIMBURSEMENT_FROM_REVIEW_DESK,
       key_field="outage_id")
class SettlementOutageDeclared(Payload):
    """The agency declares a real-time settlement outage [004]: its window decides which
    uploaded records are reimbursed proactively, and every one is paid by pay_by."""

    outage_id: Reference
    outage_from: date
    outage_to: date
    pay_by: date
    # Empty: every designated institution of the region.
    institution_codes: list[Reference] = Field(default_factory=list)
    reviewer: str = Field(min_length=1, max_length=64)  # the member of staff who declared it
    declared_at: datetime

    @model_validator(mode="after")
    def _ordered(self) -> SettlementOutageDeclared:
        if self.outage_to < self.outage_from:
            raise ValueError("outage_to must not be before outage_from")
        if self.pay_by < self.outage_to:
            raise ValueError("pay_by must not be before outage_to")
        return self
