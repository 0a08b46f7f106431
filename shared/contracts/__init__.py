"""Event contracts: the envelope, and payload models in one module per producer."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.contracts import (  # noqa: F401  (importing registers each module's types)
    bank,
    channels,
    civil_affairs,
    employer,
    enrollment,
    hospital,
    notify,
    partner,
    reimbursement,
    tax,
    transfer,
    transfer_office,
)
from shared.contracts.base import EVENT_TYPES, Payload
from shared.contracts.envelope import Envelope


class ContractError(ValueError):
    """A message breaks its contract; `reason` names the field and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where or 'message'}: {message}")
    return "; ".join(parts)


def parse_event(raw: bytes | str | dict[str, Any]) -> tuple[Envelope, Payload]:
    """Parse a wire message into its envelope and typed payload, or raise ContractError."""
    try:
        doc = raw if isinstance(raw, dict) else json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ContractError("message must be a JSON object (a CloudEvents envelope)")
    try:
        envelope = Envelope.model_validate(doc)
    except ValidationError as exc:
        raise ContractError(describe_validation_error(exc)) from None
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise ContractError(f"type: unknown event type {envelope.type}")
    try:
        payload = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise ContractError(describe_validation_error(exc, "data")) from None
    return envelope, payload


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema per event type: the envelope with that type's payload as `data`."""
    envelope_schema = Envelope.model_json_schema()
    out: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema: dict[str, Any] = json.loads(json.dumps(envelope_schema))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://medins.example.cn/schemas/{event_type}.json"
        schema["title"] = event_type
        schema["description"] = (model.__doc__ or event_type).strip()
        schema["x-topic"] = model.topic
        schema["properties"]["type"] = {"const": event_type}
        payload_schema = model.model_json_schema()
        schema.setdefault("$defs", {}).update(payload_schema.pop("$defs", {}))
        schema["properties"]["data"] = payload_schema
        out[event_type] = schema
    return out


def write_json_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in json_schemas().items():
        path = folder / f"{event_type}.json"
        path.write_text(json.dumps(schema, ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(path)
    return written


__all__ = ["ContractError", "Envelope", "EVENT_TYPES", "Payload", "parse_event",
           "json_schemas", "write_json_schemas", "BaseModel"]
