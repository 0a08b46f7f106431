"""asyncpg pool bound to one service schema, run as a faust.Service."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import mode

from shared.observability.logging import get_logger

log = get_logger(__name__)

# Errors after which the same work can succeed later: the database went away or is busy.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def _session(schema: str | None) -> dict[str, str]:
    """Every connection's settings: its schema, and custom plans. A batch's `= ANY($1)`
    lookups are planned for the arrays they get: a generic plan, cached by PostgreSQL while a
    table was small, went on scanning it whole, each row against every element (enrollment's
    applications lookup took 216 ms a batch at 10,000 rows and grew with them)."""
    settings = {"plan_cache_mode": "force_custom_plan"}
    if schema:
        settings["search_path"] = f'"{schema}"'
    return settings


async def connect(dsn: str, schema: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings=_session(schema), **kwargs)


async def close_quietly(conn: asyncpg.Connection | None) -> None:
    """Close a connection that may already be lost; never raises."""
    if conn is None:
        return
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:
        conn.terminate()  # a connection of its own (not a pool's proxy): never raises


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """A pooled connection goes back as it is, after asyncpg's own clean-up (an open
    transaction rolled back, listeners dropped): no reset query, which cost a round trip on
    every release (each batch, each claim and answer of notify's senders). Pooled connections
    keep no session state: locks are transaction-scoped (`pg_advisory_xact_lock`), settings
    `SET LOCAL`, and a LISTEN or a session lock lives on a connection of its own
    (`Database.listen_apart`, the migrations' `connect`)."""


class Database(mode.Service):
    """The service's connection pool; every connection's search_path is its own schema."""

    def __init__(self, dsn: str, schema: str, min_size: int = 1, max_size: int = 8,
                 **kwargs: Any) -> None:
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        delay = 0.2
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size,
                    server_settings=_session(self.schema),
                    reset=_no_session_state,
                )
                return
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("database not reachable yet", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def on_stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def listen_apart(self, channel: str,
                           callback: Callable[..., Any]) -> asyncpg.Connection:
        """A connection outside the pool, listening on `channel`, for a LISTEN (and a session
        lock) held for long: a pooled connection lost to an outage is detached from its
        proxy, whose every call (`is_closed()` too) then raises, so its holder could never
        see it was lost. Close it with `close_quietly`."""
        conn = await connect(self.dsn, self.schema, timeout=10)
        try:
            await conn.add_listener(channel, callback)
        except BaseException:
            conn.terminate()
            raise
        return conn

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database pool used before the service started")
        return self._pool
