"""Prometheus metrics every consumer reports, served on each worker's /metrics."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "medins_events_processed_total", "Events handled and committed", ["service", "topic", "type"]
)
EVENTS_DUPLICATE = Counter(
    "medins_events_duplicate_total", "Redelivered events skipped by event id", ["service", "topic"]
)
EVENTS_NOT_HANDLED = Counter(
    "medins_events_not_handled_total",
    "Events of a type this service has no handler for, passed over before any verifying or "
    "parsing (another service on the topic handles them)", ["service", "topic"]
)
EVENTS_DEAD_LETTERED = Counter(
    "medins_events_dead_lettered_total", "Events sent to the dead-letter topic",
    ["service", "topic"]
)
EVENTS_FAILED = Counter(
    "medins_events_failed_total",
    "Transient failures of a batch (retried, never dropped)",
    ["service", "topic"],
)
BATCH_SECONDS = Histogram(
    "medins_batch_seconds", "Time to process one consumed batch", ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "medins_batch_size", "Records per consumed batch", ["service"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000),
)
OUTBOX_PUBLISHED = Counter("medins_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PENDING = Gauge("medins_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_SECONDS = Gauge("medins_outbox_oldest_seconds",
                              "Age of the oldest outbox row not yet published", ["service"])
OUTBOX_SET_ASIDE = Gauge("medins_outbox_set_aside",
                         "Outbox rows set aside for a permanent publishing failure", ["service"])
