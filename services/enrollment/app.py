"""Composition root of the enrollment service: which topics, which handlers."""
from __future__ import annotations

from services.enrollment.handlers import ROUTES
from services.enrollment.scheduler import DueChanges
from services.enrollment.views import status_of
from shared.contracts import topics
from shared.db.pool import Database
from shared.messaging.runtime import ServiceSpec
from shared.settings import PlatformSettings


def _due_changes(db: Database, settings: PlatformSettings) -> DueChanges:
    return DueChanges(db, settings)


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="enrollment",
        routes=dict(ROUTES),
        consumes=[topics.ENROLLMENT_REQUESTS, topics.TAX_PAYMENTS],
        status_query=status_of,
        extras=[_due_changes],
    )
