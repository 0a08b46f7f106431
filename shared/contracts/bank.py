"""Contracts produced by the paying bank (the fund's payment side)."""
from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.contracts import topics
from shared.contracts.base import Payload, event
from shared.contracts.common import Reference, ResidentId


@event("cn.bank.payment.result.v1", topics.PAYMENT_RESULTS)
class PaymentResultReported(Payload):
    idempotency_key: str = Field(min_length=1, max_length=100)
    claim_id: Reference
    person_id: ResidentId
    succeeded: bool
    failure_reason: str | None = None
    reported_at: datetime
