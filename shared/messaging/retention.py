"""Retention: deletes processed-message ids and set-aside outbox rows past their age, in batches."""
from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg
import mode
from prometheus_client import Counter, Gauge

from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.observability.logging import get_logger
from shared.observability.masking import mask_text, names_in_bytes
from shared.settings import PlatformSettings

log = get_logger(__name__)

# The pool not started yet (RuntimeError) or the database away: the next pass tries again.
_WAIT_FOR_DATABASE: tuple[type[BaseException], ...] = (RuntimeError, *TRANSIENT_DB_ERRORS)

RETENTION_PRUNED = Counter(
    "medins_retention_pruned_total",
    "Rows deleted by the retention job because they were older than their retention",
    ["service", "table"],
)
RETENTION_LAST_RUN = Gauge(
    "medins_retention_last_run_timestamp_seconds",
    "When the retention job last finished a pass over the service's tables (or, before its "
    "first, when it started): alert RetentionNotRunning when this grows old",
    ["service"],
)


@dataclass(frozen=True)
class Rule:
    """One table's retention: rows whose `column` is older than `days` go."""

    table: str
    column: str
    days: float


@dataclass(frozen=True)
class RetentionPolicy:
    processed_days: float = 180
    set_aside_days: float = 90
    batch_size: int = 5000

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> RetentionPolicy:
        return cls(settings.retention_processed_days, settings.retention_set_aside_days,
                   settings.retention_batch_size)

    def rules(self) -> list[Rule]:
        # The outbox itself is never pruned: a row still there has not been published, and
        # the relay deletes each row once the broker acknowledged it.
        return [Rule("processed_messages", "processed_at", self.processed_days),
                Rule("outbox_set_aside", "set_aside_at", self.set_aside_days)]


async def prune(conn: asyncpg.Connection, policy: RetentionPolicy, *, service: str = "",
                dry_run: bool = False) -> dict[str, int]:
    """Delete (or, dry, count) the rows of the connection's schema past their retention.

    Ages are measured by the database's clock, which stamped the rows: the platform's own
    clock can be set to another day (MEDINS_CLOCK_START) and would prune the wrong rows.
    Each batch is its own short transaction, so pruning a large backlog never holds locks
    or a huge transaction against the consumers; SKIP LOCKED lets replicas prune side by side.
    """
    pruned: dict[str, int] = {}
    for rule in policy.rules():
        older = f"{rule.column} < now() - make_interval(secs => $1)"
        seconds = rule.days * 86400.0
        if dry_run:
            pruned[rule.table] = await conn.fetchval(
                f"SELECT count(*) FROM {rule.table} WHERE {older}", seconds)
            continue
        total = 0
        while True:
            rows = await conn.fetch(
                f"DELETE FROM {rule.table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {rule.table}"
                f" WHERE {older} LIMIT $2 FOR UPDATE SKIP LOCKED))"
                + (" RETURNING id, topic, reason, value" if rule.table == "outbox_set_aside"
                   else " RETURNING 1"),
                seconds, policy.batch_size)
            if rule.table == "outbox_set_aside":
                # Each was an unpublished event or dead letter: leave a trace of what went.
                for r in rows:
                    log.warning("set-aside outbox row pruned", row=r["id"], topic=r["topic"],
                                reason=mask_text(r["reason"], names_in_bytes(r["value"])),
                                service=service)
            total += len(rows)
            RETENTION_PRUNED.labels(service, rule.table).inc(len(rows))
            if len(rows) < policy.batch_size:
                break
        pruned[rule.table] = total
    return pruned


class Pruner(mode.Service):
    """Runs `prune` for one service's schema every `interval` seconds, in every worker."""

    def __init__(self, db: Database, settings: PlatformSettings, service: str,
                 interval: float | None = None, **kwargs: object) -> None:
        self.db = db
        self.service = service
        self.policy = RetentionPolicy.from_settings(settings)
        self.interval = settings.retention_interval_seconds if interval is None else interval
        super().__init__(**kwargs)  # type: ignore[arg-type]

    async def on_start(self) -> None:
        # A job that fails from its first pass must still show as not running: the alert
        # measures from here until a pass succeeds.
        RETENTION_LAST_RUN.labels(self.service).set_to_current_time()

    @mode.Service.task
    async def _run(self) -> None:
        # The first pass waits a random part of the interval (at most a minute): workers
        # starting together do not all prune at once, and start-up is not slowed by it.
        await self.sleep(random.uniform(0.1, 1.0) * min(self.interval, 60.0))
        while not self.should_stop:
            try:
                await self.run_once()
            except _WAIT_FOR_DATABASE as exc:
                log.warning("retention waiting for the database", error=str(exc))
            except asyncpg.PostgresError as exc:
                # A schema still being migrated, say: the next pass tries again.
                log.error("retention pass failed", error=repr(exc))
            await self.sleep(self.interval)

    async def run_once(self) -> dict[str, int]:
        async with self.db.pool.acquire() as conn:
            pruned = await prune(conn, self.policy, service=self.service)
        RETENTION_LAST_RUN.labels(self.service).set_to_current_time()
        if any(pruned.values()):
            log.info("retention pruned old rows", service=self.service, **pruned)
        return pruned


def pruner(db: Database, settings: PlatformSettings, service: str) -> Pruner | None:
    """The worker's pruning job, or None when MEDINS_RETENTION_INTERVAL_SECONDS is 0."""
    if settings.retention_interval_seconds <= 0:
        return None
    return Pruner(db, settings, service)


async def prune_schemas(settings: PlatformSettings, services: list[str], regions: list[str],
                        dry_run: bool = False) -> dict[str, dict[str, int]]:
    """`medins prune`: each service schema of each region that exists, by `<service>@<region>`."""
    from shared.db.pool import connect

    policy = RetentionPolicy.from_settings(settings)
    results: dict[str, dict[str, int]] = {}
    conn = await connect(settings.database_url)
    try:
        for region in regions:
            for service in services:
                schema = settings.schema_for(service, region)
                if not await conn.fetchval(
                        "SELECT to_regclass(quote_ident($1) || '.processed_messages') IS NOT NULL"
                        " AND to_regclass(quote_ident($1) || '.outbox_set_aside') IS NOT NULL",
                        schema):
                    continue  # not migrated here: nothing to prune
                await conn.execute(f'SET search_path TO "{schema}"')
                results[f"{service}@{region}"] = await prune(conn, policy, service=service,
                                                             dry_run=dry_run)
    finally:
        await conn.close()
    return results
