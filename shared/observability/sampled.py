"""Gauges read from a service's own tables on a timer: true whatever publishing is doing."""
from __future__ import annotations

from dataclasses import dataclass

import mode
from prometheus_client import Gauge

from shared.db.pool import Database
from shared.observability.logging import get_logger

log = get_logger(__name__)
_GAUGES: dict[str, Gauge] = {}


@dataclass(frozen=True)
class SampledGauge:
    """`sql` returns rows of the label columns, in `labels` order, and a `value` column."""

    name: str
    documentation: str
    sql: str
    labels: tuple[str, ...] = ()

    def gauge(self) -> Gauge:
        if self.name not in _GAUGES:  # one registration per process, however many apps
            _GAUGES[self.name] = Gauge(self.name, self.documentation, list(self.labels))
        return _GAUGES[self.name]


class GaugeSampler(mode.Service):
    def __init__(self, db: Database, gauges: list[SampledGauge], interval: float = 15.0,
                 **kwargs: object) -> None:
        self.db = db
        self.gauges = gauges
        self.interval = interval
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                await self.sample()
            except Exception as exc:  # the database is away: other alerts say so
                log.debug("gauges not sampled", error=repr(exc))
            await self.sleep(self.interval)

    async def sample(self) -> None:
        async with self.db.pool.acquire() as conn:
            for spec in self.gauges:
                gauge = spec.gauge()
                rows = await conn.fetch(spec.sql)
                if not spec.labels:
                    gauge.set(rows[0]["value"] if rows else 0)
                    continue
                seen = set()
                for row in rows:
                    key = tuple(str(row[label]) for label in spec.labels)
                    seen.add(key)
                    gauge.labels(*key).set(row["value"])
                # A label value that vanished from the table is now zero, not its last value.
                for labels in list(gauge._metrics):  # noqa: SLF001 - prometheus_client
                    if labels not in seen:
                        gauge.labels(*labels).set(0)
