"""Contracts produced by civil affairs (民政): death records."""
from __future__ import annotations

from datetime import date

from pydantic import Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import ResidentId


@event("cn.gov.civil-affairs.death.recorded.v1", topics.ENROLLMENT_FROM_CIVIL_AFFAIRS)
class DeathRecorded(Payload):
    record_ref: str = Field(min_length=1, max_length=64)
    person_id: ResidentId
    date_of_death: date
