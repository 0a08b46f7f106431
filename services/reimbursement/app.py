"""Composition root of the reimbursement service."""
from __future__ import annotations

from services.reimbursement.handlers import ROUTES
from services.reimbursement.repository import status_of
from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="reimbursement",
        routes=dict(ROUTES),
        consumes=[topics.REIMBURSEMENT_REQUESTS, topics.ENROLLMENT_EVENTS],
        status_query=status_of,
    )
