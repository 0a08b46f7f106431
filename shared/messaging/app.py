"""Faust app factory with the platform's settings applied."""
from __future__ import annotations

import faust

from shared.messaging.admin import faust_credentials
from shared.settings import PlatformSettings


def create_app(service: str, settings: PlatformSettings) -> faust.App:
    timeouts = (
        {"broker_session_timeout": 6.0, "broker_heartbeat_interval": 1.0,
         "broker_rebalance_timeout": 3.0}
        if settings.dev_timeouts else {}
    )
    return faust.App(
        settings.app_id(service),
        broker=settings.broker_url,
        autodiscover=False,
        store="memory://",
        datadir=str(settings.state_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # Topics are declared by `ensure_topics` with the platform's partition count.
        topic_allow_declare=False,
        topic_disable_leader=True,
        # A new consumer group must read what was published before it joined.
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        **timeouts,
        # TLS and SASL from the settings, the same as every plain client (admin, relay).
        **faust_credentials(settings),
    )
