"""The event type a record declares, read without parsing (to pass over others' events)."""
from __future__ import annotations

from shared.messaging.consumer import declared_type

APPLIED = "cn.medins.enrollment.application.submitted.v1"


def test_the_envelopes_type_is_read_whatever_the_spacing() -> None:
    assert declared_type(f'{{"id":"1","type":"{APPLIED}","data":{{}}}}'.encode()) == APPLIED
    assert declared_type(f'{{"type" :\n "{APPLIED}"}}'.encode()) == APPLIED
    assert declared_type(b'{"type":"cn.gov.civil-affairs.death.recorded.v1"}') == \
        "cn.gov.civil-affairs.death.recorded.v1"


def test_what_cannot_be_told_without_parsing_is_none() -> None:
    assert declared_type(b"") is None
    assert declared_type(b"\x00\xff garbage") is None
    assert declared_type(b'{"type":"resident"}') is None  # not an event type
    # Two different types (a duplicated key, or one nested in the data): parse it.
    assert declared_type(
        f'{{"type":"{APPLIED}","data":{{"type":"cn.medins.x.y.v1"}}}}'.encode()) is None
    # The same type twice is that type.
    assert declared_type(f'{{"type":"{APPLIED}","data":{{"type":"{APPLIED}"}}}}'.encode()) \
        == APPLIED
    # Another key ending in "type" is not the envelope's.
    assert declared_type(f'{{"event_type":"{APPLIED}"}}'.encode()) is None
