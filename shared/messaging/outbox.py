"""Transactional outbox: rows written with the state change, published by a relay."""
from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import mode
from aiokafka import AIOKafkaProducer

from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.messaging.admin import bootstrap_servers
from shared.observability.logging import get_logger
from shared.observability.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED

log = get_logger(__name__)


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)


def notify_channel(schema: str) -> str:
    return f"outbox_{zlib.crc32(schema.encode()):x}"


async def write_outbox(conn: asyncpg.Connection, schema: str,
                       messages: Sequence[OutboxMessage]) -> None:
    """Insert in the caller's transaction; the NOTIFY reaches the relay only on commit."""
    if not messages:
        return
    await conn.copy_records_to_table(
        "outbox",
        schema_name=schema,
        columns=["topic", "key", "value", "headers"],
        records=[(m.topic, m.key, m.value, json.dumps(list(m.headers))) for m in messages],
    )
    await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))


class OutboxRelay(mode.Service):
    """Publishes outbox rows in id order, in batches, and deletes them once acknowledged.

    One relay per schema holds an advisory lock, so replicas never publish out of order.
    A crash after publishing and before deleting republishes: consumers dedupe by event id.
    """

    def __init__(self, db: Database, broker_url: str, service: str,
                 poll_seconds: float = 1.0, batch_size: int = 2000, **kwargs: object) -> None:
        self.db = db
        self.broker_url = broker_url
        self.service_name = service
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        super().__init__(**kwargs)  # type: ignore[arg-type]

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.broker_url),
            acks="all", linger_ms=5, max_batch_size=256 * 1024,
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        if self._producer is not None:
            await self._producer.stop()

    async def _hold_lock(self) -> None:
        """Open the listening connection that also holds the single-relay lock."""
        conn = await self.db.pool.acquire()
        conn_lock = zlib.crc32(f"relay:{self.db.schema}".encode())
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", conn_lock):
            await self.sleep(self.poll_seconds)
            if self.should_stop:
                await self.db.pool.release(conn)
                return
        await conn.add_listener(notify_channel(self.db.schema), lambda *_: self._wake.set())
        self._listener = conn

    @mode.Service.task
    async def _run(self) -> None:
        delay = 0.2
        while not self.should_stop:
            try:
                if self._listener is None or self._listener.is_closed():
                    self._listener = None
                    await self._hold_lock()
                    continue
                self._wake.clear()
                published = await self.publish_once()
                delay = 0.2
                if published < self.batch_size:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                    except TimeoutError:
                        pass
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("outbox relay waiting for the database", error=str(exc))
                if self._listener is not None:
                    await self._release_listener()
                await self.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # broker errors: keep rows, try again
                log.warning("outbox relay could not publish", error=repr(exc))
                await self.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _release_listener(self) -> None:
        conn, self._listener = self._listener, None
        try:
            await self.db.pool.release(conn)  # type: ignore[arg-type]
        except Exception:
            conn.terminate()  # type: ignore[union-attr]

    async def publish_once(self) -> int:
        assert self._producer is not None
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT $1",
                self.batch_size,
            )
            if not rows:
                OUTBOX_PENDING.labels(self.service_name).set(0)
                return 0
            futures = [
                await self._producer.send(
                    r["topic"], r["value"], key=r["key"],
                    headers=[(k, v.encode()) for k, v in json.loads(r["headers"])] or None,
                )
                for r in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])",
                               [r["id"] for r in rows])
            OUTBOX_PUBLISHED.labels(self.service_name).inc(len(rows))
            # Counting is only worth a query when the batch was full, i.e. a backlog is likely.
            OUTBOX_PENDING.labels(self.service_name).set(
                await conn.fetchval("SELECT count(*) FROM outbox")
                if len(rows) == self.batch_size else 0)
            return len(rows)
