"""Composition root of the transfer service."""
from __future__ import annotations

from services.transfer.handlers import ROUTES
from services.transfer.repository import status_of
from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="transfer",
        routes=dict(ROUTES),
        consumes=[topics.TRANSFER_REQUESTS, topics.ENROLLMENT_EVENTS],
        status_query=status_of,
    )
