"""Publishes envelopes as an outside system would: validated against the contract first."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contracts import EVENT_TYPES, ContractError, Envelope, parse_event
from shared.contracts.topics import ALL_TOPICS, physical
from shared.messaging.admin import bootstrap_servers


def complete_envelope(doc: dict[str, Any], region: str, source: str) -> dict[str, Any]:
    """Fill the envelope attributes a sender may leave out (id, time, source, ...)."""
    if "data" not in doc:
        raise ContractError("data: required (the event payload)")
    filled = dict(doc)
    filled.setdefault("specversion", "1.0")
    filled.setdefault("id", str(uuid.uuid4()))
    filled.setdefault("source", source)
    filled.setdefault("time", datetime.now(UTC).isoformat())
    filled.setdefault("correlationid", filled["id"])
    filled.setdefault("regioncode", region)
    filled.setdefault("datacontenttype", "application/json")
    return filled


def resolve_topic(name: str, region: str, namespace: str) -> str:
    return physical(name, region=region, namespace=namespace) if name in ALL_TOPICS else name


def partition_key(envelope: Envelope) -> bytes:
    """The contract's key field (a person, an employer): their events stay in order."""
    model = EVENT_TYPES.get(envelope.type)
    value = envelope.data.get(model.key_field) if model is not None else None
    return str(value or envelope.subject or envelope.id).encode()


async def publish(broker_url: str, topic: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker_url), acks="all",
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, e.to_bytes(), key=partition_key(e))
                   for e in envelopes]
        for f in futures:
            await f
    finally:
        await producer.stop()


def validate_documents(docs: list[dict[str, Any]], region: str,
                       source: str) -> tuple[list[Envelope], list[str]]:
    envelopes, errors = [], []
    for index, doc in enumerate(docs):
        try:
            envelope, _ = parse_event(complete_envelope(doc, region, source))
            envelopes.append(envelope)
        except ContractError as exc:
            errors.append(f"event {index}: {exc.reason}")
    return envelopes, errors
