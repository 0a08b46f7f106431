"""The consumer's fetch wait and batch window come from the settings, with low-latency defaults."""
from __future__ import annotations

import asyncio

from shared.messaging.app import create_app
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
