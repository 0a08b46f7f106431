"""Notify's Prometheus metrics: sends by channel and outcome, latency, what needs attention."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("medins_notify_sent_total", "Messages accepted by the gateway", ["channel"])
FAILED = Counter("medins_notify_failed_total", "Send attempts that failed", ["channel"])
PARKED = Counter("medins_notify_parked_total", "Messages parked after failing", ["channel"])
NOT_SENT = Counter("medins_notify_not_sent_total",
                   "Messages parked before sending: a value missing or rule text not for a person",
                   ["template"])
RETRIED = Counter("medins_notify_retried_total", "Sends after a failure or an operator requeue",
                  ["channel"])
UNKNOWN = Counter("medins_notify_unknown_total", "Sends with an unknown outcome", ["channel"])
RECEIPTS = Counter("medins_notify_receipts_total", "SMPP delivery receipts", ["stat"])
SEND_SECONDS = Histogram("medins_notify_send_seconds", "Time to hand one message to the gateway",
                         ["channel"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
ATTENTION = Gauge("medins_notify_attention", "Messages parked or with unknown outcome now",
                  ["channel", "status"])


def set_attention(counts: Iterable[Any]) -> None:
    ATTENTION.clear()
    for row in counts:
        ATTENTION.labels(row["channel"], row["status"]).set(row["n"])
CHANNEL_UP = Gauge("medins_notify_channel_up",
                   "1 while the channel's gateway answers, 0 while its circuit breaker is open",
                   ["channel"])
