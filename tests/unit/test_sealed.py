"""Sealing at rest: round trip, tampering, wrong row, unknown key, rotation, keyed hashes."""
from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db import sealed
from shared.db.sealed import (
    DataKeys,
    Sealed,
    SealError,
    add_key,
    create_keys_file,
    format_key,
    new_key,
    parse_keys,
    remove_key,
)

MOBILE = Sealed("persons", "mobile", ("person_id",))
DATA = Sealed("cases", "data", ("case_id",), shape="json")


@pytest.fixture
def ring() -> Iterator[DataKeys]:
    keys = DataKeys([new_key(sealed.SEAL), new_key(sealed.HASH)])
    sealed.use_keys(keys)
    yield keys
    sealed.use_keys(None)


def test_round_trip_differs_each_time_and_names_its_key(ring: DataKeys) -> None:
    one, two = MOBILE.seal("13812345678", "P1"), MOBILE.seal("13812345678", "P1")
    assert one != two and "13812345678" not in str(one)
    assert str(one).startswith(f"enc:{ring.current_seal.key_id}:")
    assert MOBILE.open(one, "P1") == MOBILE.open(two, "P1") == "13812345678"
    assert MOBILE.seal(None, "P1") is None and MOBILE.open(None, "P1") is None


def test_json_round_trip(ring: DataKeys) -> None:
    stored = DATA.seal_json({"disease": "糖尿病", "n": 1}, "C1")
    assert "糖尿病" not in stored and isinstance(json.loads(stored), str)
    assert DATA.open_json(stored, "C1") == {"disease": "糖尿病", "n": 1}
    assert DATA.open_json('{"legacy": true}', "C1") == {"legacy": True}


def test_tampered_value_does_not_open(ring: DataKeys) -> None:
    value = str(MOBILE.seal("13812345678", "P1"))
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    with pytest.raises(SealError):
        MOBILE.open(flipped, "P1")
    with pytest.raises(SealError):
        MOBILE.open(value[:-6], "P1")


def test_value_moved_to_another_row_or_column_does_not_open(ring: DataKeys) -> None:
    value = MOBILE.seal("13812345678", "P1")
    with pytest.raises(SealError):
        MOBILE.open(value, "P2")
    with pytest.raises(SealError):
        Sealed("persons", "email", ("person_id",)).open(value, "P1")


def test_unknown_key_is_refused(ring: DataKeys) -> None:
    value = str(MOBILE.seal("13812345678", "P1"))
    other = DataKeys([new_key(sealed.SEAL), new_key(sealed.HASH)])
    with pytest.raises(SealError, match="unknown data key"):
        other.open(value, "persons.mobile:P1")
    renamed = value.replace(ring.current_seal.key_id, other.current_seal.key_id)
    with pytest.raises(SealError):
        other.open(renamed, "persons.mobile:P1")


def test_rotation_seals_with_newest_and_opens_older(tmp_path: Path) -> None:
    path = tmp_path / "data-keys"
    assert create_keys_file(path) and not create_keys_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    old = DataKeys(parse_keys(path.read_text()))
    sealed_old = old.seal("13812345678", "persons.mobile:P1")
    newer = add_key(path, sealed.SEAL)
    both = DataKeys(parse_keys(path.read_text()))
    assert both.current_seal.key_id == newer.key_id
    assert both.open(sealed_old, "persons.mobile:P1") == "13812345678"
    assert both.key_of(both.seal("x", "c")) == newer.key_id
    remove_key(path, old.current_seal.key_id)
    after = DataKeys(parse_keys(path.read_text()))
    with pytest.raises(SealError):
        after.open(sealed_old, "persons.mobile:P1")
    with pytest.raises(ValueError):
        remove_key(path, newer.key_id)  # the last sealing key stays


def test_keyed_hash_is_stable_per_row_and_keyed(ring: DataKeys) -> None:
    disease = Sealed("chronic_recognitions", "disease", ("person_id",), hash_column="k")
    assert disease.digest("E11", "P1") == disease.digest("E11", "P1")
    assert disease.digest("E11", "P1") != disease.digest("E11", "P2")
    assert "E11" not in str(disease.digest("E11", "P1"))
    other = DataKeys([new_key(sealed.SEAL), new_key(sealed.HASH)])
    assert other.digest("E11", "x") != ring.digest("E11", "x")
    both = DataKeys([*ring.seal_keys.values(), *ring.hash_keys.values(),
                     *other.hash_keys.values()])
    assert ring.digest("E11", "x") in both.digests("E11", "x")
    assert both.digest("E11", "x") == other.digest("E11", "x")


def test_key_lines_are_checked() -> None:
    key = new_key(sealed.SEAL)
    assert parse_keys("# c\n" + format_key(key))[0] == key
    for bad in ("seal k1", "seal k1 notbase64!", "seal k1 " + "QUFB", "sign k1 QUFB",
                "seal ../x " + format_key(key).split()[2]):
        with pytest.raises(ValueError):
            parse_keys(bad)
    with pytest.raises(ValueError):
        DataKeys(parse_keys(format_key(key)))  # no hashing key


def test_a_resident_id_hashes_alike_in_every_table_and_under_every_valid_key(
        ring: DataKeys) -> None:
    persons, claims = sealed.resident_id_column("persons"), sealed.resident_id_column("claims")
    pid = "110101199003074514"
    assert persons.digest(pid) == claims.digest(pid) == sealed.resident_key(pid)
    assert pid not in sealed.resident_key(pid)
    # A table-bound hash (no purpose) differs from table to table.
    assert Sealed("a", "x", (), hash_column="k").digest(pid) != \
        Sealed("b", "x", (), hash_column="k").digest(pid)
    before = sealed.resident_key(pid)
    sealed.use_keys(DataKeys([*ring.seal_keys.values(), *ring.hash_keys.values(),
                              new_key(sealed.HASH)]))
    # After a rotation new rows get the new hash; look-ups match old and new rows.
    assert sealed.resident_key(pid) != before
    assert set(sealed.resident_keys(pid)) == {before, sealed.resident_key(pid)}
    assert sealed.resident_keys_of([pid, "P2"])[:2] == sealed.resident_keys(pid)


def test_the_row_binding_is_the_same_json_as_before_for_any_text() -> None:
    import json
    import random

    from shared.db.sealed import _json_list

    alphabet = ['a', '1', '"', '\\', '\n', '\x00', '\x1f', '\x7f', '王', '/', ' ', 'é', '\u2028']
    rng = random.Random(7)
    cases: list[list[str | None]] = [[], [None], ["P1"], ["110101199003074514", None, "e-1"]]
    cases += [[rng.choice([None, "".join(rng.choices(alphabet, k=rng.randint(0, 6)))])
               for _ in range(rng.randint(0, 4))] for _ in range(2000)]
    for values in cases:
        assert _json_list(values) == json.dumps(values, ensure_ascii=False), values
