"""Field types shared by contracts: identifiers, channels, money, insurance types."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.identity import CnMobile, EmployerCode, RegionCode, ResidentId

__all__ = ["CnMobile", "RegionCode", "ResidentId", "Channel", "InsuranceType", "Fen", "Email",
           "Reference", "InsuredStatus", "CrossProvinceChronicDisease", "AreaCode",
           "EmployerCode"]

Channel = Literal["wechat", "alipay", "national_app", "phone", "window"]
InsuranceType = Literal["employee", "resident", "flexible"]
InsuredStatus = Literal["none", "pending", "active", "suspended", "terminated", "transferred_out"]
# Money is whole fen (分): never float.
Fen = Annotated[int, Field(ge=0, description="amount in fen (1/100 yuan), an integer")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Reference = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]

# The five outpatient chronic diseases settled directly across provinces (SPEC enrollment 5).
CrossProvinceChronicDisease = Literal[
    "hypertension", "diabetes", "malignant_tumour_outpatient", "uraemia_dialysis",
    "organ_transplant_anti_rejection",
]
# Any 6-digit GB/T 2260 code: treatment may happen in a region this platform does not serve.
AreaCode = Annotated[str, Field(pattern=r"^\d{6}$")]
