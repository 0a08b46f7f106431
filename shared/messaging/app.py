"""Faust app factory with the platform's settings applied."""
from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from shared.messaging.admin import faust_credentials
from shared.settings import PlatformSettings


class WrittenOrder(DefaultSchedulingStrategy):
    """Hands a fetch's records over in the order they were written (record timestamps),
    each partition's own order kept, instead of Faust's round robin between topics.

    A service reads one topic per producer; a person's application and the decision on it
    arrive on two topics. Round robin could hand the decision over first when both are in
    one fetch; merging by time keeps what one sender wrote in sequence in that sequence.
    Across fetches, and between producers whose clocks differ, nothing orders the topics:
    handlers park what comes too early (payments before the approval).
    """

    def iterate(self, records: Mapping[TP, list[Any]]) -> Iterator[tuple[TP, Any]]:
        streams = [[(tp, record) for record in batch] for tp, batch in records.items()]
        # heapq.merge only compares the heads, so each partition's order is never changed.
        return heapq.merge(*streams, key=lambda item: item[1].timestamp or 0)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with the platform's fetch wait.

    Faust builds the worker's consumer with `fetch_max_wait_ms=1500` and no setting for it
    (robinhood/faust#281 was never merged). Tansu answers a fetch only when that wait runs
    out, so it alone put ~400 ms into the median latency. aiokafka reads the value from the
    consumer when it starts its fetcher, so it is set on the built, not yet started, consumer.
    """

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            # An aiokafka that names it otherwise would silently keep 1.5 s: say so at start.
            raise RuntimeError("aiokafka consumer has no _fetch_max_wait_ms to set")
        consumer._fetch_max_wait_ms = getattr(self.app, "medins_fetch_max_wait_ms", 1500)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        fetcher = self._consumer._fetcher  # its wait is the one set on the consumer above
        wait_longer_when_idle(fetcher, fetcher._fetch_max_wait_ms,
                              getattr(self.app, "medins_fetch_idle_wait_ms", 0))


def wait_longer_when_idle(fetcher: Any, busy_ms: int, idle_ms: int,
                          quiet_seconds: float = 3.0,
                          clock: Callable[[], float] = time.monotonic) -> None:
    """An aiokafka fetcher's wait becomes `idle_ms` once its fetches have brought nothing for
    `quiet_seconds`, and `busy_ms` again with the first fetch that brings records (nothing
    changes when `idle_ms` is not above `busy_ms`).

    Tansu answers a fetch only when its wait runs out, so the short wait a busy worker needs
    had every idle consumer ask 50 times a second: an idle `medins up` kept the broker at
    ~90% of a core, and ~10% with this. Seconds with nothing, not one empty fetch: at 50
    events a second a fetch of 20 ms often comes back empty, and doubling the wait after
    each such fetch was measured adding 240 ms to the p99; a one-second trigger still cost
    the first events after the benchmark's pauses. The first event after a quiet spell waits
    at most `idle_ms` more. The next request takes the fetcher's `_fetch_max_wait_ms` as it
    is built."""
    if idle_ms <= busy_ms:
        return
    fetch = fetcher._proc_fetch_request
    last_brought = clock()

    async def fetch_and_adapt(assignment: Any, node_id: int, request: Any) -> bool:
        nonlocal last_brought
        brought = await fetch(assignment, node_id, request)
        if brought:
            last_brought = clock()
            fetcher._fetch_max_wait_ms = busy_ms
        elif clock() - last_brought >= quiet_seconds:
            fetcher._fetch_max_wait_ms = idle_ms
        return bool(brought)

    fetcher._proc_fetch_request = fetch_and_adapt


class _Consumer(faust_aiokafka.Consumer):
    """Faust's consumer, handing each fetch over in one task instead of four per record.

    Faust delivers every record through `wait_first(deliver, flow suspended)`, which starts
    four tasks and cancels three: each record waits several turns of the event loop, and a
    turn is as long as whatever else runs on it (a batch being decided, notify's senders).
    Measured at 200 stories/s: 3-5 ms a record, so notify took ~250 records/s into batches
    of 8 while thousands waited fetched. Here the fetch itself is awaited as before, then
    its records are delivered in one task raced once against a suspended flow (a
    rebalance): what a rebalance cuts short is fetched again from the committed offsets,
    as with Faust's own loop. Offsets read, gaps and periodic commits are kept as Faust does.
    """

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # a fetch that returns at once still lets the loop turn
                try:
                    first = None if self.should_stop else await anext(fetched, None)
                    if first is not None:
                        await self.wait_first(self._hand_over(first, fetched),
                                              self.suspend_flow.wait())
                finally:
                    await fetched.aclose()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except (*self.consumer_stopped_errors, asyncio.CancelledError):
            if self.transport.app.should_stop:
                return  # the worker is stopping: the broker or a cancel ended the fetch
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _hand_over(self, first: tuple[TP, Any], rest: AsyncIterator[tuple[TP, Any]]
                         ) -> None:
        """Deliver a fetch's records in order; the iterator stops itself on a rebalance."""
        deliver = self.callback
        read_offsets = self._read_offset
        since_yield = 0
        tp, message = first
        while True:
            read = read_offsets[tp]
            if read is None or message.offset >= read:
                if read and message.offset - read > 1 and \
                        self.app.topics.acks_enabled_for(message.topic):
                    await self._add_gap(tp, read + 1, message.offset)  # offsets not in the log
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                await deliver(message)
                read_offsets[tp] = message.offset
            since_yield += 1
            if since_yield >= 100:  # others get a turn within a large fetch, as Faust does
                since_yield = 0
                await asyncio.sleep(0)
            following = await anext(rest, None)
            if following is None:
                return
            tp, message = following


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class PlatformApp(faust.App):
    """A Faust app whose Kafka consumer takes the platform's fetch wait."""

    medins_fetch_max_wait_ms: int = 1500
    medins_fetch_idle_wait_ms: int = 0

    def _new_transport(self) -> Any:
        url = self.conf.broker_consumer[0]
        if url.scheme not in ("kafka", "aiokafka"):
            return super()._new_transport()
        return _Transport(self.conf.broker_consumer, self)


def create_app(service: str, settings: PlatformSettings) -> faust.App:
    timeouts = (
        {"broker_session_timeout": 6.0, "broker_heartbeat_interval": 1.0,
         "broker_rebalance_timeout": 3.0}
        if settings.dev_timeouts else {}
    )
    app = PlatformApp(
        settings.app_id(service),
        broker=settings.broker_url,
        autodiscover=False,
        store="memory://",
        datadir=str(settings.state_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # Topics are declared by `ensure_topics` with the platform's partition count.
        topic_allow_declare=False,
        topic_disable_leader=True,
        # A new consumer group must read what was published before it joined.
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        ConsumerScheduler=WrittenOrder,
        **timeouts,
        # TLS and SASL from the settings, the same as every plain client (admin, relay).
        **faust_credentials(settings),
    )
    app.medins_fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.medins_fetch_idle_wait_ms = settings.fetch_idle_wait_ms
    return app
