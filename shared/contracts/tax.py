"""Contracts produced by the tax authority (contributions are collected by tax, 税务征收)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field, model_validator

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Fen, Reference, ResidentId


@event("cn.gov.tax.contribution.paid.v1", topics.TAX_PAYMENTS)
class ContributionPaymentConfirmed(Payload):
    """The tax authority confirms a contribution for a period; idempotent by payment_ref."""

    payment_ref: Reference
    person_id: ResidentId
    application_id: Reference | None = None
    insurance_type: Literal["resident", "flexible", "employee"]
    period_start: date
    period_end: date
    amount_fen: Fen = Field(gt=0)
    paid_at: datetime

    @model_validator(mode="after")
    def _period_is_ordered(self) -> ContributionPaymentConfirmed:
        if self.period_end < self.period_start:
            raise ValueError("period_end must not be before period_start")
        return self
