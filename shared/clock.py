"""The platform's clock: business dates in China Standard Time, never the sender's clock."""
from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")

# MEDINS_CLOCK_START (an ISO date-time) starts the platform's clock at that instant, running at
# real speed from process start: how tests and demos show what happens on a given day (say
# 2027-01-01). Unset in production.
_START = os.environ.get("MEDINS_CLOCK_START")
_ORIGIN = datetime.fromisoformat(_START) if _START else None
if _ORIGIN is not None and _ORIGIN.tzinfo is None:
    _ORIGIN = _ORIGIN.replace(tzinfo=CHINA)
_MONOTONIC_AT_START = time.monotonic()


def now() -> datetime:
    """The platform's current instant (UTC, aware)."""
    if _ORIGIN is None:
        return datetime.now(UTC)
    return (_ORIGIN + timedelta(seconds=time.monotonic() - _MONOTONIC_AT_START)).astimezone(UTC)


def china_date(moment: datetime) -> date:
    return moment.astimezone(CHINA).date() if moment.tzinfo else moment.date()


def china_today() -> date:
    return now().astimezone(CHINA).date()


class SenderClockError(ValueError):
    """A sender's timestamp lies in the future beyond the tolerance: refused, never believed."""

    rule = "future_timestamp"

    def __init__(self, field: str, claimed: datetime, received_at: datetime) -> None:
        self.field = field
        self.reason = (f"{field}: {claimed.isoformat()} is later than the platform's time of "
                       f"receipt {received_at.isoformat(timespec='seconds')}; a request cannot "
                       f"be dated in the future")
        super().__init__(self.reason)


def receipt_date(received_at: datetime, claimed: datetime | None = None, *,
                 field: str = "submitted_at", tolerance_seconds: float = 300.0) -> date:
    """The China date the platform received a request. The sender's own timestamp (`claimed`)
    is kept as information only; one in the future beyond the tolerance is refused."""
    if claimed is not None:
        aware = claimed if claimed.tzinfo else claimed.replace(tzinfo=CHINA)
        if aware > received_at + timedelta(seconds=tolerance_seconds):
            raise SenderClockError(field, aware, received_at)
    return china_date(received_at)
