"""The consumer's fetch wait and batch window come from the settings, with low-latency defaults."""
from __future__ import annotations

import asyncio

from shared.messaging.app import create_app, wait_longer_when_idle
from shared.settings import PlatformSettings


def built_fetch_wait(settings: PlatformSettings) -> int:
    async def build() -> int:
        app = create_app("enrollment", settings)
        # The consumer Faust's worker would start, built as it builds it (not started).
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    return asyncio.run(build())


def test_defaults_are_low_latency() -> None:
    settings = PlatformSettings()
    assert settings.fetch_max_wait_ms <= 50
    assert settings.batch_within_seconds <= 0.02
    assert built_fetch_wait(settings) == settings.fetch_max_wait_ms


def test_fetch_wait_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDINS_FETCH_MAX_WAIT_MS", "250")
    monkeypatch.setenv("MEDINS_BATCH_WITHIN_SECONDS", "0.2")
    settings = PlatformSettings()
    assert settings.batch_within_seconds == 0.2
    assert built_fetch_wait(settings) == 250


class Fetcher:
    """Stands in for aiokafka's fetcher: its wait, and fetches that bring what they are told."""

    def __init__(self, wait_ms: int) -> None:
        self._fetch_max_wait_ms = wait_ms
        self.brings: list[bool] = []

    async def _proc_fetch_request(self, assignment: object, node_id: int,
                                  request: object) -> bool:
        return self.brings.pop(0)


def waits_after(fetcher: Fetcher, fetches: list[tuple[float, bool]], idle_ms: int) -> list[int]:
    """The wait after each fetch, given (seconds since the start when it ends, brought)."""
    now = [0.0]
    wait_longer_when_idle(fetcher, fetcher._fetch_max_wait_ms, idle_ms, quiet_seconds=1.0,
                          clock=lambda: now[0])

    async def fetch_all() -> list[int]:
        waits = []
        fetcher.brings = [brought for _, brought in fetches]
        for at, _ in fetches:
            now[0] = at
            await fetcher._proc_fetch_request(None, 0, None)
            waits.append(fetcher._fetch_max_wait_ms)
        return waits

    return asyncio.run(fetch_all())


def test_an_idle_consumer_waits_longer_and_a_record_brings_the_short_wait_back() -> None:
    fetched = [(0.02, True), (0.04, False), (0.06, True),  # busy: an empty fetch changes nothing
               (0.5, False), (1.0, False), (1.07, False),  # a second since the last records
               (1.32, False), (1.5, True), (1.52, False)]
    assert waits_after(Fetcher(20), fetched, 250) == [20, 20, 20, 20, 20, 250, 250, 20, 20]


def test_no_idle_wait_above_the_busy_one_changes_nothing() -> None:
    assert waits_after(Fetcher(500), [(1.0, False), (5.0, False), (6.0, True)], 250) == \
        [500, 500, 500]


def test_idle_wait_from_the_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert PlatformSettings().fetch_idle_wait_ms > PlatformSettings().fetch_max_wait_ms
    monkeypatch.setenv("MEDINS_FETCH_IDLE_WAIT_MS", "400")
    app = create_app("enrollment", PlatformSettings())
    assert app.medins_fetch_idle_wait_ms == 400  # type: ignore[attr-defined]
