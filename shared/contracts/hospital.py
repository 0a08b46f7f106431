"""Contracts produced by designated hospitals (定点医疗机构)."""
from __future__ import annotations

from datetime import date
from typing import Literal

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import AreaCode, Reference, ResidentId


@event("cn.gov.hospital.admission.flagged.v1", topics.ENROLLMENT_REQUESTS)
class EmergencyAdmissionFlagged(Payload):
    """A hospital flags an admission as emergency: it counts as a temporary remote filing."""

    admission_id: Reference
    person_id: ResidentId
    hospital_code: Reference
    treatment_area: AreaCode
    admitted_on: date
    emergency: bool


@event("cn.gov.hospital.treatment.recorded.v1", topics.ENROLLMENT_REQUESTS)
class TreatmentRecorded(Payload):
    """A treatment that grants a chronic-disease recognition without application (免申即享)."""

    treatment_id: Reference
    person_id: ResidentId
    hospital_code: Reference
    treatment: Literal["organ_transplant_anti_rejection", "tumour_radiotherapy",
                       "tumour_chemotherapy"]
    treated_on: date
