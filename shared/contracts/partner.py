"""The inter-region transfer contract: what partner regions write into each other's inbox.

Each region reads only its own inbox, `medins.<region>.transfer.partner`; a sender writes into
the inbox of the region it addresses. Messages are CloudEvents 1.0 (structured JSON) keyed by
the person's ID number, with `regioncode` set to the sending region.
"""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Fen, InsuranceType, Reference, RegionCode, ResidentId

INBOX = topics.TRANSFER_PARTNER


class PartnerMessage(Payload):
    """Every partner message names the transfer (unique within its origin) and both ends."""

    transfer_id: Reference
    person_id: ResidentId
    from_region: RegionCode = Field(description="the transfer-out region (A)")
    to_region: RegionCode = Field(description="the transfer-in region (B)")


@event("cn.medins.transfer.partner.transfer-out.v1", INBOX)
class PartnerTransferOut(PartnerMessage):
    """A to B: the person's insurance leaves A; B runs the transfer-in (转入) and answers.

    Written into B's inbox. The contribution record and the personal-account balance are what
    A moves; B credits exactly these and echoes them in its acknowledgement.
    """

    name: str = Field(min_length=1, max_length=64)
    insurance_type: InsuranceType
    contribution_months: int = Field(ge=0, description="缴费年限 in whole months (years x 12)")
    account_balance_fen: Fen = Field(description="personal-account balance moved, in fen")
    trigger: Literal["application", "automatic"]
    started_on: date = Field(description="the day A accepted the transfer; the clocks run from it")
    due_on: date = Field(description="statutory due date of the whole transfer (working days)")
    in_leg_days: int = Field(ge=1, description="working days B has for its part")


@event("cn.medins.transfer.partner.acknowledged.v1", INBOX)
class PartnerTransferAcknowledged(PartnerMessage):
    """B to A: transfer-in done; what B credited, which A reconciles against what it sent."""

    credited_months: int = Field(ge=0)
    credited_balance_fen: Fen
    accepted_on: date


@event("cn.medins.transfer.partner.rejected.v1", INBOX)
class PartnerTransferRejected(PartnerMessage):
    """B to A: transfer-in refused, with the rule and a reason A can tell the person."""

    rule: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)


@event("cn.medins.transfer.partner.cancelled.v1", INBOX)
class PartnerTransferCancelled(PartnerMessage):
    """Either side to the other: the transfer is cancelled (the person died, for one)."""

    reason: str = Field(min_length=1, max_length=500)


@event("cn.medins.transfer.partner.person-enrolled.v1", INBOX)
class PartnerPersonEnrolled(Payload):
    """B to the other regions of its province: this person became active here (免申即享).

    A region that still holds the person's insurance starts the transfer to B by itself.
    """

    person_id: ResidentId
    region: RegionCode
    insurance_type: InsuranceType
    active_since: date
