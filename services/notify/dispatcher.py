"""Sends claimed deliveries per channel within the gateway's rate, retries, parks, reconciles."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import mode

from services.notify import metrics
from services.notify import repository as repo
from services.notify.ratelimit import TokenBucket
from services.notify.senders import OutcomeUnknown, PermanentSendError, Sender
from shared.contracts.base import Payload
from shared.contracts.envelope import derived_id, new_envelope
from shared.contracts.notify import MessageParked, MessageSent
from shared.contracts.topics import physical
from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.messaging.outbox import OutboxMessage, write_outbox
from shared.observability.logging import get_logger
from shared.settings import NotifySettings

log = get_logger(__name__)


class Dispatcher(mode.Service):
    """One loop per channel: claim what the rate allows, send concurrently, record outcomes."""

    def __init__(self, db: Database, settings: NotifySettings, senders: dict[str, Sender],
                 limits: dict[str, TokenBucket], poll_seconds: float = 0.2,
                 **kwargs: Any) -> None:
        self.db = db
        self.settings = settings
        self.senders = senders
        self.limits = limits
        self.poll_seconds = poll_seconds
        super().__init__(**kwargs)

    async def on_stop(self) -> None:
        for sender in self.senders.values():
            close = getattr(sender, "close", None)
            if close is not None:
                await close()

    @mode.Service.task
    async def _channels(self) -> None:
        await asyncio.gather(*(self._channel_loop(c) for c in self.senders))

    @mode.Service.timer(5.0)
    async def _reconcile(self) -> None:
        """Expose what needs an operator: stale 'sending' becomes 'unknown'; gauge counts."""
        try:
            async with self.db.pool.acquire() as conn:
                stale = await repo.stale_sending_to_unknown(conn,
                                                            self.settings.unknown_after_seconds)
                counts = await repo.counts_by_status(conn)
        except (RuntimeError, *TRANSIENT_DB_ERRORS):
            return
        if stale:
            log.warning("messages with unknown outcome need reconciling", count=stale)
        metrics.set_attention(counts)

    async def _channel_loop(self, channel: str) -> None:
        while not self.should_stop:
            try:
                sent = await self.dispatch_once(channel)
            except (RuntimeError, *TRANSIENT_DB_ERRORS) as exc:
                log.warning("dispatcher waiting for the database", error=str(exc))
                sent = 0
            except Exception:
                # Never let one bad message stop the channel; what was claimed and not
                # recorded stays 'sending' and is reconciled as unknown.
                log.exception("dispatcher round failed", channel=channel)
                sent = 0
            if not sent:
                await self.sleep(self.poll_seconds)

    async def dispatch_once(self, channel: str) -> int:
        limit = self.limits[channel]
        room = max(1, min(limit.available(), 100))
        async with self.db.pool.acquire() as conn:
            due = await repo.claim_due(conn, channel, room)
        tasks = []
        for row in due:
            if row["attempts"] > 1 or row["last_error"] == repo.REQUEUED:
                metrics.RETRIED.labels(channel).inc()
            await limit.take()  # the gateway's pace; consumption runs on regardless
            tasks.append(asyncio.create_task(self._deliver(dict(row))))
        if tasks:
            await asyncio.gather(*tasks)
        return len(due)

    async def _deliver(self, row: dict[str, Any]) -> None:
        channel = row["channel"]
        key = f"{row['source_event_id']}:{channel}"
        started = time.perf_counter()
        try:
            result = await self.senders[channel].send(row["recipient"], row["subject"],
                                                      row["body"], key)
        except OutcomeUnknown as exc:
            metrics.UNKNOWN.labels(channel).inc()
            log.error("send outcome unknown; not resending", channel=channel,
                      to=row["recipient"], error=str(exc))
            async with self.db.pool.acquire() as conn:
                await repo.mark_unknown(conn, row["id"], str(exc))
            return
        except Exception as exc:
            await self._failed(row, exc)
            return
        metrics.SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)
        metrics.SENT.labels(channel).inc()
        async with self.db.pool.acquire() as conn, conn.transaction():
            await repo.mark_sent(conn, row["id"], result.provider_ids, channel)
            await self._emit(conn, row, MessageSent(
                source_event_id=row["source_event_id"], channel=channel,
                template=row["template"]))

    async def _failed(self, row: dict[str, Any], exc: Exception) -> None:
        channel = row["channel"]
        permanent = isinstance(exc, PermanentSendError)
        park = permanent or row["attempts"] >= self.settings.send_max_attempts
        retry_in = self.settings.send_backoff_seconds * 2 ** (row["attempts"] - 1)
        metrics.FAILED.labels(channel).inc()
        log.warning("send failed", channel=channel, to=row["recipient"],
                    attempt=row["attempts"], parked=park, error=str(exc))
        async with self.db.pool.acquire() as conn, conn.transaction():
            await repo.mark_failed(conn, row["id"], f"{type(exc).__name__}: {exc}", park,
                                   retry_in)
            if park:
                metrics.PARKED.labels(channel).inc()
                await self._emit(conn, row, MessageParked(
                    source_event_id=row["source_event_id"], channel=channel,
                    template=row["template"], reason=str(exc)))

    async def on_receipt(self, message_id: str, stat: str) -> None:
        metrics.RECEIPTS.labels(stat).inc()
        async with self.db.pool.acquire() as conn, conn.transaction():
            await repo.record_receipt(conn, message_id, stat)

    async def _emit(self, conn: Any, row: dict[str, Any], payload: Payload) -> None:
        envelope = new_envelope(payload.event_type, payload, source="notify",
                                region=self.settings.region,
                                event_id=derived_id(row["source_event_id"], row["channel"],
                                                    payload.event_type, row["attempts"]))
        topic = physical(payload.topic, region=self.settings.region,
                         namespace=self.settings.namespace)
        await write_outbox(conn, self.db.schema,
                           [OutboxMessage(topic, row["person_id"].encode(), envelope.to_bytes())])
