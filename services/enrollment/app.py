"""Composition root of the enrollment service: which topics, which handlers."""
from __future__ import annotations

from services.enrollment.handlers import ROUTES
from services.enrollment.scheduler import due_changes
from services.enrollment.views import status_of
from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="enrollment",
        routes=dict(ROUTES),
        consumes=[topics.ENROLLMENT_REQUESTS, topics.TAX_PAYMENTS, topics.TRANSFER_EVENTS],
        status_query=status_of,
        extras=[due_changes],
    )
