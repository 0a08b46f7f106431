"""Sends claimed deliveries through their channel, with bounded retries, then parks."""
from __future__ import annotations

import asyncio

import mode

from shared.contracts.envelope import new_envelope
from shared.contracts.notify import MessageParked, MessageSent
from shared.contracts.topics import physical
from shared.db.pool import TRANSIENT_DB_ERRORS, Database
from shared.messaging.outbox import OutboxMessage, write_outbox
from shared.observability.logging import get_logger
from shared.settings import NotifySettings
from services.notify import repository as repo
from services.notify.senders import PermanentSendError, Sender

log = get_logger(__name__)


class Dispatcher(mode.Service):
    def __init__(self, db: Database, settings: NotifySettings, senders: dict[str, Sender],
                 poll_seconds: float = 0.2, **kwargs: object) -> None:
        self.db = db
        self.settings = settings
        self.senders = senders
        self.poll_seconds = poll_seconds
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @mode.Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                sent = await self.dispatch_once()
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("dispatcher waiting for the database", error=str(exc))
                sent = 0
            except RuntimeError:  # pool not started yet
                sent = 0
            if not sent:
                await self.sleep(self.poll_seconds)

    async def dispatch_once(self, limit: int = 50) -> int:
        async with self.db.pool.acquire() as conn:
            due = await repo.claim_due(conn, limit)
        await asyncio.gather(*(self._deliver(row) for row in due))
        return len(due)

    async def _deliver(self, row: dict) -> None:  # type: ignore[type-arg]
        sender = self.senders[row["channel"]]
        key = f"{row['source_event_id']}:{row['channel']}"
        outcome: MessageSent | MessageParked
        try:
            await sender.send(row["recipient"], row["subject"], row["body"], key)
        except Exception as exc:
            permanent = isinstance(exc, PermanentSendError)
            park = permanent or row["attempts"] >= self.settings.send_max_attempts
            retry_in = self.settings.send_backoff_seconds * 2 ** (row["attempts"] - 1)
            log.warning("send failed", channel=row["channel"], to=row["recipient"],
                        attempt=row["attempts"], parked=park, error=repr(exc))
            async with self.db.pool.acquire() as conn, conn.transaction():
                await repo.mark_failed(conn, row["id"], repr(exc), park, retry_in)
                if park:
                    outcome = MessageParked(source_event_id=row["source_event_id"],
                                            channel=row["channel"], template=row["template"],
                                            reason=repr(exc))
                    await self._emit(conn, row, outcome)
            return
        async with self.db.pool.acquire() as conn, conn.transaction():
            await repo.mark_sent(conn, row["id"])
            outcome = MessageSent(source_event_id=row["source_event_id"], channel=row["channel"],
                                  template=row["template"])
            await self._emit(conn, row, outcome)

    async def _emit(self, conn, row, payload) -> None:  # type: ignore[no-untyped-def]
        envelope = new_envelope(payload.event_type, payload, source="notify",
                                region=self.settings.region,
                                event_id=f"{row['source_event_id']}:{row['channel']}:"
                                         f"{payload.event_type}")
        topic = physical(payload.topic, region=self.settings.region,
                         namespace=self.settings.namespace)
        await write_outbox(conn, self.db.schema,
                           [OutboxMessage(topic, row["person_id"].encode(), envelope.to_bytes())])
