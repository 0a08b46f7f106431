"""Composition root of the enrollment service: which topics, which handlers."""
from __future__ import annotations

from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec
from services.enrollment.handlers import ROUTES
from services.enrollment.views import status_of


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="enrollment",
        routes=dict(ROUTES),
        consumes=[topics.ENROLLMENT_REQUESTS, topics.TAX_PAYMENTS],
        status_query=status_of,
    )
