"""Base for contract payloads and the registry mapping event types to them."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """An event payload; subclasses name their versioned event type and topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]
    # A person must be told of it: notify refuses to start without a template for it.
    person_facing: ClassVar[bool] = False


EVENT_TYPES: dict[str, type[Payload]] = {}


def event(event_type: str, topic: str, *, person_facing: bool = False):  # type: ignore[no-untyped-def]
    """Class decorator registering a payload model under its event type and logical topic."""

    def register(cls: type[Payload]) -> type[Payload]:
        if event_type in EVENT_TYPES:
            raise ValueError(f"event type {event_type} registered twice")
        cls.event_type = event_type
        cls.topic = topic
        cls.person_facing = person_facing
        EVENT_TYPES[event_type] = cls
        return cls

    return register
