"""Group commit: callers' items are flushed together, each caller resumes after its own."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """`await submit(item)` returns once `flush` has taken a batch holding the item (or raises
    what that flush raised). One flush runs at a time; whatever arrives while it runs forms the
    next batch, so a slow flush (an fsync, a database round trip) gathers more per call instead
    of queueing calls."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], max_batch: int = 1000) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self._waiting: list[tuple[list[T], asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.queued = 0  # items waiting for a flush (not counting the one under way)

    async def submit(self, item: T) -> None:
        await self.submit_many([item])

    async def submit_many(self, items: list[T]) -> None:
        if items:
            # A cancelled caller cancels only its future: its items stay queued and are flushed.
            await self.enqueue(items)

    def enqueue(self, items: list[T]) -> asyncio.Future[None]:
        """Queue without waiting; the future tells when (and whether) the items were flushed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Read even when nobody awaits it, so a failed flush is not logged as unread.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.append((items, future))
        self.queued += len(items)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return future

    @property
    def busy(self) -> bool:
        return bool(self._waiting) or (self._runner is not None and not self._runner.done())

    async def wait_idle(self) -> None:
        while self._runner is not None and not self._runner.done():
            await asyncio.wait([self._runner])

    def _take(self) -> list[tuple[list[T], asyncio.Future[None]]]:
        taken, count = 0, 0
        for items, _ in self._waiting:
            taken += 1
            count += len(items)
            if count >= self.max_batch:
                break
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        self.queued -= count
        return batch

    async def _run(self) -> None:
        # One turn of the loop lets the callers woken together join the first batch.
        await asyncio.sleep(0)
        while self._waiting:
            batch = self._take()
            try:
                await self._flush([item for items, _ in batch for item in items])
            except asyncio.CancelledError:
                for _, future in [*batch, *self._waiting]:
                    future.cancel()
                self._waiting, self.queued = [], 0
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
