"""Test helpers: polling with a deadline, reading topics, building envelopes."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.contracts.base import Payload
from shared.contracts.envelope import Envelope, new_envelope
from shared.messaging.admin import bootstrap_servers
from shared.trust import ensure_simulated_keys

T = TypeVar("T")


async def poll(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool],
               timeout: float = 30.0, every: float = 0.1) -> T:
    """Fetch until `done` holds; fail with the last value seen when the deadline passes."""
    stop_at = time.monotonic() + timeout
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > stop_at:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(every)


async def read_topic(broker_url: str, topic: str,
                     until: Callable[[list[ConsumerRecord]], bool],
                     timeout: float = 30.0) -> list[ConsumerRecord]:
    """Read a topic from the beginning until `until(records)` holds or the deadline passes."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(broker_url),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    stop_at = time.monotonic() + timeout
    try:
        while not until(records):
            if time.monotonic() > stop_at:
                raise AssertionError(f"{topic}: condition not met within {timeout}s; "
                                     f"{len(records)} records read")
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def read_dead_letters(broker_url: str, topic: str,
                            until: Callable[[list[ConsumerRecord]], bool],
                            timeout: float = 30.0) -> list[ConsumerRecord]:
    """The dead-letter topic as an operator's `medins deadletters` sees it: each letter's
    sealed body and key opened (the records as read carry neither in clear)."""
    from shared.messaging.dead_letters import open_letter

    seen: dict[tuple[int, int], ConsumerRecord] = {}  # each letter opened once, not per poll

    def opened(records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        for r in records:
            if (r.partition, r.offset) not in seen:
                value, key, was_sealed = open_letter(r.value, r.headers or ())
                assert was_sealed, "a dead letter written without sealing"
                seen[r.partition, r.offset] = dataclasses.replace(r, value=value, key=key)
        return [seen[r.partition, r.offset] for r in records]

    return opened(await read_topic(broker_url, topic, lambda rs: until(opened(rs)), timeout))


def envelope(payload: Payload, region: str = "210200", source: str = "/tests") -> Envelope:
    return new_envelope(payload.event_type, payload, source=source, region=region)


def header(record: ConsumerRecord, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode()
    return None


def data_of(record: ConsumerRecord) -> dict[str, Any]:
    import json

    return json.loads(record.value)


def trust_for_session(workdir: Path) -> None:
    """The session's trust store and keyring, with a key for every simulated producer; the
    environment points the publisher (this process) and the workers (its children) at them,
    so `publish` and `envelope` sign as the rightful producer without a test saying so."""
    from shared.identity import REGIONS

    trust, keys = workdir / "trust", workdir / "keys"
    os.environ["MEDINS_TRUST_DIR"] = str(trust)
    os.environ["MEDINS_KEYRING_DIR"] = str(keys)
    ensure_simulated_keys(trust, keys, REGIONS)
    # The session's data keys (health and contact data sealed at rest), in the keyring.
    from shared.db.sealed import create_keys_file

    os.environ.pop("MEDINS_DATA_KEYS", None)
    os.environ["MEDINS_DATA_KEYS_FILE"] = str(keys / "data-keys")
    create_keys_file(keys / "data-keys")


def signed(value: bytes, producer: str = "channels") -> list[tuple[str, bytes]]:
    """Signature headers of a simulated producer's session key, for a raw aiokafka send."""
    from shared.settings import PlatformSettings
    from shared.trust import Keyring, sign_headers

    key = Keyring(PlatformSettings().keyring_dir).current(producer)
    assert key is not None, f"no session key for {producer}"
    return sign_headers(value, key)


@contextlib.asynccontextmanager
async def fresh_schemas(database_url: str, namespace: str, service: str,
                        labels: tuple[str, ...] = ("batch", "single")
                        ) -> AsyncIterator[list[Any]]:
    """Empty, migrated schemas of a service, one per label, each with its started pool:
    the same events fed a batch at once into one and an event at a time into another."""
    from shared.db.migrations import migrate, service_migrations
    from shared.db.pool import Database, connect

    made = []
    admin = await connect(database_url)
    try:
        for label in labels:
            schema = f"{namespace}{service[:5]}_{label}_{uuid.uuid4().hex[:6]}"
            await migrate(admin, schema, service_migrations(service))
            made.append(Database(database_url, schema))
    finally:
        await admin.close()
    for db in made:
        await db.start()
    try:
        yield made
    finally:
        for db in made:
            await db.stop()


def raw_batch(events: list[Envelope]) -> list[Any]:
    """Envelopes as the consumer receives them from one partition, keyed as published."""
    from shared.messaging.consumer import RawMessage
    from shared.messaging.publisher import partition_key

    return [RawMessage("t", 0, offset, partition_key(e), e.to_bytes())
            for offset, e in enumerate(events)]


def counting_groups(event_type: str, handler: Any, calls: dict[str, list[int]]) -> Any:
    """A set-based handler that notes the size of each group it is given, then handles it."""
    from shared.messaging.consumer import batch_handler

    @batch_handler
    async def counted(items: list[Any]) -> None:
        calls.setdefault(event_type, []).append(len(items))
        await handler(items)

    return counted
