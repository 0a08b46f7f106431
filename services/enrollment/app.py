"""Composition root of the enrollment service: topics, handlers, policy book, timers."""
from __future__ import annotations

from services.enrollment.handlers import ROUTES
from services.enrollment.repository import SEALED
from services.enrollment.scheduler import due_changes
from services.enrollment.views import status_of
from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec
from shared.observability.sampled import SampledGauge
from shared.policy import BookCache
from shared.settings import EnrollmentSettings


def spec() -> ServiceSpec:
    settings = EnrollmentSettings()
    # The region's policy book (accident-filing limits, institution changes, recognition
    # postponements, prescriptions); a wrong file stops the start, naming the file and key.
    cache = BookCache(settings.region, settings.policy_folders())
    return ServiceSpec(
        name="enrollment",
        routes=dict(ROUTES),
        # One topic per producer kind (a person's events keyed alike in each), and transfer's.
        consumes=[*topics.ENROLLMENT_INPUTS, topics.TRANSFER_EVENTS],
        status_query=status_of,
        extras=[due_changes(cache)],
        gauges=GAUGES,
        policy=cache,
        sealed=SEALED,
    )


GAUGES = [
    SampledGauge("medins_enrollment_persons", "Insured persons by status", "SELECT status,"
                 " count(*) AS value FROM persons GROUP BY status", ("status",)),
    SampledGauge("medins_enrollment_payments_parked",
                 "Tax payments parked: matching no approved application",
                 "SELECT count(*) AS value FROM payments WHERE state = 'parked'"),
    SampledGauge("medins_enrollment_scheduled_overdue",
                 "Scheduled status changes past their day and not applied (timer stuck?)",
                 "SELECT count(*) AS value FROM scheduled_changes WHERE applied_at IS NULL"
                 " AND effective_on < current_date - 1"),
    SampledGauge("medins_enrollment_awaiting_policy",
                 "Requests waiting because no policy version covers their day",
                 "SELECT count(*) AS value FROM awaiting_policy WHERE resumed_at IS NULL"),
]
