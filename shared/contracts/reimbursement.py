"""Contracts produced by the reimbursement service."""
from __future__ import annotations

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Fen, Reference, ResidentId

T = topics.REIMBURSEMENT_EVENTS


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
