"""Batching a Faust stream: the next batch fills while one is handled; acks only after it."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.messaging.batches import run_batches


@dataclass
class Event:
    n: int


@dataclass
class Waited:
    stopped: bool = False


@dataclass
class FakeStream:
    """The part of a Faust stream run_batches uses; `deliver` plays Faust's passive drainer
    (one event at a time through the processors)."""

    should_stop: bool = False
    enable_acks: bool = True
    current_event: Event | None = None
    acked: list[int] = field(default_factory=list)
    _processors: list[Any] = field(default_factory=list)

    class channel:  # noqa: N801 - stands in for the stream's channel
        def __aiter__(self) -> FakeStream.channel:
            return self

        async def __anext__(self) -> Any:
            raise StopAsyncIteration

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, _channel: Any) -> None:
        pass

    async def wait(self, event: asyncio.Event, timeout: float | None = None) -> Waited:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        return Waited(self.should_stop)

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float | None = None) -> bool:
        return (await self.wait(event, timeout)).stopped

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.n)
        return True

    async def deliver(self, n: int) -> None:
        self.current_event = Event(n)
        for processor in self._processors:
            await processor(n)


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


async def test_the_next_batch_fills_while_one_is_handled_and_acks_follow_handling() -> None:
    stream = FakeStream()
    stream.channel = FakeStream.channel()  # type: ignore[misc]
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def handle(events: Sequence[Event]) -> None:
        batches.append([e.n for e in events])
        if len(batches) == 1:
            await release.wait()  # the first batch is slow

    runner = asyncio.create_task(run_batches(stream, 4, 0.05, handle))  # type: ignore[arg-type]
    await until(lambda: stream._processors)  # attached, as before Faust starts draining
    for n in (1, 2):
        await stream.deliver(n)
    await until(lambda: batches)
    assert batches == [[1, 2]] and stream.acked == []  # handled, not yet acked

    # While the first batch is handled, four more arrive; a fifth waits for room.
    for n in (3, 4, 5, 6):
        await stream.deliver(n)
    fifth = asyncio.create_task(stream.deliver(7))
    await asyncio.sleep(0.1)
    assert not fifth.done() and stream.acked == []

    release.set()
    await asyncio.wait_for(fifth, 2)
    while len(batches) < 3:
        await asyncio.sleep(0.01)
    # Taken at once when the first was done (no window), each acked after its own handling.
    while len(stream.acked) < 7:
        await asyncio.sleep(0.01)
    assert batches == [[1, 2], [3, 4, 5, 6], [7]]
    assert stream.acked == [1, 2, 3, 4, 5, 6, 7]
    assert stream.enable_acks is False  # Faust must not ack as events pass by

    stream.should_stop = True
    await stream.deliver(8)  # wakes the runner, which sees the stop
    await asyncio.wait_for(runner, 2)
    assert stream.enable_acks is True and stream._processors == []
    assert 8 not in stream.acked  # never handled: redelivered after a restart


async def test_a_failing_handler_acks_nothing_of_its_batch() -> None:
    stream = FakeStream()
    stream.channel = FakeStream.channel()  # type: ignore[misc]

    async def handle(events: Sequence[Event]) -> None:
        raise RuntimeError("database away")

    runner = asyncio.create_task(run_batches(stream, 10, 0.01, handle))  # type: ignore[arg-type]
    await until(lambda: stream._processors)
    await stream.deliver(1)
    try:
        await asyncio.wait_for(runner, 2)
    except RuntimeError:
        pass
    assert stream.acked == []
