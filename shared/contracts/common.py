"""Field types shared by contracts: identifiers, channels, money, insurance types."""
from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

from pydantic import Field

from shared.identity import CnMobile, EmployerCode, RegionCode, ResidentId

__all__ = ["CnMobile", "RegionCode", "ResidentId", "Channel", "InsuranceType", "Fen", "Email",
           "Reference", "InsuredStatus", "CrossProvinceChronicDisease", "AreaCode",
           "EmployerCode", "sender_scoped", "own_reference", "request_id", "MINE", "OTHERS"]

Channel = Literal["wechat", "alipay", "national_app", "phone", "window"]
InsuranceType = Literal["employee", "resident", "flexible"]
InsuredStatus = Literal["none", "pending", "active", "suspended", "terminated", "transferred_out"]
# Money is whole fen (分): never float.
Fen = Annotated[int, Field(ge=0, description="amount in fen (1/100 yuan), an integer")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
_REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Reference = Annotated[str, Field(pattern=_REFERENCE)]


def sender_scoped(prefix: str, sender: str, number: str) -> str:
    """The platform's id for an outside sender's number, scoped by the sender (the same number
    from two senders is two things): `prefix-sender-number`, or, when that is not a valid
    reference, the sender's first 32 characters and a digest of both."""
    plain = f"{prefix}-{sender}-{number}"
    if re.match(_REFERENCE, plain):
        return plain
    digest = hashlib.sha256(f"{sender}\x00{number}".encode()).hexdigest()[:24]
    return f"{prefix}-{sender[:32]}-{digest}"


def own_reference(reference: str, cause_id: str) -> str:
    """The id of a person's request whose channel reference another person's request already
    has (a channel's references are unique per person only): the reference and a suffix of
    the request's own event, still a valid reference (64 characters at most)."""
    suffix = hashlib.sha256(f"{reference}\x00{cause_id}".encode()).hexdigest()[:8]
    return f"{reference[:55]}-{suffix}"


# Who already holds a request's channel reference: the same person, or another one.
MINE, OTHERS = "mine", "others"


def request_id(reference: str, cause_id: str, holder: str | None) -> str | None:
    """The id a request sent under a channel's `reference` takes: the reference itself when
    free, one of its own when another person's request holds it, None when the same person's
    does (the same request again)."""
    if holder == MINE:
        return None
    return own_reference(reference, cause_id) if holder == OTHERS else reference

# The five outpatient chronic diseases settled directly across provinces (SPEC enrollment 5).
CrossProvinceChronicDisease = Literal[
    "hypertension", "diabetes", "malignant_tumour_outpatient", "uraemia_dialysis",
    "organ_transplant_anti_rejection",
]
# Any 6-digit GB/T 2260 code: treatment may happen in a region this platform does not serve.
AreaCode = Annotated[str, Field(pattern=r"^\d{6}$")]
