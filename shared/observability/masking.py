"""Masks personal data (resident IDs, mobiles, emails, names) in any text or structure."""
from __future__ import annotations

import re
from typing import Any

_RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{10}(\d{3}[\dXx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# Names cannot be recognised in free text, so they are masked by the field that carries them.
NAME_KEYS = frozenset({"name", "full_name", "person_name", "agent_name", "applicant_name"})


def mask_text(text: str) -> str:
    text = _RESIDENT_ID.sub(lambda m: f"{m[1]}{'*' * 10}{m[2]}", text)
    text = _MOBILE.sub(lambda m: f"{m[1]}****{m[2]}", text)
    return _EMAIL.sub(lambda m: f"{m[1]}***@{m[2]}", text)


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_value(value: Any, key: str | None = None) -> Any:
    """Return a copy of a log value with personal data masked, walking containers."""
    if isinstance(value, str):
        return mask_name(value) if key in NAME_KEYS else mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [mask_value(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return mask_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return mask_text(f"{type(value).__name__}: {value}")
    return value
