"""What falls due by date: scheduled status changes, lapsed periods, deferred changes, and
requests that waited for a policy the agency has since added."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date

import mode

from services.enrollment.handlers import (
    apply_due_changes,
    confirm_provisional_deadlines,
    resume_awaiting_policy,
)
from shared.db.pool import Database
from shared.messaging.consumer import HandlerContext
from shared.messaging.timer import Timer
from shared.observability.logging import get_logger
from shared.policy import BookCache
from shared.settings import EnrollmentSettings, PlatformSettings
from shared.workdays import ScheduleFileError, refresh_days_left

log = get_logger(__name__)


def due_changes(cache: BookCache) -> Callable[[Database, PlatformSettings], mode.Service]:
    def make(db: Database, settings: PlatformSettings) -> mode.Service:
        async def tick(ctx: HandlerContext, today: date) -> int:
            changed, error = cache.refresh()
            if error is not None:
                log.error("policy file not loaded; the previous book stays in use",
                          error=str(error))
            elif changed:
                log.info("policy book re-read", sources=cache.book.sources)
            ctx.policy = cache.book
            try:
                refresh_days_left(today)  # a year's schedule dropped in the folder counts now
            except ScheduleFileError as exc:
                log.error("holiday schedule file not loaded", error=str(exc))
            # Each applied change carries its own cause (the request); the tick only runs it.
            return (await apply_due_changes(ctx, today)
                    + await resume_awaiting_policy(ctx, cache.book)
                    + await confirm_provisional_deadlines(ctx))

        interval = (settings.due_check_seconds if isinstance(settings, EnrollmentSettings)
                    else 60.0)
        return Timer(db, settings, "enrollment", "due-changes", tick, interval)

    return make
