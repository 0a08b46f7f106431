"""Publishes envelopes as an outside system would: validated against the contract, signed."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contracts import EVENT_TYPES, ContractError, Envelope, parse_event
from shared.contracts.topics import ALL_TOPICS, physical
from shared.messaging.admin import bootstrap_servers, kafka_client_options
from shared.settings import PlatformSettings
from shared.trust import (
    DEFAULT_TABLE,
    Authorisation,
    Keyring,
    SigningKey,
    TrustStore,
    sign_headers,
    signer_for,
)


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


class Signer:
    """Picks the key for each envelope: a given one (`medins publish --key`), or else the
    keyring's key of the producer the authorisation table allows for the event type, as the
    dev stack and the tests play every outside system."""

    def __init__(self, keyring_dir: Path, trust_dir: Path, key: SigningKey | None = None
                 ) -> None:
        self.key = key
        self.keyring = Keyring(keyring_dir)
        local = trust_dir / "authorisation.toml"
        self.table = Authorisation.load(local if local.exists() else DEFAULT_TABLE)
        self.revoked = TrustStore(trust_dir).revoked

    @classmethod
    def from_settings(cls, settings: PlatformSettings | None = None,
                      key: SigningKey | None = None) -> Signer:
        settings = settings or PlatformSettings()
        return cls(settings.keyring_dir, settings.trust_dir, key)

    def headers(self, envelope: Envelope, value: bytes) -> list[tuple[str, bytes]] | None:
        key = self.key or signer_for(self.table, self.keyring, self.revoked, envelope.type,
                                     envelope.regioncode)
        return sign_headers(value, key) if key is not None else None


async def publish(broker_url: str, topic: str, envelopes: list[Envelope],
                  signer: Signer | None = None,
                  client_options: dict[str, Any] | None = None) -> None:
    """Send envelopes, each signed over its exact bytes (unsigned when no key is found:
    consumers refuse it, which is what a test of that wants)."""
    signer = signer or Signer.from_settings()
    options = client_options if client_options is not None else kafka_client_options(
        PlatformSettings())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker_url), acks="all",
                                linger_ms=5, **options)
    await producer.start()
    try:
        futures = []
        for e in envelopes:
            value = e.to_bytes()
            futures.append(await producer.send(topic, value, key=partition_key(e),
                                               headers=signer.headers(e, value)))
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
