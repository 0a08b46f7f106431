"""Contracts produced by the transfer service."""
from __future__ import annotations

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Reference, RegionCode, ResidentId

T = topics.TRANSFER_EVENTS


@event("cn.medins.transfer.request.received.v1", T, person_facing=True)
class TransferRequestReceived(Payload):
    transfer_id: Reference
    person_id: ResidentId
    from_region: RegionCode
    to_region: RegionCode


@event("cn.medins.transfer.request.rejected.v1", T, person_facing=True)
class TransferRequestRejected(Payload):
    transfer_id: Reference
    person_id: ResidentId
    reason: str
