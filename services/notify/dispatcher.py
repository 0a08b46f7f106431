"""Sends claimed deliveries per channel within the gateway's rate, records every answer."""
from __future__ import annotations

import asyncio
import random
import socket
import time
from datetime import UTC, datetime
from typing import Any

import mode

from services.notify import metrics, outcomes
from services.notify import repository as repo
from services.notify.batching import GroupCommit
from services.notify.breaker import CircuitBreaker
from services.notify.journal import OutcomeJournal
from services.notify.ratelimit import TokenBucket
from services.notify.senders import OutcomeUnknown, PermanentSendError, Sender
from shared.contracts.base import Payload
from shared.contracts.envelope import derived_id, new_envelope
from shared.contracts.notify import MessageParked, MessageSent
from shared.contracts.topics import physical
from shared.db.pool import TRANSIENT_DB_ERRORS, Database, close_quietly
from shared.messaging.outbox import OutboxMessage, write_outbox
from shared.observability.logging import get_logger
from shared.settings import NotifySettings

log = get_logger(__name__)


class Dispatcher(mode.Service):
    """One loop per channel: claim what the rate and the breaker allow, send concurrently,
    write each answer to a local journal and then, retrying until it lands, the database.

    Journal and database writes are group commits: the hand-over marks, answers and receipts
    that come in together share one fsync and one transaction (each still written before the
    step that depends on it), so sending is not paced by a round trip per message."""

    def __init__(self, db: Database, settings: NotifySettings, senders: dict[str, Sender],
                 limits: dict[str, TokenBucket], poll_seconds: float = 0.2,
                 journal: OutcomeJournal | None = None, **kwargs: Any) -> None:
        self.db = db
        self.settings = settings
        self.senders = senders
        self.limits = limits
        self.poll_seconds = poll_seconds
        self.journal = journal or OutcomeJournal(
            settings.state_dir / f"notify-{settings.namespace}{settings.region}-outcomes.jsonl")
        # Stable across restarts of this worker (same host, state folder and region), so its
        # next run knows which claimed rows were its own.
        self.worker_id = (f"{socket.gethostname()}:{settings.state_dir.resolve()}:"
                          f"{settings.namespace}{settings.region}")
        self.breakers = {c: CircuitBreaker(settings.breaker_failures,
                                           settings.breaker_open_seconds,
                                           max(settings.breaker_open_seconds,
                                               settings.send_backoff_max_seconds))
                         for c in senders}
        for channel in senders:
            metrics.CHANNEL_UP.labels(channel).set(1)
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self._starting: set[int] = set()
        # Rows whose answer is known here but not yet in the database: never swept.
        self.holding: set[int] = {int(e["id"]) for e in self.journal.pending()}
        self.stopping = False
        self._give_up_at: float | None = None
        # Every journal line (hand-over marks, answers, done marks) goes through one writer:
        # lines that come in together share one write and one fsync, off the event loop.
        self._journal_lines = GroupCommit[dict[str, Any]](self._journal_flush, max_batch=2000)
        self._answers = GroupCommit[dict[str, Any]](self._record_answers, max_batch=500)
        self._releases = GroupCommit[int](self._release)
        # Per channel, messages handed to the sender at once: as many as it can have in flight
        # (SMPP window x sessions, SMTP sessions), so the rest of a batch waits here, where a
        # stop can still put it back untouched.
        self._capacity = {c: max(1, int(getattr(sender, "capacity", 100)))
                          for c, sender in senders.items()}
        self._gates = {c: asyncio.Semaphore(n) for c, n in self._capacity.items()}
        # Claimed and not yet answered, per channel; the loops' wake-ups (new work committed,
        # a slot freed).
        self._busy = dict.fromkeys(senders, 0)
        self._wakes = {c: asyncio.Event() for c in senders}
        # Per channel: whether its last claim may have left due messages behind (it took as
        # many as it asked for, or did not run). Only then does a freed slot claim again: a
        # claim that came back short took everything due, and what is committed later wakes
        # the loop by NOTIFY (at 50 messages/s, most claims after a freed slot found nothing).
        self._more = dict.fromkeys(senders, True)
        self._listener: Any = None
        super().__init__(**kwargs)

    async def on_stop(self) -> None:
        """Drain: take nothing new, wait (bounded) for the answers in flight, record them."""
        self.stopping = True
        self._give_up_at = time.monotonic() + self.settings.drain_seconds
        self._woken()  # idle channel loops see the stop at once
        await self._release_listener()
        tasks = list(self.in_flight.values())
        if tasks:
            log.info("waiting for the gateways' answers before stopping", in_flight=len(tasks),
                     within_seconds=self.settings.drain_seconds)
            _, late = await asyncio.wait(tasks, timeout=self.settings.drain_seconds)
            for task in late:
                task.cancel()
            if late:
                log.error("stopped with answers still awaited; their rows stay 'sending' and "
                          "are reconciled as unknown", count=len(late))
        for sender in self.senders.values():
            close = getattr(sender, "close", None)
            if close is not None:
                try:
                    await asyncio.wait_for(close(), 5)
                except Exception as exc:
                    log.warning("sender did not close cleanly", error=repr(exc))
        await self._journal_lines.wait_idle()
        left = self.journal.pending()
        if left:
            log.error("answers not yet in the database are kept in the journal and recorded "
                      "at next start", count=len(left), journal=str(self.journal.path))
        self.journal.compact()

    @mode.Service.task
    async def _listen(self) -> None:
        """Hold a connection listening for new deliveries (NOTIFY on commit) and wake every
        channel loop; without it (database away) the loops poll."""
        delay = 0.2
        while not self.should_stop and not self.stopping:
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._release_listener()  # one lost to an outage
                    self._listener = await self.db.listen_apart(
                        repo.due_channel(self.db.schema), self._notified)
                    self._woken()  # what was committed while it was away
                    delay = 0.2
            except Exception as exc:
                log.debug("new-delivery listener not connected; polling", error=repr(exc))
                await self.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            await self.sleep(1.0)

    def _notified(self, _conn: Any, _pid: int, _name: str, payload: str) -> None:
        """A NOTIFY of new deliveries: its payload names their channels (comma-separated)."""
        self._woken(payload.split(",") if payload else None)

    def _woken(self, channels: list[str] | None = None) -> None:
        """Wake these channels' loops (every loop without a list)."""
        for channel in self._wakes if channels is None else channels:
            wake = self._wakes.get(channel)
            if wake is not None:
                wake.set()

    async def _release_listener(self) -> None:
        conn, self._listener = self._listener, None
        await close_quietly(conn)

    @mode.Service.task
    async def _channels(self) -> None:
        await self.replay_journal()
        await asyncio.gather(*(self._channel_loop(c) for c in self.senders))

    async def replay_journal(self) -> None:
        """What the previous run left: answers it received but could not write down are
        written; hand-overs whose answer never came become 'unknown'; what it claimed and
        never handed over is due again."""
        entries = self.journal.pending()
        for start in range(0, len(entries), 500):
            await self._write(entries[start:start + 500])
        unanswered = self.journal.unanswered()
        for start in range(0, len(unanswered), 500):
            await self._write([{"id": delivery_id, "kind": "unknown", "error":
                                "worker stopped after handing it over and before the gateway "
                                "answered; check with the gateway before resending"}
                               for delivery_id in unanswered[start:start + 500]])
        released = await self._until_recorded(self._release_unsent)
        if entries or unanswered or released:
            log.info("reconciled what the previous run left", answers=len(entries),
                     unanswered=len(unanswered), never_handed_over=released)
        await self._journal_lines.wait_idle()  # its done marks are in the file first
        self.journal.compact()

    async def _release_unsent(self) -> int:
        async with self.db.pool.acquire() as conn:
            return await repo.release_unsent(conn, self.worker_id)

    async def _until_recorded(self, write: Any) -> Any:
        delay = 0.2
        while True:
            try:
                return await write()
            except Exception as exc:
                log.warning("waiting for the database", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @mode.Service.timer(5.0)
    async def _reconcile(self) -> None:
        """Expose what needs an operator: orphaned 'sending' becomes 'unknown'; an 'unknown'
        SMS the SMSC's receipts show went out becomes 'sent', its sent event emitted (once, in
        the same transaction, with the id a normal send gives it); gauge counts."""
        resolved: list[dict[str, Any]] = []
        try:
            async with self.db.pool.acquire() as conn:
                stale = await repo.stale_sending_to_unknown(
                    conn, self.settings.unknown_after_seconds,
                    [*self.in_flight, *self.holding, *self._starting], self.worker_id)
                try:
                    async with conn.transaction():
                        resolved = await outcomes.resolve_unknown_sms(
                            conn, self.settings.receipt_settle_seconds)
                        await self._emit(conn, [(e, MessageSent(
                            source_event_id=e["source_event_id"], channel=e["channel"],
                            template=e["template"])) for e in resolved])
                except (RuntimeError, *TRANSIENT_DB_ERRORS):
                    raise
                except Exception as exc:
                    # A row that cannot be reconciled must not stop the sweep or the gauges:
                    # those messages stay 'unknown', for the operator.
                    log.error("reconciling unknown SMS against receipts failed",
                              error=repr(exc))
                    resolved = []
                counts = await repo.counts_by_status(conn)
        except (RuntimeError, *TRANSIENT_DB_ERRORS):
            return
        if resolved:
            log.info("SMS of unknown outcome confirmed sent by the SMSC's receipts",
                     count=len(resolved), ids=[e["id"] for e in resolved])
        if stale:
            log.warning("messages with unknown outcome need reconciling", count=stale)
        metrics.set_attention(counts)
        if self.journal.size() > 1_000_000 and not self._journal_lines.busy:
            # Synchronous, and no write is under way in the writer's thread: no append can
            # interleave.
            self.journal.compact()

    async def _channel_loop(self, channel: str) -> None:
        """Streaming: claim whenever the channel has a free slot and something is due, without
        waiting for the answers of what is already out; sleep until new work is committed
        (the deliveries' NOTIFY), a slot frees, or the poll interval passes (retries due)."""
        wake = self._wakes[channel]
        while not self.should_stop and not self.stopping:
            wake.clear()  # before claiming: a wake that comes while claiming is not lost
            try:
                started = len(await self._start(channel))
            except (RuntimeError, *TRANSIENT_DB_ERRORS) as exc:
                log.warning("dispatcher waiting for the database", error=str(exc))
                started = 0
            except Exception:
                # Never let one bad message stop the channel.
                log.exception("dispatcher round failed", channel=channel)
                started = 0
            if not started:
                try:
                    await asyncio.wait_for(wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass

    async def dispatch_once(self, channel: str) -> int:
        """One round: claim what is due (up to the channel's free slots), send it, and return
        once every answer is recorded; the number claimed (operators' tools and tests)."""
        tasks = await self._start(channel)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def _start(self, channel: str) -> list[asyncio.Task[None]]:
        """Claim what the breaker, the rate and the channel's free slots allow and start
        sending it; the tasks, one per claimed row (a row put back untouched included)."""
        if self.stopping:
            return []
        # Until a claim shows it took everything due: a round that cannot claim now (breaker,
        # probe out, slots taken) leaves the next freed slot to try again.
        self._more[channel] = True
        breaker = self.breakers[channel]
        allowance = breaker.allowance()
        if allowance == 0:
            return []
        busy = self._busy[channel]
        if busy and (breaker.failing or allowance == 1):
            return []  # a probe is out: its answer says whether to send more
        # Claimed and unanswered at most a batch (or twice what the gateway takes at once):
        # the next messages are ready when a slot frees. Under load a claim waits until half
        # of that is free, so claims stay large (one round trip for many messages) instead
        # of one per freed slot.
        budget = max(self.settings.send_batch_size, 2 * self._capacity[channel])
        free = budget - busy
        if free <= 0 or (busy and free < budget // 2):
            return []
        limit = self.limits[channel]
        most = self.settings.send_batch_size
        room = max(1, min(limit.available(), most, allowance or most, free))
        async with self.db.pool.acquire() as conn:
            due = [dict(r) for r in await repo.claim_due(conn, channel, room,
                                                             self.worker_id)]
        self._more[channel] = len(due) == room
        self._busy[channel] += len(due)
        # Claimed and not yet started (waiting for the gateway's pace): held here, so the
        # sweep never takes them for a claim this worker lost.
        self._starting.update(r["id"] for r in due)
        tasks = []
        for index, row in enumerate(due):
            if self.stopping or (index == 1 and breaker.failing):
                # Stopping takes nothing new; a batch whose first message found the gateway
                # away waits for the next round instead of failing message by message.
                rest = [r["id"] for r in due[index:]]
                self._busy[channel] -= len(rest)
                await self._release(rest)
                self._starting.difference_update(rest)
                break
            if row["attempts"] > 1 or row["last_error"] == repo.REQUEUED:
                metrics.RETRIED.labels(channel).inc()
            await limit.take()  # the gateway's pace; consumption runs on regardless
            task = asyncio.create_task(self._deliver(row))
            self.in_flight[row["id"]] = task
            self._starting.discard(row["id"])
            task.add_done_callback(self._forget(row["id"]))
            tasks.append(task)
            if index == 0 and len(due) > 1 and busy == 0:
                await asyncio.wait([task])  # the first one tells whether the gateway is there
        return tasks

    def _forget(self, delivery_id: int) -> Any:
        def forget(task: asyncio.Task[None]) -> None:
            self.in_flight.pop(delivery_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("delivery task failed", delivery=delivery_id,
                          error=repr(task.exception()))
        return forget

    async def _release(self, ids: list[int]) -> None:
        try:
            async with self.db.pool.acquire() as conn:
                await repo.release(conn, ids)
        except Exception as exc:
            # Never handed over: left 'sending', the sweep makes them 'unknown', never lost.
            log.warning("claimed messages not released", count=len(ids), error=repr(exc))

    async def _journal_flush(self, lines: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.journal.append_many, lines)

    async def _deliver(self, row: dict[str, Any]) -> None:
        channel = row["channel"]
        try:
            async with self._gates[channel]:
                if self.stopping or self.breakers[channel].allowance() == 0:
                    # Claimed, waited for a free slot, never handed over: due again at once
                    # (a stop takes nothing new; a channel whose breaker opened meanwhile
                    # burns no attempt).
                    await self._releases.submit(row["id"])
                    return
                outcome = await self._send_one(row)
        finally:
            self._busy[channel] -= 1
            if self._more[channel]:
                self._wakes[channel].set()  # a slot is free for what the last claim left
        # Recorded after the slot is free: the next message goes while this answer is written.
        await self.record(row, outcome)

    async def _send_one(self, row: dict[str, Any]) -> dict[str, Any]:
        channel = row["channel"]
        breaker = self.breakers[channel]
        key = f"{row['source_event_id']}:{channel}"
        started = time.perf_counter()
        outcome: dict[str, Any]
        try:
            result = await self.senders[channel].send(
                row["recipient"], row["subject"], row["body"], key,
                lambda: self._journal_lines.submit({"handing": row["id"]}))
        except OutcomeUnknown as exc:
            metrics.UNKNOWN.labels(channel).inc()
            log.error("send outcome unknown; not resending", channel=channel,
                      to=row["recipient"], error=str(exc))
            outcome = {"kind": "unknown", "error": str(exc),
                       "provider_ids": [i for i in exc.provider_ids if i]}
        except PermanentSendError as exc:
            self._channel_answered(channel)
            outcome = self._failure(row, exc, permanent=True)
        except Exception as exc:
            if breaker.failure():
                metrics.CHANNEL_UP.labels(channel).set(0)
                log.error("channel down: pausing sends", channel=channel, error=str(exc))
            outcome = self._failure(row, exc, permanent=False)
        else:
            self._channel_answered(channel)
            metrics.SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)
            metrics.SENT.labels(channel).inc()
            outcome = {"kind": "sent", "provider_ids": result.provider_ids}
        return outcome

    def _channel_answered(self, channel: str) -> None:
        if self.breakers[channel].is_open:
            log.info("channel back: sending again", channel=channel)
        self.breakers[channel].success()
        metrics.CHANNEL_UP.labels(channel).set(1)

    def _failure(self, row: dict[str, Any], exc: Exception, permanent: bool) -> dict[str, Any]:
        channel, s = row["channel"], self.settings
        age = (datetime.now(UTC) - row["retry_since"]).total_seconds()
        capped = s.send_max_attempts > 0 and row["attempts"] >= s.send_max_attempts
        park = permanent or capped or age >= s.send_retry_horizon_seconds
        # Full jitter: replicas and messages failing together do not come back together.
        ceiling = min(s.send_backoff_max_seconds,
                      s.send_backoff_seconds * 2 ** min(row["attempts"] - 1, 30))
        retry_in = random.uniform(ceiling / 2, ceiling)
        metrics.FAILED.labels(channel).inc()
        if park:
            metrics.PARKED.labels(channel).inc()
        log.warning("send failed", channel=channel, to=row["recipient"],
                    attempt=row["attempts"], parked=park, retry_in=round(retry_in, 1),
                    error=str(exc))
        return {"kind": "failed", "error": f"{type(exc).__name__}: {exc}", "park": park,
                "retry_in": retry_in}

    async def record(self, row: dict[str, Any], outcome: dict[str, Any]) -> None:
        """Journal first (fsync), then the database until it takes it; answers arriving
        together are journalled with one fsync and written in one transaction. The journal
        names the person by the row's sealed ID, never the ID in clear (a local file)."""
        entry = {"id": row["id"], "source_event_id": row["source_event_id"],
                 "channel": row["channel"], "template": row["template"],
                 "attempts": row["attempts"], "person_ref": row["person_ref"], **outcome}
        await self._journal_lines.submit(entry)
        self.holding.add(entry["id"])
        await self._answers.submit(entry)

    async def _record_answers(self, entries: list[dict[str, Any]]) -> None:
        await self._write(entries)

    async def _write(self, entries: list[dict[str, Any]]) -> None:
        delay, tries = 0.2, 0
        while True:
            try:
                async with self.db.pool.acquire() as conn, conn.transaction():
                    await self._apply(conn, entries)
            except Exception as exc:
                # Whatever the reason, the answers must not be dropped: they stay in the journal.
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    return
                if len(entries) > 1 and not isinstance(exc, TRANSIENT_DB_ERRORS):
                    # One answer the database refuses must not hold up the others.
                    for entry in entries:
                        await self._write([entry])
                    return
                tries += 1
                if tries == 1 or tries % 20 == 0:
                    log.warning("answers not recorded yet; retrying", count=len(entries),
                                first=entries[0]["id"], tries=tries, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            ids = [e["id"] for e in entries]
            # Not awaited: a done mark only spares a replay of what the database now holds.
            self._journal_lines.enqueue([{"done": i} for i in ids])
            self.holding.difference_update(ids)
            return

    async def _apply(self, conn: Any, entries: list[dict[str, Any]]) -> None:
        by_id = {e["id"]: e for e in entries}
        sent = await outcomes.mark_sent(conn, [
            (e["id"], e["channel"], e["provider_ids"]) for e in entries if e["kind"] == "sent"])
        failed = await outcomes.mark_failed(conn, [
            (e["id"], e["error"], e["park"], e["retry_in"])
            for e in entries if e["kind"] == "failed"])
        # A reconciled hand-over (no channel: its answer never came) or an unanswered send.
        await outcomes.mark_unknown(conn, [
            (e["id"], e["error"], (e.get("provider_ids") or None) if "channel" in e else None)
            for e in entries if e["kind"] not in ("sent", "failed")])
        events: list[tuple[dict[str, Any], Payload]] = []
        for delivery_id in sorted(sent):
            e = by_id[delivery_id]
            events.append((e, MessageSent(source_event_id=e["source_event_id"],
                                          channel=e["channel"], template=e["template"])))
        for delivery_id in sorted(failed):
            e = by_id[delivery_id]
            if e["park"]:
                events.append((e, MessageParked(
                    source_event_id=e["source_event_id"], channel=e["channel"],
                    template=e["template"], reason=e["error"])))
        await self._emit(conn, events)

    async def on_receipts(self, receipts: list[tuple[str, str]]) -> None:
        """The SMSC counts a receipt as delivered once acknowledged: keep trying to write
        these (the receipts that came in together, in one transaction)."""
        for _, stat in receipts:
            metrics.RECEIPTS.labels(stat).inc()
        delay = 0.2
        while True:
            try:
                async with self.db.pool.acquire() as conn, conn.transaction():
                    await outcomes.record_receipts(conn, receipts)
                return
            except Exception as exc:
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    log.error("delivery receipts not recorded", count=len(receipts),
                              error=repr(exc))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _emit(self, conn: Any, events: list[tuple[dict[str, Any], Payload]]) -> None:
        messages = []
        for entry, payload in events:
            envelope = new_envelope(payload.event_type, payload, source="notify",
                                    region=self.settings.region,
                                    event_id=derived_id(entry["source_event_id"],
                                                        entry["channel"], payload.event_type,
                                                        entry["attempts"]))
            topic = physical(payload.topic, region=self.settings.region,
                             namespace=self.settings.namespace)
            # The person's ID keys the event (one person's events, one partition); a journal
            # written before the ID was sealed names it in clear, which opens as it is.
            person_id = repo.ADDRESSEE.open(entry.get("person_ref") or entry.get("person_id"))
            messages.append(OutboxMessage(topic, str(person_id).encode(),
                                          envelope.to_bytes()))
        await write_outbox(conn, self.db.schema, messages)
