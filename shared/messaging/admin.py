"""Declares the platform's topics with one partition count, as the broker facts require."""
from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.contracts import topics


def bootstrap_servers(broker_url: str) -> str:
    """faust-style `kafka://host:port;host2:port` to aiokafka's `host:port,host2:port`."""
    return ",".join(part.split("://", 1)[-1] for part in broker_url.replace(";", ",").split(","))


async def ensure_topics(broker_url: str, names: list[str], partitions: int,
                        deadline_seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline_seconds
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(n, num_partitions=partitions, replication_factor=1)
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
