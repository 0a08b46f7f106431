"""Composition root of the transfer service: topics, handlers, the overdue timer, start checks."""
from __future__ import annotations

from services.transfer.domain.deadlines import calendar_gap
from services.transfer.handlers import ROUTES, deadline_rules, flag_overdue
from services.transfer.views import status_of
from shared.clock import china_today
from shared.contracts import topics
from shared.db.pool import Database
from shared.messaging.admin import TopicPolicy, ensure_topics
from shared.messaging.runtime import ServiceSpec
from shared.messaging.timer import Timer
from shared.observability.logging import get_logger
from shared.settings import PlatformSettings, TransferSettings
from shared.workdays import default_calendar

log = get_logger(__name__)


def _overdue_timer(db: Database, settings: PlatformSettings) -> Timer:
    interval = settings.overdue_check_seconds if isinstance(settings, TransferSettings) else 60.0
    return Timer(db, settings, "transfer", "overdue", flag_overdue, interval=interval)


async def _prepare(settings: PlatformSettings) -> None:
    """Partners' inboxes exist before anything is written to them, and a missing holiday
    schedule is reported now rather than when a transfer needs it."""
    assert isinstance(settings, TransferSettings)
    inboxes = [topics.physical(topics.TRANSFER_PARTNER, region=partner,
                               namespace=settings.namespace)
               for partner in sorted(settings.interconnected())]
    await ensure_topics(settings.broker_url, inboxes, settings.topic_partitions,
                        policy=TopicPolicy.from_settings(settings))
    gap = calendar_gap(default_calendar(), china_today(), deadline_rules(settings))
    if gap is not None:
        log.error("transfer due dates will fail soon", year=gap.year, error=str(gap))


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="transfer",
        routes=dict(ROUTES),
        consumes=[topics.TRANSFER_REQUESTS, topics.ENROLLMENT_EVENTS, topics.TRANSFER_PARTNER],
        status_query=status_of,
        extras=[_overdue_timer],
        prepare=_prepare,
    )
