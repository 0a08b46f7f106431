"""Business dates are China Standard Time dates, whatever the server's zone."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def china_date(moment: datetime) -> date:
    return moment.astimezone(CHINA).date() if moment.tzinfo else moment.date()


def china_today() -> date:
    return datetime.now(CHINA).date()
