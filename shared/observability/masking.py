"""Masks personal data (resident IDs, mobiles, emails, names) in any text or structure."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from shared import clock

# 18-character resident ID: area (first digit 1-9: 11-65, 71, 81-83, 91), birth date, sequence,
# check character; also written 6-8-4 with spaces or dashes. Whether it is masked depends on
# the birth date (see _mask_id18): that is what keeps amounts and settlement numbers readable.
_ID18 = re.compile(r"(?<![0-9A-Za-z])([1-9]\d{3})(\d{2})[ -]?((?:19|20)\d{6})[ -]?(\d{3}[\dXx])"
                   r"(?![0-9A-Za-z])")
# First-generation (15-digit) resident ID: area, YYMMDD (19YY), 3-digit sequence, no check digit.
_ID15 = re.compile(r"(?<![0-9A-Za-z])([1-9]\d{3})\d{2}(\d{6})(\d{3})(?![0-9A-Za-z])")
# CN mobile, also as +86/0086/(+86), and 3-4-4 with spaces or dashes: 138 1234 5678.
_MOBILE = re.compile(r"(?<![\d+])(?:\(?(?:\+|00)?86\)?[ -]?)?(1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})"
                     r"(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# A Chinese name after a label and a colon (姓名：张三). Without the colon the end of the name
# cannot be told from the words that follow, so unlabelled names rely on the event's own names.
_LABELLED_NAME = re.compile(
    r"((?:姓名|名字|申请人|代办人|经办人|联系人|亲属|配偶|家属|监护人|患者|参保人)\s*[:：]\s*)"
    r"([\u4e00-\u9fff·]{2,6})")

# Fields that carry a person's name (shared/contracts: name, relative_name; agents, relatives
# and family members in nested structures). A key is a name key when it is listed here or ends
# in _name/_names after one of the person words; place, disease or service names are not.
NAME_KEYS = frozenset({"name", "names", "full_name", "person_name", "agent_name",
                       "applicant_name", "relative_name", "relative_names"})
_PERSON_WORDS = frozenset({"person", "agent", "applicant", "relative", "relatives", "member",
                           "members", "family", "spouse", "guardian", "contact", "insured",
                           "patient", "deceased", "parent", "child", "mother", "father",
                           "recipient", "holder", "beneficiary", "legal", "representative"})

# Names the current event carries (see masking_names): every text logged while it is handled
# has them masked, so a reason such as "申请人张三丰已参保" never shows the name.
_SCOPE_NAMES: ContextVar[tuple[str, ...]] = ContextVar("medins_masking_names", default=())


def is_name_key(key: str | None) -> bool:
    if not key:
        return False
    key = key.lower()
    if key in NAME_KEYS:
        return True
    stem, _, suffix = key.rpartition("_")
    return suffix in ("name", "names") and stem.rsplit("_", 1)[-1] in _PERSON_WORDS


def _birth_date(digits: str) -> date | None:
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None
    # A birth date lies in the past: a number whose digits read as a date well in the future
    # is not an ID. A year's margin, as the platform's clock can be set to another day.
    return born if born <= clock.china_today() + timedelta(days=366) else None


def _mask_id18(m: re.Match[str]) -> str:
    # Masked whether or not the check character is right: a mistyped ID is still personal.
    if _birth_date(m[3]) is None:
        return m[0]
    return f"{m[1]}{'*' * 10}{m[4]}"


def _mask_id15(m: re.Match[str]) -> str:
    if _birth_date("19" + m[2]) is None:
        return m[0]
    return f"{m[1]}{'*' * 8}{m[3]}"


def _variants(name: str) -> Iterator[str]:
    name = name.strip()
    if len(name) < 2:
        return  # one character would mask that character everywhere in the text
    yield name
    # A Chinese full name of three or more characters is often written by the given name
    # alone (三丰); a compound surname (欧阳) leaves one character, which is still masked.
    if len(name) >= 3 and all("\u4e00" <= ch <= "\u9fff" for ch in name):
        yield name[1:]


@lru_cache(maxsize=64)
def _names_pattern(variants: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so a full name is masked whole before its given name could match.
    return re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)))


def mask_text(text: str, names: Iterable[str] = ()) -> str:
    """Mask IDs, mobiles, emails and labelled names; also `names` and the names in scope."""
    text = _ID18.sub(_mask_id18, text)
    text = _ID15.sub(_mask_id15, text)
    text = _MOBILE.sub(lambda m: f"{m[1]}****{m[2]}", text)
    text = _EMAIL.sub(lambda m: f"{m[1]}***@{m[2]}", text)
    text = _LABELLED_NAME.sub(lambda m: m[1] + mask_name(m[2]), text)
    known = set(names) | set(_SCOPE_NAMES.get())
    # Only the variants the text contains go into the pattern: a hostile 100,000-character
    # "name" (a refused, oversized message) cannot occur in a reason cut to 2,000 and would
    # otherwise cost seconds of regex compiling per refusal, blocking the worker's loop.
    variants = tuple(sorted({v for n in known if len(n.strip()) <= len(text)
                             for v in _variants(n) if v in text}))
    if variants:
        pattern = _names_pattern(variants)
        # A full name keeps its first character (the surname) as elsewhere; a given name
        # written alone keeps none, since its first character is part of what identifies.
        full = set(known)
        text = pattern.sub(lambda m: mask_name(m[0]) if m[0] in full else "*" * len(m[0]),
                           text)
    return text


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def names_in(value: Any, key: str | None = None) -> set[str]:
    """The strings found under name keys anywhere in a structure (dicts, lists)."""
    found: set[str] = set()
    if isinstance(value, str):
        if is_name_key(key):
            found.add(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            found |= names_in(v, k if isinstance(k, str) else None)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            found |= names_in(v, key)  # a list under a name key is a list of names
    return found


_JSON_NAME = re.compile(r'"([A-Za-z_]+)"\s*:\s*"((?:[^"\\]|\\.){1,64})"')


def names_in_bytes(raw: bytes | str) -> set[str]:
    """Names in a message's raw bytes: parsed as JSON, or read field by field when the bytes
    are not valid JSON (a truncated or garbled message is dead-lettered as it came)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
    try:
        return names_in(json.loads(text))
    except (ValueError, RecursionError):
        found = set()
        for key, value in _JSON_NAME.findall(text):
            if is_name_key(key):
                try:
                    found.add(json.loads(f'"{value}"'))
                except ValueError:
                    found.add(value)
        return found


@contextmanager
def masking_names(names: Iterable[str]) -> Iterator[None]:
    """Within this block every masked text also has these names masked (an event's names
    while it is handled: its handler's log lines and error reasons quote them)."""
    token = _SCOPE_NAMES.set(tuple(set(_SCOPE_NAMES.get()) | {n for n in names if n}))
    try:
        yield
    finally:
        _SCOPE_NAMES.reset(token)


def mask_value(value: Any, key: str | None = None,
               names: tuple[str, ...] | None = None) -> Any:
    """Return a copy of a log value with personal data masked, walking containers; the names
    the value itself carries are masked wherever they recur in its texts too."""
    if names is None:
        names = tuple(names_in(value, key))
    if isinstance(value, str):
        return mask_name(value) if is_name_key(key) else mask_text(value, names)
    if isinstance(value, dict):
        return {k: mask_value(v, k if isinstance(k, str) else None, names)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        # Elements of a list under a name key are names themselves.
        return [mask_value(v, key if is_name_key(key) else None, names) for v in value]
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        return mask_text(raw.decode("utf-8", "replace"), names + tuple(names_in_bytes(raw)))
    if isinstance(value, BaseException):
        return mask_text(f"{type(value).__name__}: {value}", names)
    return value
