"""Batching a Faust stream from its channel queue: the next batch fills while one is handled;
acks only after it; a backlog is taken in full batches."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.messaging.batches import run_batches


@dataclass
class Message:
    value: bytes = b"x"


@dataclass
class Event:
    n: int
    message: Message = field(default_factory=Message)


@dataclass
class Waited:
    result: Any = None
    stopped: bool = False


class Channel:
    """Stands in for the stream's iterating channel: Faust's conductor puts events on its
    queue as they are fetched."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()


@dataclass
class FakeStream:
    """The part of a Faust stream run_batches uses."""

    should_stop: bool = False
    acked: list[int] = field(default_factory=list)
    channel: Channel = field(default_factory=Channel)

    async def wait(self, coro: Any) -> Waited:
        result = await coro
        return Waited(result, self.should_stop)

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.n)
        return True

    def deliver(self, n: int, size: int = 1) -> None:
        self.channel.queue.put_nowait(Event(n, Message(b"x" * size)))


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


def recording(prepared: list[list[int]]) -> Any:
    """A `prepare` that notes each batch it is given and hands on the events' numbers."""
    def prepare(events: Sequence[Event]) -> list[int]:
        prepared.append([e.n for e in events])
        return [e.n for e in events]
    return prepare


async def test_the_next_batch_fills_while_one_is_handled_and_acks_follow_handling() -> None:
    stream = FakeStream()
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def handle(events: Sequence[Event]) -> None:
        batches.append([e.n for e in events])
        if len(batches) == 1:
            await release.wait()  # the first batch is slow

    runner = asyncio.create_task(run_batches(stream, 4, 0.05, handle, 1000))  # type: ignore[arg-type]
    # Quiet: the first event waits the window for the one right behind it.
    await asyncio.sleep(0.01)  # the runner waits on an empty queue
    stream.deliver(1)
    await asyncio.sleep(0.01)
    stream.deliver(2)
    await until(lambda: batches)
    assert batches == [[1, 2]] and stream.acked == []  # handled, not yet acked

    # While the first batch is handled, five more arrive: four make the next batch.
    for n in (3, 4, 5, 6, 7):
        stream.deliver(n)
    await asyncio.sleep(0.1)
    assert batches == [[1, 2]] and stream.acked == []

    release.set()
    # Taken at once when the first was done (no window), each acked after its own handling.
    await until(lambda: len(stream.acked) == 7)
    assert batches == [[1, 2], [3, 4, 5, 6], [7]]
    assert stream.acked == [1, 2, 3, 4, 5, 6, 7]

    stream.should_stop = True
    stream.deliver(8)  # wakes the runner, which sees the stop
    await asyncio.wait_for(runner, 2)
    assert 8 not in stream.acked and batches[-1] == [7]  # never handled: redelivered later


async def test_a_backlog_is_taken_in_full_batches_without_waiting_the_window() -> None:
    stream = FakeStream()
    for n in range(1, 1001):
        stream.deliver(n)
    sizes: list[int] = []

    async def handle(events: Sequence[Event]) -> None:
        sizes.append(len(events))

    # A window of a minute would show if a backlog waited for it.
    runner = asyncio.create_task(run_batches(stream, 300, 60.0, handle, 1 << 20))  # type: ignore[arg-type]
    await until(lambda: len(stream.acked) == 1000)
    assert sizes == [300, 300, 300, 100] and stream.acked == list(range(1, 1001))
    runner.cancel()


async def test_a_batch_closes_at_its_byte_limit_with_at_least_one_event() -> None:
    stream = FakeStream()
    for n, size in enumerate((400, 400, 400, 2000, 10, 10), start=1):
        stream.deliver(n, size)
    batches: list[list[int]] = []

    async def handle(events: Sequence[Event]) -> None:
        batches.append([e.n for e in events])

    runner = asyncio.create_task(run_batches(  # type: ignore[arg-type]
        stream, 100, 0.0, handle, max_bytes=1000))
    await until(lambda: len(stream.acked) == 6)
    # Closed once 1,000 bytes are reached; an event larger than the limit goes alone.
    assert batches == [[1, 2, 3], [4], [5, 6]]
    runner.cancel()


async def test_a_failing_handler_acks_nothing_of_its_batch() -> None:
    stream = FakeStream()

    async def handle(events: Sequence[Event]) -> None:
        raise RuntimeError("database away")

    runner = asyncio.create_task(run_batches(stream, 10, 0.01, handle, 1000))  # type: ignore[arg-type]
    stream.deliver(1)
    try:
        await asyncio.wait_for(runner, 2)
    except RuntimeError:
        pass
    assert stream.acked == []


async def test_under_a_backlog_the_next_batch_is_prepared_while_one_is_handled() -> None:
    stream = FakeStream()
    for n in range(1, 10):
        stream.deliver(n)
    prepared: list[list[int]] = []
    handled: list[list[int]] = []
    release = asyncio.Event()

    async def handle(numbers: list[int]) -> None:
        handled.append(numbers)
        if len(handled) == 1:
            await release.wait()  # the first batch waits for its database

    runner = asyncio.create_task(run_batches(  # type: ignore[arg-type]
        stream, 4, 60.0, handle, 1 << 20, prepare=recording(prepared)))
    # The first batch is handled and the second, taken at once, prepared meanwhile; the
    # third stays queued (one batch ahead at most) and nothing is acked yet.
    await until(lambda: len(prepared) == 2)
    await asyncio.sleep(0.05)
    assert handled == [[1, 2, 3, 4]] and prepared == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert stream.acked == []

    release.set()
    await until(lambda: len(stream.acked) == 9)
    # Handled and acked one batch at a time in the order taken, each with its own result.
    assert handled == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert stream.acked == list(range(1, 10))
    runner.cancel()


async def test_a_quiet_stream_is_not_taken_ahead() -> None:
    stream = FakeStream()
    prepared: list[list[int]] = []
    release = asyncio.Event()

    async def handle(numbers: list[int]) -> None:
        await release.wait()

    runner = asyncio.create_task(run_batches(  # type: ignore[arg-type]
        stream, 4, 0.01, handle, 1 << 20, prepare=recording(prepared)))
    stream.deliver(1)
    await until(lambda: prepared == [[1]])
    # Arriving while the lone first batch is handled: they wait to make a batch together,
    # not a batch of one taken ahead.
    stream.deliver(2)
    stream.deliver(3)
    await asyncio.sleep(0.05)
    assert prepared == [[1]]
    release.set()
    await until(lambda: len(stream.acked) == 3)
    assert prepared == [[1], [2, 3]]
    runner.cancel()
