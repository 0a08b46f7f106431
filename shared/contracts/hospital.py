"""Contracts produced by designated hospitals (定点医疗机构)."""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import AreaCode, Reference, ResidentId


@event("cn.gov.hospital.admission.flagged.v1", topics.ENROLLMENT_FROM_HOSPITALS)
class EmergencyAdmissionFlagged(Payload):
    """A hospital flags an admission as emergency: it counts as a temporary remote filing."""

    admission_id: Reference
    person_id: ResidentId
    hospital_code: Reference
    treatment_area: AreaCode
    admitted_on: date
    emergency: bool


@event("cn.gov.hospital.treatment.recorded.v1", topics.ENROLLMENT_FROM_HOSPITALS)
class TreatmentRecorded(Payload):
    """A treatment that grants a chronic-disease recognition without application (免申即享)."""

    treatment_id: Reference
    person_id: ResidentId
    hospital_code: Reference
    treatment: Literal["organ_transplant_anti_rejection", "tumour_radiotherapy",
                       "tumour_chemotherapy"]
    treated_on: date


class SettlementRecord(BaseModel):
    """One out-of-pocket payment during a settlement outage; checked row by row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: str = Field(min_length=1, max_length=64)
    person_id: str
    expense_date: date
    amount_fen: int = Field(gt=0)
    eligible_fen: int = Field(ge=0)
    hospital_level: Literal[1, 2, 3] = 1
    # Only local outpatient costs go the proactive way [004]; inpatient costs and costs at a
    # place outside the city (treatment_area, none: the institution's own city) are sent to
    # manual reimbursement at a window and reported back as such.
    care: Literal["outpatient", "inpatient"] = "outpatient"
    treatment_area: AreaCode | None = None


@event("cn.gov.hospital.outage-settlements.uploaded.v1", topics.REIMBURSEMENT_FROM_HOSPITALS,
       key_field="institution_code")
class OutageSettlementsUploaded(Payload):
    """A designated institution uploads what people paid out of pocket during a real-time
    settlement outage; the agency reimburses them itself (主动报). Records are keyed by
    (institution_code, record_id). The window that counts is the one the agency declared
    (`cn.medins.agency.settlement-outage.declared.v1`), never outage_from/outage_to, which
    are kept only as what the institution says."""

    batch_id: Reference
    institution_code: Reference
    outage_from: date
    outage_to: date
    records: list[SettlementRecord] = Field(min_length=1, max_length=10_000)


@event("cn.gov.hospital.settlement.recorded.v1", topics.REIMBURSEMENT_FROM_HOSPITALS)
class DirectSettlementRecorded(Payload):
    """A receipt settled directly at the hospital: it can never be claimed again manually."""

    settlement_id: Reference
    person_id: ResidentId
    invoice_no: Reference
    institution_code: Reference
    settled_on: date
    fund_paid_fen: int = Field(ge=0)
    # The deductible (起付线) met by this settlement: with fund_paid_fen it counts towards the
    # person's annual medical totals, so a manual claim later in the year is not charged again.
    deductible_used_fen: int = Field(default=0, ge=0)
    # Which benefit line the fund paid from: a childbirth settlement does not use the medical cap.
    benefit_line: Literal["medical", "maternity_medical"] = "medical"


@event("cn.gov.hospital.birth.recorded.v1", topics.REIMBURSEMENT_FROM_HOSPITALS)
class BirthRecorded(Payload):
    """A birth at a designated hospital: the maternity allowance follows without application."""

    birth_id: Reference  # the hospital's number: unique at that hospital only
    person_id: ResidentId
    institution_code: Reference  # the hospital that recorded it (scopes birth_id)
    birth_date: date
    difficult_birth: bool = False
    babies: int = Field(default=1, ge=1, le=6)


@event("cn.gov.hospital.epidemic-patient.settled.v1", topics.REIMBURSEMENT_FROM_HOSPITALS)
class EpidemicPatientSettled(Payload):
    """Costs of a confirmed or suspected patient of a declared epidemic, settled by the
    hospital: the fund and finance bear them in full, with no claim by the patient [001]."""

    settlement_id: Reference
    person_id: ResidentId
    institution_code: Reference
    diagnosis: Literal["confirmed", "suspected"]
    treated_from: date
    treated_to: date
    cost_fen: int = Field(gt=0)
