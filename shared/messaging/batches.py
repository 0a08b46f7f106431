"""Batches from a Faust stream that keep filling while the previous batch is handled."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.types import EventT


async def run_batches(stream: faust.StreamT[Any], max_size: int, within: float,
                      handle: Callable[[Sequence[EventT]], Awaitable[None]]) -> None:
    """Hand the stream's events to `handle` in batches of at most `max_size`, one batch at a
    time, acking each event only once the batch holding it was handled.

    Faust's `take_events` stops buffering while a batch is handled, so under a backlog each
    batch holds only what arrives in one window after the previous one (~135 events at 10 ms
    here). Here the next batch fills while this one is handled, up to `max_size` (then the
    stream waits), and is taken as soon as `handle` returns: under a backlog batches grow to
    `max_size`; on a quiet stream the first event of a batch waits at most `within` for others.
    """
    filling: list[EventT] = []
    arrived = asyncio.Event()  # something is waiting to be taken
    full = asyncio.Event()     # `max_size` are waiting: take them now
    room = asyncio.Event()     # the batch was taken: the stream may add again
    room.set()

    async def add(value: Any) -> Any:
        event = stream.current_event
        if event is None:
            raise RuntimeError("stream event missing while batching")
        while len(filling) >= max_size and not stream.should_stop:
            room.clear()
            await stream.wait(room)
        filling.append(event)
        arrived.set()
        if len(filling) >= max_size:
            full.set()
        return value

    acks_before = stream.enable_acks
    # Acked here, after the batch is handled, never by Faust when an event passes by.
    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # noqa: SLF001 - as take_events does
    try:
        while not stream.should_stop:
            if not filling:
                # Quiet: wait for a first event, then briefly for the ones right behind it.
                arrived.clear()
                if await stream.wait_for_stopped(arrived):
                    break
                if len(filling) < max_size:
                    await stream.wait_for_stopped(full, timeout=within)
            batch = list(filling)
            filling.clear()
            full.clear()
            room.set()
            if not batch:
                continue
            await handle(batch)
            for event in batch:
                await stream.ack(event)
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add)  # noqa: SLF001
