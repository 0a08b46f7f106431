"""Topics are declared with the configured retention: dead letters kept far longer."""
from __future__ import annotations

import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.messaging.admin import TopicPolicy, bootstrap_servers, ensure_topics
from shared.settings import PlatformSettings
from tests.conftest import TestStack


def test_policy_comes_from_settings() -> None:
    settings = PlatformSettings(topic_replication_factor=3, topic_min_insync_replicas=2,
                                deadletter_retention_days=30)
    policy = TopicPolicy.from_settings(settings)
    assert policy.replication_factor == 3
    assert policy.configs("medins.210200.deadletter") == {
        "retention.ms": str(30 * 24 * 3600 * 1000), "min.insync.replicas": "2"}
    assert policy.configs("medins.210200.enrollment.events")["retention.ms"] == str(
        7 * 24 * 3600 * 1000)


async def test_declared_topics_carry_their_retention(stack: TestStack) -> None:
    prefix = f"tp{uuid.uuid4().hex[:6]}.medins.210200"
    dead, events = f"{prefix}.deadletter", f"{prefix}.enrollment.events"
    await ensure_topics(stack.broker_url, [dead, events], 4,
                        policy=TopicPolicy(retention_hours=1, deadletter_retention_days=30))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(stack.broker_url))
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dead),
             ConfigResource(ConfigResourceType.TOPIC, events)])
    finally:
        await admin.close()
    retention = {resource[3]: dict((c[0], c[1]) for c in resource[4])["retention.ms"]
                 for response in described for resource in response.resources}
    assert retention == {dead: str(30 * 24 * 3600 * 1000), events: str(3600 * 1000)}
