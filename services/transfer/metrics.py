"""Transfer's Prometheus metrics: overdue clocks now, answers that changed nothing, outcomes."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

OVERDUE = Gauge("medins_transfers_overdue", "Open transfers past a statutory due date now",
                ["direction", "clock"])
ANSWERS_IGNORED = Counter(
    "medins_transfer_answers_ignored_total",
    "Partner answers or messages that changed nothing (duplicate, late, out of order, unknown)",
    ["reason"])
OUTCOMES = Counter("medins_transfers_closed_total", "Transfers closed, by direction and stage",
                   ["direction", "stage"])


def set_overdue(counts: dict[tuple[str, str], int]) -> None:
    OVERDUE.clear()
    for direction in ("out", "in"):
        for clock in ("total", "leg"):
            OVERDUE.labels(direction, clock).set(counts.get((direction, clock), 0))
