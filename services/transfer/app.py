"""Composition root of the transfer service: topics, handlers, the overdue timer, start checks."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date

from services.transfer.handlers import ROUTES, flag_overdue
from services.transfer.repository import SEALED
from services.transfer.views import status_of
from shared.clock import china_today
from shared.contracts import topics
from shared.db.pool import Database
from shared.messaging.admin import TopicPolicy, ensure_topics
from shared.messaging.consumer import HandlerContext
from shared.messaging.runtime import ServiceSpec
from shared.messaging.timer import Timer
from shared.observability.logging import get_logger
from shared.policy import BookCache
from shared.settings import PlatformSettings, TransferSettings
from shared.workdays import WARN_DAYS, refresh_days_left

log = get_logger(__name__)


def _overdue_timer(cache: BookCache) -> Callable[[Database, PlatformSettings], Timer]:
    """The statutory clocks' timer; each tick also re-reads the policy book if its files
    changed (the holiday schedules are re-read by the rule itself)."""
    async def tick(ctx: HandlerContext, today: date) -> int:
        changed, error = cache.refresh()
        if error is not None:
            log.error("policy file not loaded; the last good book stays", error=str(error))
        elif changed:
            log.info("policy book reloaded")
        return await flag_overdue(ctx, today)

    def make(db: Database, settings: PlatformSettings) -> Timer:
        interval = (settings.overdue_check_seconds if isinstance(settings, TransferSettings)
                    else 60.0)
        return Timer(db, settings, "transfer", "overdue", tick, interval=interval)

    return make


async def _prepare(settings: PlatformSettings) -> None:
    """Partners' inboxes exist before anything is written to them, and the days of holiday
    schedule left are known (gauge and log) before a transfer needs them."""
    assert isinstance(settings, TransferSettings)
    inboxes = [topics.physical(topics.TRANSFER_PARTNER, region=partner,
                               namespace=settings.namespace)
               for partner in sorted(settings.interconnected())]
    await ensure_topics(settings.broker_url, inboxes, settings.topic_partitions,
                        policy=TopicPolicy.from_settings(settings))
    coverage = refresh_days_left(china_today())
    if coverage.days_left < WARN_DAYS:
        # Not an error for the person: due dates past it are provisional and recounted later.
        log.warning("holiday schedule runs out soon; due dates past it are provisional",
                    last_day=coverage.last_day.isoformat(), days_left=coverage.days_left)


def spec() -> ServiceSpec:
    settings = TransferSettings()
    # The statutory deadlines come from the region's policy book (settings where it has no
    # version in force).
    cache = BookCache(settings.region, settings.policy_folders())
    return ServiceSpec(
        name="transfer",
        routes=dict(ROUTES),
        consumes=[*topics.TRANSFER_INPUTS, topics.ENROLLMENT_EVENTS],
        status_query=status_of,
        extras=[_overdue_timer(cache)],
        prepare=_prepare,
        policy=cache,
        sealed=SEALED,
    )
