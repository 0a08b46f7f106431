"""Contracts produced by the transfer service (its own region's events, not the partner inbox)."""
from __future__ import annotations

from datetime import date
from typing import Literal

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Fen, InsuranceType, Reference, ResidentId
from shared.identity import AnyRegionCode

T = topics.TRANSFER_EVENTS


class TransferEvent(Payload):
    transfer_id: Reference
    person_id: ResidentId
    # Any current division code: a transfer to or from a region not served here goes by letter.
    from_region: AnyRegionCode
    to_region: AnyRegionCode


@event("cn.medins.transfer.request.received.v1", T, person_facing=True)
class TransferRequestReceived(TransferEvent):
    """A transfer-out was accepted here (on application, or started by itself 免申即享)."""

    trigger: Literal["application", "automatic"] = "application"
    due_on: date
    # True when the count ran into a year without a holiday schedule (weekends only taken off
    # there); a transfer.due-date.updated event follows when the schedule is added.
    due_provisional: bool = False


@event("cn.medins.transfer.request.rejected.v1", T, person_facing=True)
class TransferRequestRejected(Payload):
    transfer_id: Reference
    person_id: ResidentId
    reason: str
    # The rule's stable code: the person is told its sentence from the catalogue, not `reason`.
    rule: str | None = None


@event("cn.medins.transfer.dispatched.v1", T)
class TransferDispatched(TransferEvent):
    """The transfer left this region: electronically, or as a contact letter to be posted."""

    mode: Literal["electronic", "paper"]
    contribution_months: int
    account_balance_fen: Fen


@event("cn.medins.transfer.completed.v1", T, person_facing=True)
class TransferCompleted(TransferEvent):
    """The partner took the person in: enrollment here marks the person transferred_out."""

    contribution_months: int
    account_balance_fen: Fen
    completed_on: date


@event("cn.medins.transfer.failed.v1", T, person_facing=True)
class TransferFailed(TransferEvent):
    """The partner refused the transfer-in; the insurance stays here."""

    reason: str


@event("cn.medins.transfer.transfer-in.completed.v1", T)
class TransferInCompleted(TransferEvent):
    """This region took a person in and credited what the partner sent."""

    credited_months: int
    credited_balance_fen: Fen
    # Enrollment here credits these to the person's record and opens a transfer_in period.
    insurance_type: InsuranceType | None = None
    accepted_on: date | None = None
    mode: Literal["electronic", "paper"] = "electronic"
    # What the transfer-out region sent (its information sheet or contact letter); equal to
    # the credited figures, carried so a reader can reconcile without asking.
    sent_months: int | None = None
    sent_balance_fen: Fen | None = None
    tracking_number: str | None = None  # the contact letter's registered mail, when paper


@event("cn.medins.transfer.due-date.updated.v1", T)
class TransferDueDateUpdated(TransferEvent):
    """Due dates recomputed: the year's holiday schedule was added (provisional → definitive),
    or it moved a provisional date."""

    direction: Literal["out", "in"]
    due_on: date | None
    leg_due_on: date | None
    due_provisional: bool
    previous_due_on: date | None = None
    previous_leg_due_on: date | None = None


@event("cn.medins.transfer.coverage-end.requested.v1", T)
class CoverageEndRequested(TransferEvent):
    """An automatic intra-province transfer (免申即享): the person is insured in `to_region`
    from `last_day` + 1, so enrollment here ends the coverage on `last_day` (no gap, no
    overlap) and suspends the person; the transfer-out then starts by itself."""

    last_day: date


@event("cn.medins.transfer.cancelled.v1", T)
class TransferCancelled(TransferEvent):
    direction: Literal["out", "in"]
    reason: str


@event("cn.medins.transfer.overdue.v1", T)
class TransferOverdue(TransferEvent):
    """A statutory clock ran out: the whole transfer, or this office's leg of it."""

    direction: Literal["out", "in"]
    clock: Literal["total", "leg"]
    due_on: date
    working_days_late: int
    due_provisional: bool = False  # counted without the year's holiday schedule


@event("cn.medins.transfer.command.refused.v1", T)
class TransferCommandRefused(Payload):
    """An office command the workflow cannot take (unknown transfer, wrong stage, wrong sum)."""

    transfer_id: Reference
    person_id: ResidentId
    command: str
    rule: str
    reason: str
