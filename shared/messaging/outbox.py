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
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from shared.db.pool import TRANSIENT_DB_ERRORS, Database, close_quietly
from shared.messaging.admin import bootstrap_servers, kafka_client_options
from shared.observability.logging import get_logger
from shared.observability.metrics import (
    OUTBOX_OLDEST_SECONDS,
    OUTBOX_PENDING,
    OUTBOX_PUBLISHED,
    OUTBOX_SET_ASIDE,
)
from shared.settings import PlatformSettings

log = get_logger(__name__)

# Failures no retry can mend: the row is set aside (after the grace below for a missing topic,
# which an operator may still create) instead of holding up every row behind it.
PERMANENT_ERRORS = (UnknownTopicOrPartitionError, InvalidTopicError, MessageSizeTooLargeError,
                    RecordListTooLargeError, TopicAuthorizationFailedError)


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


# Keys whose partition is remembered: a person's events are written close together, so a
# small cache catches the repeats; at 200,000 keys it was most of the enrollment worker's
# memory growth in the soak benchmark (+21.3% over 1,000,000 events; +3.7% at 20,000).
PARTITION_CACHE_KEYS = 20_000


class OutboxRelay(mode.Service):
    """Publishes outbox rows in id order, in batches, and deletes them once acknowledged.

    One relay per schema holds an advisory lock, so replicas never publish out of order.
    A crash after publishing and before deleting republishes: consumers dedupe by event id.
    """

    def __init__(self, db: Database, broker_url: str, service: str,
                 poll_seconds: float = 1.0, batch_size: int = 2000,
                 set_aside_after_seconds: float = 300.0, idempotence: bool = False,
                 **kwargs: object) -> None:
        self.db = db
        self.broker_url = broker_url
        self.service_name = service
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.set_aside_after_seconds = set_aside_after_seconds
        self.idempotence = idempotence
        self._wake = asyncio.Event()
        self._partitions: dict[tuple[str, int, bytes], int] = {}
        # Rows the broker acknowledged whose delete has not been committed yet.
        self._acked_not_deleted: set[int] = set()
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        super().__init__(**kwargs)  # type: ignore[arg-type]

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.broker_url),
            acks="all", linger_ms=5, max_batch_size=256 * 1024,
            enable_idempotence=self.idempotence,
            # TLS and SASL as every other client of this process (MEDINS_KAFKA_*).
            **kafka_client_options(PlatformSettings()),
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        await self._release_listener()
        if self._producer is not None:
            await self._producer.stop()

    async def _hold_lock(self) -> None:
        """Open the listening connection that also holds the single-relay lock."""
        conn = await self.db.listen_apart(notify_channel(self.db.schema),
                                          lambda *_: self._wake.set())
        try:
            conn_lock = zlib.crc32(f"relay:{self.db.schema}".encode())
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", conn_lock):
                await self.sleep(self.poll_seconds)
                if self.should_stop:
                    await close_quietly(conn)
                    return
        except BaseException:
            conn.terminate()
            raise
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
        await close_quietly(conn)  # its session's lock goes with it

    @mode.Service.task
    async def _measure(self) -> None:
        """Backlog, oldest row and set-aside rows, read from the table every few seconds, so
        they show (and alert) exactly when publishing is not working."""
        while not self.should_stop:
            try:
                await self.measure()
            except Exception as exc:  # the database is away: the relay loop says so
                log.debug("outbox measure skipped", error=repr(exc))
            await self.sleep(max(self.poll_seconds, 5.0))

    async def measure(self) -> None:
        async with self.db.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                " AS oldest, (SELECT count(*) FROM outbox_set_aside) AS aside FROM outbox")
        OUTBOX_PENDING.labels(self.service_name).set(row["n"])
        OUTBOX_OLDEST_SECONDS.labels(self.service_name).set(float(row["oldest"]))
        OUTBOX_SET_ASIDE.labels(self.service_name).set(row["aside"])

    async def _missing_topics(self, topics: set[str]) -> set[str]:
        """Topics the broker does not have; asks for metadata only when one is not cached."""
        assert self._producer is not None
        known = self._producer.client.cluster.topics()
        if topics <= known:
            return set()
        cluster = await self._producer.client.fetch_all_metadata()
        return topics - cluster.topics()

    async def publish_once(self) -> int:
        """Publish a batch in id order; a row that fails for a permanent reason is recorded
        against the row (and set aside once it is old enough) while the others go on."""
        assert self._producer is not None
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                # Rows that failed go last, so a backlog of them never crowds out the rest.
                "SELECT id, topic, key, value, headers, created_at FROM outbox"
                " ORDER BY attempts > 0, id LIMIT $1", self.batch_size)
            if not rows:
                return 0
            # Acknowledged by the broker before the database went away and took the delete
            # with it: deleted now, not published a second time.
            acked = [r["id"] for r in rows if r["id"] in self._acked_not_deleted]
            rows = [r for r in rows if r["id"] not in self._acked_not_deleted]
            missing = await self._missing_topics({r["topic"] for r in rows})
            failed: dict[int, BaseException] = {
                r["id"]: UnknownTopicOrPartitionError(f"topic {r['topic']} does not exist")
                for r in rows if r["topic"] in missing}
            sendable = [r for r in rows if r["id"] not in failed]
            done, suspects = await self._send_batches(sendable)
            if suspects:
                # A batch the broker refused for good: its rows one by one, so only the row
                # at fault is recorded against (and set aside), the others go out.
                one_by_one, failed_rows = await self._send_each(
                    [r for r in sendable if r["id"] in suspects])
                done += one_by_one
                failed.update(failed_rows)
            if len(self._acked_not_deleted) > 100_000:
                self._acked_not_deleted.clear()  # at worst republished: consumers dedupe by id
            self._acked_not_deleted.update(done)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", acked + done)
            self._acked_not_deleted.difference_update(acked + done)
            OUTBOX_PUBLISHED.labels(self.service_name).inc(len(done))
            if failed:
                await self._record_failures(conn, rows, failed)
            return len(done)

    def _partition(self, topic: str, key: bytes | None) -> int:
        """The partition Kafka's default partitioner gives the key (murmur2; random without
        a key), remembered per key: a person's events follow one another, and hashing in
        pure Python costs more than the rest of handing a record over."""
        assert self._producer is not None
        cluster = self._producer.client.cluster
        partitions = sorted(cluster.partitions_for_topic(topic) or ())
        if key is None:
            available = sorted(cluster.available_partitions_for_topic(topic) or partitions)
            return int(self._producer._partitioner(None, partitions, available))
        cache_key = (topic, len(partitions), key)
        found = self._partitions.get(cache_key)
        if found is None:
            if len(self._partitions) >= PARTITION_CACHE_KEYS:
                self._partitions.clear()
            found = self._partitions[cache_key] = int(
                self._producer._partitioner(key, partitions, partitions))
        return found

    async def _send_batches(self, rows: list[asyncpg.Record]) -> tuple[list[int], set[int]]:
        """Rows handed over a record batch per partition (in id order within each), not one
        call per record: (ids acknowledged, ids of batches refused for good)."""
        assert self._producer is not None
        by_partition: dict[tuple[str, int], list[asyncpg.Record]] = {}
        suspects: set[int] = set()
        limit = self._producer._max_request_size
        for topic in {r["topic"] for r in rows}:
            # Metadata for each topic first (a topic created since the last fetch has none).
            await self._producer.partitions_for(topic)
        for r in rows:
            if len(r["value"]) + len(r["key"] or b"") >= limit:
                # Over the producer's request size: a batch would not say which record is
                # too large (and a lenient broker would take it); the one-by-one path does.
                suspects.add(r["id"])
                continue
            by_partition.setdefault((r["topic"], self._partition(r["topic"], r["key"])),
                                    []).append(r)
        sent: list[tuple[list[int], asyncio.Future[object]]] = []
        for (topic, partition), members in by_partition.items():
            batch, ids = self._producer.create_batch(), []
            for r in members:
                headers = _kafka_headers(r)
                if batch.append(key=r["key"], value=r["value"], timestamp=None,
                                headers=headers) is None:
                    sent.append((ids, await self._producer.send_batch(
                        batch, topic, partition=partition)))
                    batch, ids = self._producer.create_batch(), []
                    batch.append(key=r["key"], value=r["value"], timestamp=None,
                                 headers=headers)
                ids.append(r["id"])
            sent.append((ids, await self._producer.send_batch(batch, topic,
                                                              partition=partition)))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        done: list[int] = []
        for (ids, _), result in zip(sent, results, strict=True):
            if isinstance(result, PERMANENT_ERRORS):
                suspects.update(ids)
            elif isinstance(result, BaseException):
                raise result  # the broker is away: keep every row, try again
            else:
                done += ids
        return done, suspects

    async def _send_each(self, rows: list[asyncpg.Record]
                         ) -> tuple[list[int], dict[int, BaseException]]:
        assert self._producer is not None
        failed: dict[int, BaseException] = {}
        sent: list[tuple[int, asyncio.Future[object]]] = []
        for r in rows:
            try:
                future = await self._producer.send(
                    r["topic"], r["value"], key=r["key"],
                    headers=_kafka_headers(r) or None)
            except PERMANENT_ERRORS as exc:
                failed[r["id"]] = exc
            else:
                sent.append((r["id"], future))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        done = []
        for (row_id, _), result in zip(sent, results, strict=True):
            if isinstance(result, PERMANENT_ERRORS):
                failed[row_id] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                done.append(row_id)
        return done, failed

    async def _record_failures(self, conn: asyncpg.Connection, rows: list[asyncpg.Record],
                               failed: dict[int, BaseException]) -> None:
        by_id = {r["id"]: r for r in rows}
        aside = [i for i, exc in failed.items()
                 if not isinstance(exc, UnknownTopicOrPartitionError)
                 or _age_seconds(by_id[i]) >= self.set_aside_after_seconds]
        async with conn.transaction():
            await conn.execute(
                "UPDATE outbox o SET attempts = attempts + 1, last_error = f.error"
                " FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id",
                list(failed), [_describe(e) for e in failed.values()])
            if aside:
                await conn.execute(
                    "WITH moved AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING *)"
                    " INSERT INTO outbox_set_aside (id, topic, key, value, headers, created_at,"
                    " attempts, reason) SELECT id, topic, key, value, headers, created_at,"
                    " attempts, last_error FROM moved", aside)
        for row_id, exc in failed.items():
            log.error("outbox row not publishable", row=row_id, topic=by_id[row_id]["topic"],
                      error=_describe(exc), set_aside=row_id in aside)


def _kafka_headers(row: asyncpg.Record) -> list[tuple[str, bytes]]:
    """An outbox row's headers (JSON pairs of text) as Kafka takes them."""
    return [(k, v.encode()) for k, v in json.loads(row["headers"])]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _age_seconds(row: asyncpg.Record) -> float:
    from datetime import UTC, datetime

    return (datetime.now(UTC) - row["created_at"]).total_seconds()


async def set_aside_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, topic, length(value) AS bytes, created_at, attempts,"
                            " reason, set_aside_at FROM outbox_set_aside ORDER BY id")


async def retry_set_aside(conn: asyncpg.Connection, ids: list[int] | None) -> int:
    """Put set-aside rows back in the outbox under their own ids, so they go out in their
    original order (the fix, say a created topic, is the operator's)."""
    async with conn.transaction():
        moved = await conn.fetch(
            "WITH back AS (DELETE FROM outbox_set_aside WHERE $1::bigint[] IS NULL"
            " OR id = ANY($1::bigint[]) RETURNING *) INSERT INTO outbox (id, topic, key, value,"
            " headers, created_at, attempts, last_error) SELECT id, topic, key, value, headers,"
            " created_at, 0, NULL FROM back RETURNING id", ids)
    return len(moved)
