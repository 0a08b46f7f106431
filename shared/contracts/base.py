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
    # The field whose value is the Kafka key: one person's (or employer's) events stay in order.
    key_field: ClassVar[str] = "person_id"


EVENT_TYPES: dict[str, type[Payload]] = {}


def event(event_type: str, topic: str, *, person_facing: bool = False,  # type: ignore[no-untyped-def]
          key_field: str | None = None):
    """Class decorator registering a payload model under its event type and logical topic."""

    def register(cls: type[Payload]) -> type[Payload]:
        if event_type in EVENT_TYPES:
            raise ValueError(f"event type {event_type} registered twice")
        cls.event_type = event_type
        cls.topic = topic
        cls.person_facing = person_facing
        if key_field is not None:
            if key_field not in cls.model_fields:
                raise ValueError(f"{event_type}: key field {key_field} is not a field")
            cls.key_field = key_field
        EVENT_TYPES[event_type] = cls
        return cls

    return register
