"""Applies scheduled status changes when they fall due (a stop after the paid period)."""
from __future__ import annotations

from datetime import UTC, datetime

import mode

from services.enrollment.handlers import apply_due_changes
from shared.clock import china_today
from shared.contracts.envelope import Envelope
from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.messaging.consumer import HandlerContext
from shared.messaging.outbox import write_outbox
from shared.observability.logging import get_logger
from shared.settings import PlatformSettings

log = get_logger(__name__)


class DueChanges(mode.Service):
    def __init__(self, db: Database, settings: PlatformSettings, interval: float = 60.0,
                 **kwargs: object) -> None:
        self.db = db
        self.settings = settings
        self.interval = interval
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                await self.run_once()
            except (RuntimeError, *TRANSIENT_DB_ERRORS) as exc:
                log.warning("scheduled changes waiting for the database", error=str(exc))
            await self.sleep(self.interval)

    async def run_once(self) -> int:
        # Each applied change carries its own cause (the stop request); this one is a carrier.
        carrier = Envelope(id="scheduler", source="/medins/enrollment/scheduler",
                           type="cn.medins.enrollment.scheduler.tick.v1",
                           time=datetime.now(UTC), correlationid="scheduler",
                           regioncode=self.settings.region, data={})
        async with self.db.pool.acquire() as conn, conn.transaction():
            ctx = HandlerContext(conn, carrier, "enrollment", self.settings.region,
                                 self.settings.namespace)
            applied = await apply_due_changes(ctx, china_today())
            await write_outbox(conn, self.db.schema, ctx.emitted)
        return applied
