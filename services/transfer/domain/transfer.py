"""Transfer-out rules known so far: only a suspended person, only to another served region."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.identity import REGIONS


class TransferStage(StrEnum):
    REQUESTED = "requested"
    REJECTED = "rejected"


class TransferRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Transfer:
    transfer_id: str
    person_id: str
    from_region: str
    to_region: str
    stage: TransferStage


def request_transfer_out(transfer_id: str, person_id: str, insured_status: str | None,
                         here: str, to_region: str) -> Transfer:
    """SPEC transfer 1: a transfer-out needs the person's insurance here to be stopped."""
    if to_region == here:
        raise TransferRefused("to_region: must differ from this region")
    if to_region not in REGIONS:
        raise TransferRefused(f"to_region: {to_region} is not a known partner region")
    if insured_status != "suspended":
        raise TransferRefused(
            "transfer-out needs the insurance here to be stopped (suspended); "
            f"current status is {insured_status or 'not insured here'}")
    return Transfer(transfer_id, person_id, here, to_region, TransferStage.REQUESTED)
