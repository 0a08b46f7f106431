"""Dead letters sealed at rest: refused bytes and key encrypted, opened to list, show, replay."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared.db.sealed import keys

if TYPE_CHECKING:
    from shared.settings import PlatformSettings

# A sealed letter names the data key in this header; a letter without it is one written
# before sealing (read as it is). Its Kafka key (a resident ID) travels sealed in `dlq-key`.
SEALED_HEADER = "dlq-sealed"
KEY_HEADER = "dlq-key"


def _context(topic: str, partition: int | str, offset: int | str) -> str:
    # Bound to where the letter came from (the clear dlq-* headers): a body moved onto
    # another letter does not open.
    return f"deadletter|{topic}|{partition}|{offset}"


def seal_letter(value: bytes, key: bytes | None, topic: str, partition: int, offset: int
                ) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The letter's body and the headers that carry its sealed key and key id. The input
    topics keep their bytes for days; a letter is kept for months, so it keeps them sealed."""
    ring = keys()
    context = _context(topic, partition, offset)
    headers: list[tuple[str, str]] = [(SEALED_HEADER, ring.current_seal.key_id)]
    if key is not None:
        headers.append((KEY_HEADER, ring.seal_raw(key, context + "|key").hex()))
    return ring.seal_raw(value, context), tuple(headers)


def open_letter(value: bytes, headers: Iterable[tuple[str, bytes]]
                ) -> tuple[bytes, bytes | None, bool]:
    """(original bytes, original key, was sealed) of a letter as read from the topic; the key
    is the record's own for a letter written before sealing (the caller passes it as None)."""
    found = {k: v for k, v in headers}
    if SEALED_HEADER not in found:
        return value, None, False
    context = _context(found.get("dlq-topic", b"").decode(errors="replace"),
                       found.get("dlq-partition", b"").decode(errors="replace"),
                       found.get("dlq-offset", b"").decode(errors="replace"))
    ring = keys()
    body = ring.open_raw(value, context)
    sealed_key = found.get(KEY_HEADER)
    key = ring.open_raw(bytes.fromhex(sealed_key.decode("ascii")), context + "|key") \
        if sealed_key else None
    return body, key, True


async def read_letter_records(settings: PlatformSettings, idle_ms: int = 1500) -> list[Any]:
    """Every record of the region's dead-letter topic as stored (read without a group)."""
    from aiokafka import AIOKafkaConsumer

    from shared.contracts.topics import DEAD_LETTER, physical
    from shared.messaging.admin import bootstrap_servers, kafka_client_options

    topic = physical(DEAD_LETTER, region=settings.region, namespace=settings.namespace)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(settings.broker_url),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None, **kafka_client_options(settings))
    await consumer.start()
    found: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=idle_ms):
            for records in batch.values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


async def letters_per_key(settings: PlatformSettings) -> Counter[str]:
    """How many letters each data key sealed: a key still sealing letters must stay until
    they expire (MEDINS_DEADLETTER_RETENTION_DAYS)."""
    counts: Counter[str] = Counter()
    for r in await read_letter_records(settings, idle_ms=800):
        key_id = dict(r.headers or ()).get(SEALED_HEADER)
        if key_id is not None:
            counts[key_id.decode(errors="replace")] += 1
    return counts
