"""Idempotent batched consumer: validate, dedupe, handle, emit via outbox, dead-letter, retry."""
from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import faust
from prometheus_client import Counter
from structlog.contextvars import bound_contextvars

from shared import clock
from shared.contracts import EVENT_TYPES, ContractError, Envelope, Payload, parse_event
from shared.contracts.envelope import derived_id, new_envelope
from shared.contracts.topics import DEAD_LETTER, logical, physical
from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.messaging.batches import run_batches
from shared.messaging.dead_letters import seal_letter
from shared.messaging.outbox import OutboxMessage, write_outbox
from shared.observability.logging import get_logger
from shared.observability.masking import mask_text, masking_names, names_in, names_in_bytes
from shared.observability.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_FAILED,
    EVENTS_NOT_HANDLED,
    EVENTS_PROCESSED,
)
from shared.settings import PlatformSettings
from shared.trust import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    Keyring,
    Refused,
    SigningKey,
    Verifier,
    region_producer,
    sign_headers,
)

log = get_logger(__name__)

EVENTS_REFUSED = Counter(
    "medins_events_refused_total",
    "Events refused before any handler: unauthenticated (unsigned, tampered, unknown or "
    "revoked key) or forbidden (the producer may not send this type, for this region)",
    ["service", "topic", "reason"],
)


# The envelope's `type` as written on the wire, read without parsing the JSON.
_DECLARED_TYPE = re.compile(rb'"type"\s*:\s*"(cn\.[a-z0-9.\-]+\.v[0-9]+)"')


def declared_type(value: bytes) -> str | None:
    """The event type a record declares, when it declares exactly one; None when it cannot be
    told without parsing (none, or several: a duplicated key or a nested one)."""
    found = set(_DECLARED_TYPE.findall(value))
    return found.pop().decode() if len(found) == 1 else None


@functools.lru_cache(maxsize=16)
def _region_key(keyring_dir: Path, region: str) -> SigningKey | None:
    # Read once per process: a worker signs everything it emits with its region's key.
    return Keyring(keyring_dir).current(region_producer(region))


def outgoing_headers(value: bytes,
                     settings: PlatformSettings | None) -> tuple[tuple[str, str], ...]:
    """Signature headers of the region's own key for an emitted event (none without one,
    which every consumer refuses: a worker without its key cannot speak)."""
    key = _region_key(settings.keyring_dir, settings.region) if settings else None
    if key is None:
        return ()
    return tuple((k, v.decode()) for k, v in sign_headers(value, key))


@dataclass
class RawMessage:
    """What the consumer needs of a Kafka record, independent of Faust."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    # Kafka headers as aiokafka gives them; the signature travels here.
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Admitted:
    """A batch as admitted: what passed verification and parsing, with who signed each
    (event id -> key, staff id), and why the rest did not (index in the batch -> reason)."""

    received_at: datetime
    parsed: list[tuple[RawMessage, Envelope, Payload]] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    signers: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


@dataclass
class HandlerContext:
    """Given to a handler: its transaction, and `emit` for events caused by the current one."""

    conn: asyncpg.Connection
    cause: Envelope
    service: str
    region: str
    namespace: str
    emitted: list[OutboxMessage] = field(default_factory=list)
    settings: PlatformSettings | None = None
    # When the platform took the event from the broker: what "filed on" means, never the
    # sender's own timestamp. A retried batch keeps its first time.
    received_at: datetime = field(default_factory=clock.now)
    # The region's policy book (shared.policy.PolicyBook) for services that decide by it.
    policy: Any = None
    # Who sent the event, as verified: the signing key (producer/key id) and, for a staff
    # decision, the member of staff the review desk named.
    signed_by: str | None = None
    actor: str | None = None

    def decided_by(self) -> dict[str, str | None]:
        """What a history row records of who caused a decision."""
        return {"key": self.signed_by, "staff": self.actor}

    def filed_on(self, claimed: datetime | None = None, name: str = "submitted_at") -> date:
        """The China date this request reached the platform; raises SenderClockError when
        the sender dates it in the future beyond the tolerance."""
        tolerance = self.settings.clock_tolerance_seconds if self.settings else 300.0
        return clock.receipt_date(self.received_at, claimed, field=name,
                                  tolerance_seconds=tolerance)

    def emit(self, payload: Payload, *, key: str, subject: str | None = None,
             region: str | None = None, event_id: str | None = None) -> Envelope:
        envelope = new_envelope(
            payload.event_type, payload, source=self.service, region=self.region,
            subject=subject, cause=self.cause,
            # Derived ids make a re-run of the same cause produce the same event ids.
            event_id=event_id or derived_id(self.cause.id, payload.event_type, len(self.emitted)),
        )
        topic = physical(payload.topic, region=region or self.region, namespace=self.namespace)
        value = envelope.to_bytes()
        self.emitted.append(OutboxMessage(topic, key.encode(), value,
                                          outgoing_headers(value, self.settings)))
        return envelope


Handler = Callable[[HandlerContext, Envelope, Any], Awaitable[None]]

# One event of a set-based handler's group: its own context (its transaction is the batch's;
# what it emits is caused by this event), envelope and payload.
BatchItem = tuple[HandlerContext, Envelope, Any]
BatchHandler = Callable[[list[BatchItem]], Awaitable[None]]


def batch_handler(handler: BatchHandler) -> Handler:
    """Mark a set-based handler: the consumer gives it every event of its type in a batch at
    once (in order per key), so it loads with one query per table and writes with one
    statement per table. Routed like any handler."""
    handler.batched = True  # type: ignore[attr-defined]
    return handler  # type: ignore[return-value]


def is_batched(handler: Any) -> bool:
    return bool(getattr(handler, "batched", False))


def plan_groups(items: Sequence[tuple[int, bytes | None, Any]]) -> list[tuple[Any, list[int]]]:
    """Order of work for (index, key, handler) in batch order: a set-based handler's events
    join its latest group unless an earlier event of the same key sits in a later group, so
    each key's events keep their order while events of other keys (which Kafka orders only
    per partition, never across keys) may be handled together. Plain handlers are groups of
    one in place."""
    groups: list[tuple[Any, list[int]]] = []
    last_of_key: dict[bytes | None, int] = {}
    open_group: dict[int, int] = {}  # id(handler) -> index of its latest group
    for index, key, handler in items:
        floor = last_of_key.get(key, -1) if key is not None else len(groups) - 1
        at = open_group.get(id(handler)) if is_batched(handler) else None
        if at is not None and at >= floor:
            groups[at][1].append(index)
        else:
            at = len(groups)
            groups.append((handler, [index]))
            if is_batched(handler):
                open_group[id(handler)] = at
        if key is not None:
            last_of_key[key] = at
    return groups


class EventConsumer:
    """Processes batches of records for one service in one transaction, a savepoint each.

    With a `verifier` (every worker has one: shared.messaging.runtime), each record is
    authenticated and authorised before it is parsed into a handler; without one (handler
    tests feeding records directly) nothing is verified.
    """

    def __init__(self, service: str, settings: PlatformSettings, db: Database,
                 routes: dict[str, Handler], policy: Any = None,
                 verifier: Verifier | None = None) -> None:
        self.service = service
        self.settings = settings
        self.db = db
        self.routes = routes
        self.policy = policy  # a shared.policy.BookCache: its current book goes to handlers
        self.verifier = verifier
        if verifier is not None and _region_key(settings.keyring_dir, settings.region) is None:
            # Said loudly at start: every event this worker emits would be refused downstream.
            log.error("no signing key for this region: emitted events will be refused",
                      producer=region_producer(settings.region),
                      keyring=str(settings.keyring_dir))
        self.dead_letter_topic = physical(DEAD_LETTER, region=settings.region,
                                          namespace=settings.namespace)

    def _dead_letter(self, msg: RawMessage, reason: str) -> OutboxMessage:
        # A reason can quote a sender's field names: control characters (a NUL that the
        # outbox's JSON column refuses) would make the letter itself unwritable and hold
        # the partition; a hostile length would bloat every header.
        reason = "".join(ch if ch.isprintable() else "?" for ch in reason[:2000])
        # The names the message carries are masked where the reason quotes them.
        log.warning("dead-lettered", topic=msg.topic, offset=msg.offset,
                    reason=mask_text(reason, names_in_bytes(msg.value)))
        # The signature headers stay with the bytes, so a replayed letter verifies as the
        # original did (and an unsigned one is refused again); only well-formed ones.
        signed = tuple((k, v.decode("ascii")) for k, v in msg.headers
                       if k in (KEY_HEADER, SIGNATURE_HEADER) and _printable_ascii(v))
        # Body and key (a resident ID) sealed: the letter outlives its input topic's copy.
        value, sealing = seal_letter(msg.value, msg.key, msg.topic, msg.partition, msg.offset)
        return OutboxMessage(
            self.dead_letter_topic, None, value,
            (("dlq-reason", reason), ("dlq-service", self.service),
             ("dlq-topic", msg.topic), ("dlq-partition", str(msg.partition)),
             ("dlq-offset", str(msg.offset)), *sealing, *signed),
        )

    def _admit(self, msg: RawMessage) -> tuple[Envelope, Payload, str | None, str | None]:
        """Verify, then parse: raises Refused or ContractError; a handler sees only what
        an allowed producer signed. Also returns the signing key and the staff member named."""
        refused: Refused | None = None
        producer = ""
        actor = None
        if self.verifier is not None:
            try:
                producer = self.verifier.authenticate(msg.value, msg.headers)
            except Refused as exc:
                refused = exc
        try:
            envelope, payload = parse_event(msg.value)
        except ContractError as exc:
            if refused is not None:
                # Both: the refusal leads; the contract reason helps the sender's operator.
                raise Refused(refused.kind, f"{refused.detail}; {exc.reason}") from None
            raise
        if refused is not None:
            raise refused
        if self.verifier is not None:
            actor = self.verifier.authorise(producer, envelope.type, envelope.regioncode,
                                            envelope.data)
            # Type on topic: each topic has one producer kind, and a valid signature does not
            # let a producer write another's topic or put another type on its own.
            self.verifier.authorise_topic(producer, envelope.type, self._logical(msg.topic),
                                          type(payload).topic)
            self._within_dedup_window(envelope)
        return envelope, payload, producer or None, actor

    def _not_ours(self, msg: RawMessage) -> bool:
        """Another service's event on a shared topic (a type at home on this topic that no
        handler here takes): passed over without a signature check, parse or processed row.
        Passing over can only leave an event unapplied, never apply one; a record whose
        type cannot be told without parsing, or one not at home on its topic (forbidden, and
        counted and dead-lettered as such), takes the full path."""
        declared = declared_type(msg.value)
        if declared is None or declared in self.routes:
            return False
        model = EVENT_TYPES.get(declared)
        return model is not None and model.topic == self._logical(msg.topic)

    def _within_dedup_window(self, envelope: Envelope) -> None:
        """A signed event is refused once it is older than the processed ids are kept: after
        pruning, the same captured bytes sent again would otherwise be applied a second time.
        A day short of the retention, as the pruner runs hourly on the database's clock."""
        oldest = clock.now() - timedelta(days=self.settings.retention_processed_days - 1)
        if envelope.time < oldest:
            raise Refused("unauthenticated", (
                f"signed at {envelope.time.isoformat()}, older than the "
                f"{self.settings.retention_processed_days:g} days its id is remembered for; "
                "a replay cannot be told from a first delivery, so it is not applied"))

    def _logical(self, topic: str) -> str | None:
        found = logical(topic, self.settings.namespace)
        return found[1] if found is not None and found[0] == self.settings.region else None

    def admit(self, batch: Sequence[RawMessage]) -> Admitted:
        """Verify and parse a batch, with no database and no shared state changed but the
        metrics: safe to run in a thread while the batch before is handled."""
        admitted = Admitted(received_at=clock.now())
        for index, msg in enumerate(batch):
            if self._not_ours(msg):
                EVENTS_NOT_HANDLED.labels(self.service, msg.topic).inc()
                continue
            try:
                envelope, payload, signed_by, actor = self._admit(msg)
            except Refused as exc:
                admitted.rejected[index] = exc.reason
                EVENTS_REFUSED.labels(self.service, msg.topic, exc.kind).inc()
                log.warning("refused", topic=msg.topic, offset=msg.offset, reason=exc.kind,
                            detail=mask_text(exc.detail, names_in_bytes(msg.value)))
            except ContractError as exc:
                admitted.rejected[index] = exc.reason
            else:
                admitted.parsed.append((msg, envelope, payload))
                admitted.signers[envelope.id] = (signed_by, actor)
        return admitted

    async def process(self, batch: Sequence[RawMessage],
                      admitted: Admitted | None = None) -> None:
        """Handle a batch (admitted here unless `admit` already ran on it); returns only once
        every record is committed or dead-lettered."""
        started = time.perf_counter()
        if admitted is None:
            admitted = self.admit(batch)
        parsed, rejected, signers = admitted.parsed, admitted.rejected, admitted.signers
        received_at = admitted.received_at
        delay = 0.1
        singles: set[int] = set()  # events of a failed set-based group, redone one by one
        while True:
            try:
                await self._process_once(batch, parsed, rejected, received_at, signers,
                                         singles)
                break
            except _GroupFailed as failed:
                # Which event of the group broke it is found by doing them one at a time.
                log.warning("set-based handler failed, isolating", size=len(failed.indices))
                singles.update(failed.indices)
            except _HandlerFailed as failed:
                # A bug in one handler: the batch is redone without that event, which is
                # dead-lettered. No savepoint per event on the common path keeps batches fast.
                log.error("handler failed", error=mask_text(
                    failed.reason, names_in_bytes(batch[failed.index].value)))
                rejected[failed.index] = failed.reason
            except Exception as exc:
                # Never ack what is not committed: wait and retry the whole batch. What
                # reaches here is the database or the plumbing, which a later attempt can
                # get past.
                for msg in batch:
                    EVENTS_FAILED.labels(self.service, msg.topic).inc()
                log.warning("batch failed, retrying", error=repr(exc), retry_in=delay,
                            size=len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for index in rejected:
            EVENTS_DEAD_LETTERED.labels(self.service, batch[index].topic).inc()
        BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        BATCH_SIZE.labels(self.service).observe(len(batch))

    async def _process_once(self, batch: Sequence[RawMessage],
                            parsed: list[tuple[RawMessage, Envelope, Payload]],
                            rejected: dict[int, str], received_at: datetime,
                            signers: dict[str, tuple[str | None, str | None]] | None = None,
                            singles: set[int] | None = None) -> None:
        signers = signers or {}
        singles = singles or set()
        index_of = {id(msg): i for i, msg in enumerate(batch)}
        outgoing = [self._dead_letter(batch[i], reason) for i, reason in sorted(rejected.items())]
        processed: list[tuple[str, str]] = []
        async with self.db.pool.acquire() as conn, conn.transaction():
            fresh: set[str] = set()
            # A dead-lettered event is not recorded as processed, so that once its cause is
            # fixed `medins deadletters replay` can have it handled.
            taken = [e for m, e, _ in parsed if index_of[id(m)] not in rejected]
            if taken:
                # Who caused it, for the audit: the verified key and a decision's staff id.
                rows = await conn.fetch(
                    "INSERT INTO processed_messages"
                    " (consumer, event_id, event_type, signed_by, actor)"
                    " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])"
                    " ON CONFLICT DO NOTHING RETURNING event_id",
                    self.service, [e.id for e in taken], [e.type for e in taken],
                    [signers.get(e.id, (None, None))[0] for e in taken],
                    [signers.get(e.id, (None, None))[1] for e in taken],
                )
                fresh = {r["event_id"] for r in rows}
            work: dict[int, tuple[RawMessage, Envelope, Payload]] = {}
            for msg, envelope, payload in parsed:
                index = index_of[id(msg)]
                if envelope.id not in fresh or index in rejected:
                    if index not in rejected:
                        EVENTS_DUPLICATE.labels(self.service, msg.topic).inc()
                        log.info("duplicate skipped", event_id=envelope.id, type=envelope.type)
                    continue
                fresh.discard(envelope.id)  # a second copy in the same batch is a duplicate
                if envelope.type in self.routes:  # else a type this service does not handle
                    work[index] = (msg, envelope, payload)
            contexts: dict[int, HandlerContext] = {}
            for index, (_, envelope, _) in work.items():
                signed_by, actor = signers.get(envelope.id, (None, None))
                contexts[index] = HandlerContext(
                    conn, envelope, self.service, self.settings.region,
                    self.settings.namespace, settings=self.settings, received_at=received_at,
                    policy=self.policy.book if self.policy else None, signed_by=signed_by,
                    actor=actor)
            plan = plan_groups([(i, m.key, self.routes[e.type]) for i, (m, e, _)
                                in work.items()])
            for handler, indices in plan:
                if is_batched(handler) and not singles.intersection(indices):
                    await self._run_group(handler, indices, work, contexts)
                    continue
                for index in indices:
                    if index in singles:
                        await self._run_isolated(conn, handler, index, work, contexts, batch,
                                                 rejected, outgoing)
                    else:
                        await self._run_one(handler, index, work[index], contexts[index])
            for index in sorted(work):
                if index in rejected:
                    continue
                outgoing.extend(contexts[index].emitted)
                processed.append((work[index][0].topic, work[index][1].type))
            await write_outbox(conn, self.db.schema, outgoing)
        for topic, event_type in processed:
            EVENTS_PROCESSED.labels(self.service, topic, event_type).inc()

    async def _run_one(self, handler: Any, index: int,
                       item: tuple[RawMessage, Envelope, Payload], ctx: HandlerContext) -> None:
        _, envelope, payload = item
        try:
            # The event's own names are masked in whatever its handler logs.
            with bound_contextvars(event_id=envelope.id, correlation_id=envelope.correlationid), \
                    masking_names(names_in(envelope.data)):
                if is_batched(handler):
                    await handler([(ctx, envelope, payload)])
                else:
                    await handler(ctx, envelope, payload)
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:
            raise _HandlerFailed(index, f"handler failed: {type(exc).__name__}: {exc}"
                                 ) from exc

    async def _run_isolated(self, conn: asyncpg.Connection, handler: Any, index: int,
                            work: dict[int, tuple[RawMessage, Envelope, Payload]],
                            contexts: dict[int, HandlerContext], batch: Sequence[RawMessage],
                            rejected: dict[int, str], outgoing: list[OutboxMessage]) -> None:
        """One event of a group that failed, in a savepoint of its own: if it fails again it
        alone is dead-lettered here, and the batch goes on (redoing the batch after each
        would cost a pass per faulty event)."""
        try:
            async with conn.transaction():
                await self._run_one(handler, index, work[index], contexts[index])
        except _HandlerFailed as failed:
            msg, envelope, _ = work[index]
            log.error("handler failed", error=mask_text(failed.reason,
                                                        names_in_bytes(msg.value)))
            rejected[index] = failed.reason
            contexts[index].emitted.clear()
            # Not processed after all: a replay of the letter must be handled.
            await conn.execute("DELETE FROM processed_messages WHERE consumer = $1"
                               " AND event_id = $2", self.service, envelope.id)
            outgoing.append(self._dead_letter(batch[index], failed.reason))

    async def _run_group(self, handler: BatchHandler, indices: list[int],
                         work: dict[int, tuple[RawMessage, Envelope, Payload]],
                         contexts: dict[int, HandlerContext]) -> None:
        names: set[str] = set()
        for index in indices:
            names.update(names_in(work[index][1].data))
        try:
            with bound_contextvars(batch_events=len(indices)), masking_names(names):
                await handler([(contexts[i], work[i][1], work[i][2]) for i in indices])
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:
            if len(indices) == 1:
                raise _HandlerFailed(indices[0], f"handler failed: {type(exc).__name__}: {exc}"
                                     ) from exc
            raise _GroupFailed(indices) from exc


class _GroupFailed(Exception):
    """A set-based handler raised for its group: the batch is redone with those events one
    at a time, so only the one that fails is dead-lettered."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__(f"{len(indices)} events")
        self.indices = indices


class _HandlerFailed(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def attach_consumer(app: faust.App, consumer: EventConsumer, topic_names: list[str]) -> None:
    """Wire a Faust agent that feeds batches of raw records to the consumer.

    The agent never lets an exception escape: Faust would ack the batch and lose it.
    """
    channel = app.topic(*topic_names, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw")
    settings = consumer.settings
    for name in topic_names:
        # Every series exists at zero from the start, so `increase()` sees the first one.
        EVENTS_DEAD_LETTERED.labels(consumer.service, name)
        EVENTS_FAILED.labels(consumer.service, name)
        for kind in ("unauthenticated", "forbidden"):
            EVENTS_REFUSED.labels(consumer.service, name, kind)

    async def handle(admitted: tuple[list[RawMessage], Admitted]) -> None:
        await consumer.process(*admitted)

    async def consume(stream: faust.StreamT[bytes]) -> None:
        # Admission (signatures, parsing) runs in a thread, the next batch's while this
        # one waits for the database.
        await run_batches(stream, settings.batch_size, settings.batch_within_seconds, handle,
                          max_bytes=settings.batch_max_bytes,
                          prepare=functools.partial(admit_events, consumer))

    app.agent(channel, name=f"{consumer.service}-consumer", concurrency=1)(consume)


def admit_events(consumer: EventConsumer, events: Sequence[Any]
                 ) -> tuple[list[RawMessage], Admitted]:
    """Faust's events as the consumer's records, verified and parsed: a worker's preparing
    thread runs this on the batch behind the one being handled."""
    batch = [RawMessage(e.message.topic, e.message.partition, e.message.offset,
                        e.message.key, e.message.value, _headers(e.message.headers))
             for e in events]
    return batch, consumer.admit(batch)


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    """Faust passes aiokafka's header list, or a mapping; values may be None."""
    items = raw.items() if isinstance(raw, dict) else (raw or ())
    return tuple((str(k), bytes(v or b"")) for k, v in items)


def _printable_ascii(value: bytes) -> bool:
    return len(value) <= 512 and all(32 < b < 127 for b in value)
