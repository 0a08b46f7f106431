"""Declares the platform's topics with one partition count, as the broker facts require."""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.contracts import topics
from shared.settings import PlatformSettings


def _ssl_context(settings: PlatformSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(str(settings.kafka_ssl_certfile),
                                str(settings.kafka_ssl_keyfile or "") or None)
    return context


def kafka_client_options(settings: PlatformSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for TLS and SASL from the settings; {} for PLAINTEXT."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return {}
    if protocol not in ("SSL", "SASL_SSL", "SASL_PLAINTEXT"):
        raise ValueError(f"MEDINS_KAFKA_SECURITY_PROTOCOL: unknown protocol {protocol}")
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL"):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ValueError("SASL needs MEDINS_KAFKA_SASL_USERNAME and _PASSWORD")
        options |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                    "sasl_plain_username": settings.kafka_sasl_username,
                    "sasl_plain_password": settings.kafka_sasl_password.get_secret_value()}
    return options


def faust_credentials(settings: PlatformSettings) -> dict[str, Any]:
    """faust.App keyword arguments with the same transport settings as the plain clients."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return {}
    options = kafka_client_options(settings)
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(options["ssl_context"])}
    return {"broker_credentials": faust.SASLCredentials(
        username=options["sasl_plain_username"], password=options["sasl_plain_password"],
        ssl_context=options.get("ssl_context"), mechanism=options["sasl_mechanism"])}


def bootstrap_servers(broker_url: str) -> str:
    """faust-style `kafka://host:port;host2:port` to aiokafka's `host:port,host2:port`."""
    return ",".join(part.split("://", 1)[-1] for part in broker_url.replace(";", ",").split(","))


@dataclass(frozen=True)
class TopicPolicy:
    """Replication and retention for declared topics: settings, so a three-broker cluster
    (RF 3, min ISR 2) and the single embedded broker (RF 1) use the same code."""

    replication_factor: int = 1
    min_insync_replicas: int | None = None
    retention_hours: float = 7 * 24
    # Dead letters wait for an operator: kept well beyond the broker's 7-day default.
    deadletter_retention_days: float = 90

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> TopicPolicy:
        return cls(settings.topic_replication_factor, settings.topic_min_insync_replicas,
                   settings.topic_retention_hours, settings.deadletter_retention_days)

    def configs(self, name: str) -> dict[str, str]:
        hours = (self.deadletter_retention_days * 24 if name.endswith(f".{topics.DEAD_LETTER}")
                 else self.retention_hours)
        configs = {"retention.ms": str(int(hours * 3600 * 1000))}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return configs


async def ensure_topics(broker_url: str, names: list[str], partitions: int,
                        deadline_seconds: float = 30.0,
                        policy: TopicPolicy | None = None,
                        client_options: dict[str, Any] | None = None) -> None:
    policy = policy or TopicPolicy()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline_seconds
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers(broker_url),
            **(client_options if client_options is not None
               else kafka_client_options(PlatformSettings())))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(n, num_partitions=partitions,
                                  replication_factor=policy.replication_factor,
                                  topic_configs=policy.configs(n))
                         for n in missing]
                    )
                except TopicAlreadyExistsError:
                    pass  # another starter won the race
            return
        except KafkaConnectionError:
            if loop.time() > stop_at:
                raise
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


def region_topics(region: str, namespace: str) -> list[str]:
    return [topics.physical(t, region=region, namespace=namespace) for t in topics.ALL_TOPICS]
