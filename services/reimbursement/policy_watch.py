"""On a timer: re-reads the policy book, resumes what waits for a policy or a declaration."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date

import mode
from prometheus_client import Gauge

from services.reimbursement import repository as repo
from services.reimbursement.handlers import resume_awaiting_declaration, resume_awaiting_policy
from shared.db.pool import Database
from shared.messaging.consumer import HandlerContext
from shared.messaging.timer import Timer
from shared.observability.logging import get_logger
from shared.policy import BookCache
from shared.settings import PlatformSettings

log = get_logger(__name__)

AWAITING = Gauge("medins_claims_awaiting_policy",
                 "Claims waiting because no policy version covers their expense date",
                 ["region"])
DAYS_LEFT = Gauge("medins_policy_days_left",
                  "Days from today with a policy version in force (0: none today)", ["region"])
FILE_ERRORS = Gauge("medins_policy_file_error",
                    "1 while a policy file added or changed cannot be read (the last good "
                    "book stays in use)", ["region"])


def policy_watch(cache: BookCache) -> Callable[[Database, PlatformSettings], mode.Service]:
    def make(db: Database, settings: PlatformSettings) -> mode.Service:
        region = settings.region

        async def tick(ctx: HandlerContext, today: date) -> int:
            changed, error = cache.refresh()
            FILE_ERRORS.labels(region).set(1 if error else 0)
            if error is not None:
                log.error("policy file not loaded; the previous book stays in use",
                          error=str(error))
            elif changed:
                log.info("policy book re-read", sources=cache.book.sources)
            resumed = await resume_awaiting_policy(ctx, cache.book)
            resumed += await resume_awaiting_declaration(ctx, cache.book)
            AWAITING.labels(region).set(await repo.count_awaiting_policy(ctx.conn))
            DAYS_LEFT.labels(region).set(cache.book.days_left(today))
            return resumed

        return Timer(db, settings, "reimbursement", "policy-watch", tick,
                     interval=settings.policy_reload_seconds)

    return make
