"""Composition root of the reimbursement service: policy book, topics, handlers."""
from __future__ import annotations

from services.reimbursement.domain.policy import PolicyBook
from services.reimbursement.handlers import routes
from services.reimbursement.repository import status_of
from shared.contracts import topics
from shared.messaging.runtime import ServiceSpec
from shared.settings import ReimbursementSettings


def spec() -> ServiceSpec:
    settings = ReimbursementSettings()
    book = PolicyBook.load(settings.policy_dir, settings.region)  # no policy: no start
    return ServiceSpec(
        name="reimbursement",
        routes=routes(book),
        consumes=[topics.REIMBURSEMENT_REQUESTS, topics.ENROLLMENT_EVENTS,
                  topics.PAYMENT_RESULTS],
        status_query=status_of,
    )
