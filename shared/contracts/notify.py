"""Contracts produced by the notify service."""
from __future__ import annotations

from typing import Literal

from shared.contracts import topics
from shared.contracts.base import Payload, event


@event("cn.medins.notify.message.sent.v1", topics.NOTIFY_EVENTS)
class MessageSent(Payload):
    source_event_id: str
    channel: Literal["sms", "email"]
    template: str


@event("cn.medins.notify.message.parked.v1", topics.NOTIFY_EVENTS)
class MessageParked(Payload):
    source_event_id: str
    channel: Literal["sms", "email"]
    template: str
    reason: str
