"""CloudEvents 1.0 structured-mode envelope with correlation id and region code extensions."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SOURCE_PREFIX = "/medins"


class Envelope(BaseModel):
    """One event on the wire; `data` is the payload, validated by its type's contract model."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1)
    type: str = Field(pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)+\.v\d+$")
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str = Field(min_length=1)
    causationid: str | None = None
    regioncode: str = Field(pattern=r"^\d{6}$")
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


def derived_id(*parts: object) -> str:
    """A deterministic, fixed-length id for an event derived from another: re-running the
    same cause gives the same id, so consumers can deduplicate it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "medins:" + ":".join(str(p) for p in parts)))


def new_envelope(
    event_type: str,
    data: BaseModel,
    *,
    source: str,
    region: str,
    subject: str | None = None,
    cause: Envelope | None = None,
    event_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Build an outgoing envelope; a caused event inherits its cause's correlation id."""
    new_id = event_id or str(uuid.uuid4())
    return Envelope(
        id=new_id,
        source=source if source.startswith("/") else f"{SOURCE_PREFIX}/{region}/{source}",
        type=event_type,
        subject=subject,
        time=datetime.now(UTC),
        correlationid=correlation_id or (cause.correlationid if cause else new_id),
        causationid=cause.id if cause else None,
        regioncode=region,
        data=data.model_dump(mode="json"),
    )
