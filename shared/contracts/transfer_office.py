"""Contracts from an agency's transfer office and mail room: info sheets, materials, letters."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Fen, InsuranceType, Reference, ResidentId
from shared.identity import AnyRegionCode

R = topics.TRANSFER_FROM_TRANSFER_OFFICE


class TransferCommand(Payload):
    """Names the transfer as this office knows it; for a transfer-in, with its origin region."""

    transfer_id: Reference
    person_id: ResidentId
    from_region: AnyRegionCode | None = None


@event("cn.medins.transfer-office.info-sheet.issued.v1", R)
class TransferInfoSheetIssued(TransferCommand):
    """The transfer-out office issues the insured person's information sheet (参保信息表):
    the contribution record and the personal-account balance that move with the person."""

    name: str = Field(min_length=1, max_length=64)
    contribution_months: int = Field(ge=0)
    account_balance_fen: Fen
    issued_at: datetime


@event("cn.medins.transfer-office.materials.requested.v1", R)
class TransferMaterialsRequested(TransferCommand):
    """The office waits on the person for missing material: the clocks stop."""

    missing: list[str] = Field(min_length=1)
    requested_at: datetime


@event("cn.medins.transfer-office.materials.supplied.v1", R)
class TransferMaterialsSupplied(TransferCommand):
    """The person supplied what was missing: the clocks run again."""

    supplied_at: datetime


@event("cn.medins.transfer-office.funds.received.v1", R)
class TransferFundsReceived(TransferCommand):
    """The transfer-in office's finance confirms the partner's balance arrived (资金到账)."""

    amount_fen: Fen
    received_at: datetime


@event("cn.medins.transfer-office.letter.tracked.v1", R)
class TransferLetterTracked(TransferCommand):
    """A paper contact letter (联系函) to a partner that is not interconnected: posted by
    registered mail (`sent`) or delivered to the partner's office (`received`)."""

    tracking_number: str = Field(pattern=r"^[A-Z0-9]{8,20}$")
    mail_event: Literal["sent", "received"]
    occurred_at: datetime


@event("cn.medins.transfer-office.paper-reply.recorded.v1", R)
class TransferPaperReplyRecorded(TransferCommand):
    """The partner's answer by letter, keyed in by the office: accepted with what the partner
    credited, or refused with its reason."""

    accepted: bool
    credited_months: int | None = Field(default=None, ge=0)
    credited_balance_fen: Fen | None = None
    reason: str | None = Field(default=None, max_length=500)
    recorded_by: str = Field(min_length=1, max_length=64)


@event("cn.medins.transfer-office.paper-transfer-in.recorded.v1", R)
class PaperTransferInRecorded(Payload):
    """The transfer-in office keys in a contact letter (联系函) and information sheet received
    by post from a region that is not connected: this region's transfer-in runs as for an
    electronic one and ends with transfer-in.completed (mode "paper")."""

    transfer_id: Reference = Field(description="the letter's reference, unique at its sender")
    person_id: ResidentId
    from_region: AnyRegionCode
    name: str = Field(min_length=1, max_length=64)
    insurance_type: InsuranceType
    contribution_months: int = Field(ge=0)
    account_balance_fen: Fen
    tracking_number: str = Field(pattern=r"^[A-Z0-9]{8,20}$")
    received_at: datetime
    recorded_by: str = Field(min_length=1, max_length=64)
