"""Contracts produced by employers' online service (单位网上经办)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.channels import StaffDecision
from shared.contracts.common import Channel, EmployerCode, Reference, RegionCode

BY_EMPLOYER = topics.ENROLLMENT_FROM_EMPLOYERS


@event("cn.medins.employer.registered.v1", BY_EMPLOYER, key_field="employer_code")
class EmployerRegistered(Payload):
    """An employer enrolls (单位参保登记)."""

    employer_code: EmployerCode
    name: str = Field(min_length=1, max_length=100)
    region_code: RegionCode
    contact_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    channel: Channel
    submitted_at: datetime


class RosterRow(BaseModel):
    """One staff change. Fields are checked per row, so a bad row cannot sink the roster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row: int = Field(ge=1)
    action: Literal["increase", "decrease", "retire"]
    person_id: str
    name: str = ""
    mobile: str = ""
    email: str | None = None
    effective_on: date


@event("cn.medins.employer.roster.submitted.v1", BY_EMPLOYER, key_field="employer_code")
class EmployerRosterSubmitted(Payload):
    """Staff increase and decrease (人员增减) and retirement (在职转退休), many rows at once."""

    roster_id: Reference
    employer_code: EmployerCode
    rows: list[RosterRow] = Field(min_length=1, max_length=5000)
    submitted_at: datetime


@event("cn.medins.employer.civil-servant-benefit.applied.v1", BY_EMPLOYER,
       key_field="employer_code")
class CivilServantBenefitApplied(Payload):
    """Registration for civil-servant medical benefits (公务员医疗补助), reviewed on materials."""

    application_id: Reference
    employer_code: EmployerCode
    materials: list[str] = Field(min_length=1)
    submitted_at: datetime


@event("cn.medins.review.civil-servant-benefit.decided.v1", topics.ENROLLMENT_FROM_REVIEW_DESK,
       key_field="employer_code")
class CivilServantBenefitReviewed(StaffDecision):
    employer_code: EmployerCode


@event("cn.medins.employer.wage-base.reported.v1", topics.REIMBURSEMENT_FROM_EMPLOYERS,
       key_field="employer_code")
class EmployerWageBaseReported(Payload):
    """The employer's average monthly wage of a year, from its contribution data (缴费基数)."""

    employer_code: EmployerCode
    year: int = Field(ge=2000, le=2100)
    average_monthly_wage_fen: int = Field(gt=0)
