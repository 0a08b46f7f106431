"""Batches taken straight from a Faust stream's channel queue, which fills while one is handled."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from faust.types import EventT


async def run_batches(stream: faust.StreamT[Any], max_size: int, within: float,
                      handle: Callable[[Any], Awaitable[None]], max_bytes: int,
                      prepare: Callable[[Sequence[EventT]], Any] | None = None) -> None:
    """Hand the stream's events to `handle` in batches of at most `max_size` events and about
    `max_bytes` of record values (always at least one event), one batch at a time, acking
    each event only once the batch holding it was handled.

    Events are taken from the channel's queue, all that wait at once, not through the
    stream's iterator: Faust's iterator gives the event loop a turn before every event, and
    under load a turn lasts milliseconds (a batch being decided, notify's senders). That
    held notify to ~500 events a second in batches of ~25 while thousands waited in the
    queue. The queue keeps filling while a batch is handled (Faust stops fetching a
    partition when it is nearly full), so under a backlog batches are `max_size`; on a quiet
    stream the first event of a batch waits `within` for the ones right behind it.

    `prepare` (optional) is the part of the work that needs no state: it runs in a thread
    of its own and `handle` gets its result instead of the events. Under a backlog (the
    batch was closed by a limit, not by an empty queue) the next batch is taken at once and
    prepared while this one is handled: the consumer verifies and parses the next batch
    while it waits for the database on this one. Batches are still handled, and acked, one
    at a time in the order taken.
    """
    queue = aiter(stream.channel).queue  # the iterating channel: the one Faust delivers to
    loop = asyncio.get_running_loop()
    helper = ThreadPoolExecutor(1, thread_name_prefix="batch-prepare") if prepare else None

    def start(batch: list[EventT]) -> asyncio.Future[Any] | None:
        return loop.run_in_executor(helper, prepare, batch) if prepare else None

    def take_waiting(batch: list[EventT], size: int) -> bool:
        """Add what waits to `batch` up to the limits; True when a limit closed it."""
        while len(batch) < max_size and size < max_bytes:
            if queue.empty():
                return False
            event = queue.get_nowait()
            batch.append(event)
            size += _bytes(event)
        return True

    # The next batch when taken ahead: its events, its preparation, whether a backlog
    # stood behind it.
    following: tuple[list[EventT], asyncio.Future[Any] | None, bool] | None = None
    try:
        while not stream.should_stop:
            if following is not None:
                batch, prepared, backlog = following
                following = None
            else:
                batch = []
                size = 0
                if queue.empty():
                    waited = await stream.wait(queue.get())
                    if waited.stopped:
                        break
                    batch.append(waited.result)
                    size = _bytes(waited.result)
                    if within > 0:
                        await asyncio.sleep(within)
                backlog = take_waiting(batch, size) and not queue.empty()
                prepared = start(batch)
            work = batch if prepared is None else await prepared
            if backlog and prepare is not None:
                ahead: list[EventT] = []
                more = take_waiting(ahead, 0) and not queue.empty()
                if ahead:
                    following = (ahead, start(ahead), more)
            await handle(work)
            for event in batch:
                await stream.ack(event)
    except StopAsyncIteration:
        # Faust ends the channel so when the worker stops; what was not handled is not
        # acked, and comes again after the restart.
        return
    finally:
        if following is not None and following[1] is not None:
            following[1].cancel()
        if helper is not None:
            helper.shutdown(wait=False, cancel_futures=True)


def _bytes(event: EventT) -> int:
    value = event.message.value
    return len(value) if value else 0
