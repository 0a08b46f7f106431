"""Dead letters sealed: body and key open only with the data keys and only for their origin."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.db import sealed
from shared.db.sealed import DataKeys, SealError, new_key
from shared.messaging.dead_letters import open_letter, seal_letter


@pytest.fixture(autouse=True)
def ring() -> Iterator[DataKeys]:
    keys = DataKeys([new_key(sealed.SEAL), new_key(sealed.HASH)])
    sealed.use_keys(keys)
    yield keys
    sealed.use_keys(None)


def _headers(extra: tuple[tuple[str, str], ...], offset: str = "7") -> list[tuple[str, bytes]]:
    origin = (("dlq-topic", "medins.210200.enrollment.from-channels"),
              ("dlq-partition", "2"), ("dlq-offset", offset))
    return [(k, v.encode()) for k, v in (*origin, *extra)]


def test_any_bytes_and_key_round_trip_and_are_not_kept_in_clear(ring: DataKeys) -> None:
    body = b'\xff{"person_id": "110101199003074514"}' + bytes(range(256))
    value, extra = seal_letter(body, b"110101199003074514",
                               "medins.210200.enrollment.from-channels", 2, 7)
    assert b"110101199003074514" not in value
    assert not any("110101199003074514" in v for _, v in extra)
    assert dict(extra)["dlq-sealed"] == ring.current_seal.key_id
    assert open_letter(value, _headers(extra)) == (body, b"110101199003074514", True)


def test_a_letter_without_a_key_and_one_from_before_sealing() -> None:
    value, extra = seal_letter(b"garbage", None, "medins.210200.enrollment.from-channels", 2, 7)
    assert open_letter(value, _headers(extra)) == (b"garbage", None, True)
    assert open_letter(b"old letter", _headers(())) == (b"old letter", None, False)


def test_a_body_moved_to_another_letter_or_altered_does_not_open() -> None:
    value, extra = seal_letter(b"x" * 50, None, "medins.210200.enrollment.from-channels", 2, 7)
    with pytest.raises(SealError):
        open_letter(value, _headers(extra, offset="8"))
    with pytest.raises(SealError):
        open_letter(value[:-1] + bytes([value[-1] ^ 1]), _headers(extra))
