"""A timer that runs a service's time-driven rule in a transaction, emitting through the outbox."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

import mode

from shared import clock
from shared.contracts.envelope import Envelope
from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.messaging.consumer import HandlerContext
from shared.messaging.outbox import write_outbox
from shared.observability.logging import get_logger
from shared.settings import PlatformSettings

log = get_logger(__name__)

# The rule gets a context whose cause is the tick, and today's China date; returns work done.
TimedRule = Callable[[HandlerContext, date], Awaitable[int]]


class Timer(mode.Service):
    def __init__(self, db: Database, settings: PlatformSettings, service: str, name: str,
                 rule: TimedRule, interval: float = 60.0, **kwargs: object) -> None:
        self.db = db
        self.settings = settings
        self.service = service
        self.name = name
        self.rule = rule
        self.interval = interval
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                await self.run_once()
            except (RuntimeError, *TRANSIENT_DB_ERRORS) as exc:
                log.warning("timer waiting for the database", timer=self.name, error=str(exc))
            await self.sleep(self.interval)

    async def run_once(self, today: date | None = None) -> int:
        now = clock.now()
        tick = Envelope(id=f"{self.name}:{now.isoformat()}",
                        source=f"/medins/{self.settings.region}/{self.service}/{self.name}",
                        type=f"cn.medins.{self.service}.{self.name}.tick.v1", time=now,
                        correlationid=f"{self.name}:{now.isoformat()}",
                        regioncode=self.settings.region, data={})
        async with self.db.pool.acquire() as conn, conn.transaction():
            ctx = HandlerContext(conn, tick, self.service, self.settings.region,
                                 self.settings.namespace, settings=self.settings,
                                 received_at=now)
            done = await self.rule(ctx, today or clock.china_today())
            await write_outbox(conn, self.db.schema, ctx.emitted)
        return done
