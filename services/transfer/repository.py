"""asyncpg queries for the transfer schema: insured view, transfers, history, ignored answers."""
from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import Any

import asyncpg

from services.transfer.domain.transfer import CLOSED, LEG_RUNNING, Stage, Transfer
from shared.db.sealed import (
    Sealed,
    resident_id_column,
    resident_key,
    resident_keys,
    resident_keys_of,
    resident_owners,
)

# Columns mirrored one to one from the domain object, but the person's ID: the tables keep
# its keyed hash (person_key, to find the rows) and the ID sealed (person_ref, to name the
# person in the events a transfer emits), never the ID in clear.
_COLUMNS = [f.name for f in fields(Transfer) if f.name != "person_id"]
_CLOSED = [s.value for s in CLOSED]
# The person's name on the information sheet, sealed at rest (shared/db/sealed.py).
_IDENTITY = ("direction", "from_region", "transfer_id")
NAME = Sealed("transfers", "name", _IDENTITY)
PERSON = resident_id_column("transfers")
INSURED = resident_id_column("insured_view")
SEALED = (NAME, PERSON, INSURED)


async def set_insured_status(conn: asyncpg.Connection, person_id: str, insurance_type: str,
                             status: str) -> None:
    # The row found by any valid hash of the ID is updated (one not yet re-hashed after a key
    # rotation too), else one is added: one statement, as before. One person's events come in
    # order (one partition), so nothing adds the same person meanwhile.
    await conn.execute(
        "WITH updated AS (UPDATE insured_view SET insurance_type = $4, status = $5,"
        " updated_at = now() WHERE person_key = ANY($1::text[]) RETURNING 1)"
        " INSERT INTO insured_view (person_ref, person_key, insurance_type, status)"
        " SELECT $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM updated)",
        resident_keys(person_id), INSURED.seal(person_id), resident_key(person_id),
        insurance_type, status)


async def insured(conn: asyncpg.Connection, person_id: str) -> tuple[str | None, str | None]:
    """(status, insurance type) as enrollment here last announced them."""
    row = await conn.fetchrow("SELECT status, insurance_type FROM insured_view"
                              " WHERE person_key = ANY($1::text[])", resident_keys(person_id))
    return (row["status"], row["insurance_type"]) if row else (None, None)


def to_transfer(row: asyncpg.Record) -> Transfer:
    values = {name: row[name] for name in _COLUMNS}
    # Events name the person by ID (the partner region needs it): opened from the row.
    values["person_id"] = PERSON.open(row["person_ref"])
    values["name"] = NAME.open(values["name"], *(row[c] for c in _IDENTITY))
    values["stage"] = Stage(values["stage"])
    if values["resume_stage"]:
        values["resume_stage"] = Stage(values["resume_stage"])
    return Transfer(**values)


async def open_transfers_of(conn: asyncpg.Connection, person_id: str) -> list[Transfer]:
    rows = await conn.fetch(
        "SELECT * FROM transfers WHERE person_key = ANY($1::text[])"
        " AND stage <> ALL($2::text[]) ORDER BY id FOR UPDATE", resident_keys(person_id),
        _CLOSED)
    return [to_transfer(r) for r in rows]


async def save(conn: asyncpg.Connection, t: Transfer, note: str | None, cause_id: str) -> None:
    """Upsert the transfer and add a history line (what happened, when, caused by which event)."""
    values = [getattr(t, name) for name in _COLUMNS]
    values = [v.value if isinstance(v, Stage) else v for v in values]
    values[_COLUMNS.index("name")] = NAME.seal(t.name, *(getattr(t, c) for c in _IDENTITY))
    columns = [*_COLUMNS, "person_ref", "person_key"]
    values += [PERSON.seal(t.person_id), resident_key(t.person_id)]
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    # A transfer's person never changes: an update keeps the row's ID and hash as they are
    # (a hash not yet re-hashed after a key rotation is re-hashed by `data-keys reseal`).
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)
    row_id = await conn.fetchval(
        f"INSERT INTO transfers ({', '.join(columns)}) VALUES ({placeholders})"
        f" ON CONFLICT (direction, from_region, transfer_id) DO UPDATE SET {updates},"
        " updated_at = now() RETURNING id", *values)
    await conn.execute(
        "INSERT INTO transfer_history (transfer_id, transfer_row, stage, note, cause_id)"
        " VALUES ($1, $2, $3, $4, $5)", t.transfer_id, row_id, t.stage.value, note, cause_id)


async def has_transfer_between(conn: asyncpg.Connection, person_id: str,
                               to_region: str) -> bool:
    """An automatic transfer starts once: not when one to that region is open or done."""
    return bool(await conn.fetchval(
        "SELECT 1 FROM transfers WHERE person_key = ANY($1::text[]) AND direction = 'out'"
        " AND to_region = $2 AND stage NOT IN ('failed', 'refused', 'cancelled')",
        resident_keys(person_id), to_region))


async def provisional_open(conn: asyncpg.Connection, limit: int = 500) -> list[Transfer]:
    """Open transfers whose due dates were counted past the holiday data."""
    rows = await conn.fetch(
        "SELECT * FROM transfers WHERE due_provisional AND stage <> ALL($1::text[])"
        " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", _CLOSED, limit)
    return [to_transfer(r) for r in rows]


async def overdue_candidates(conn: asyncpg.Connection, today: date,
                             limit: int = 500) -> list[Transfer]:
    """Open transfers with a running clock past its due date and not yet reported."""
    rows = await conn.fetch(
        "SELECT * FROM transfers WHERE stage <> ALL($2::text[]) AND stage <> 'waiting_on_person'"
        " AND ((due_on < $1 AND NOT overdue_flagged)"
        "      OR (leg_due_on < $1 AND NOT leg_overdue_flagged AND stage = ANY($4::text[])))"
        " ORDER BY due_on LIMIT $3 FOR UPDATE SKIP LOCKED",
        today, _CLOSED, limit,
        [s.value for s in LEG_RUNNING])
    return [to_transfer(r) for r in rows]


async def count_overdue(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    """Open transfers past a due date, by direction and clock, for the gauge."""
    rows = await conn.fetch(
        "SELECT direction, 'total' AS clock, count(*) AS n FROM transfers"
        " WHERE overdue_flagged AND stage <> ALL($1::text[]) GROUP BY direction"
        " UNION ALL SELECT direction, 'leg', count(*) FROM transfers"
        " WHERE leg_overdue_flagged AND stage <> ALL($1::text[]) GROUP BY direction",
        _CLOSED)
    return {(r["direction"], r["clock"]): r["n"] for r in rows}


async def transfers_for_status(conn: asyncpg.Connection, ref: str) -> list[asyncpg.Record]:
    """By the person's ID (its keyed hashes), a transfer id, a channel's reference (every
    person's request under it) or a letter's tracking number."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM transfers WHERE person_key = ANY($2::text[]) OR transfer_id = $1"
        " OR channel_ref = $1 OR tracking_number = $1 ORDER BY id", ref, resident_keys(ref))
    return rows


async def history(conn: asyncpg.Connection, row_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT stage, note, recorded_at FROM transfer_history WHERE transfer_row = $1"
        " ORDER BY id", row_id)
    return rows


async def ignored_answers(conn: asyncpg.Connection, transfer_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT reason, detail, sender, recorded_at FROM ignored_answers"
                            " WHERE transfer_id = $1 ORDER BY id", transfer_id)
    return [dict(r) for r in rows]


async def insured_row(conn: asyncpg.Connection, person_id: str) -> dict[str, Any] | None:
    """What enrollment announced of the person, as status shows it (the ID it was asked by)."""
    row = await conn.fetchrow(
        "SELECT insurance_type, status, updated_at FROM insured_view"
        " WHERE person_key = ANY($1::text[])", resident_keys(person_id))
    return {"person_id": person_id, **dict(row)} if row else None


# --- set-based: a group of events loads each table once and writes each table once ----------

# (direction, from_region, transfer_id): what names a transfer (the unique index).
Identity = tuple[str, str, str]
# Failed, refused and cancelled transfers neither block a new one nor count as one between
# two regions; completed ones do count (an automatic transfer starts once).
ENDED = ["failed", "refused", "cancelled"]


def identity(t: Transfer) -> Identity:
    return (t.direction, t.from_region, t.transfer_id)


def _array_type(annotation: str) -> str:
    """The SQL array element for a Transfer field (its annotation is a string here); integers
    go as int8 and are assigned to integer columns as the single-row insert does."""
    kind = annotation.split("|")[0].strip()
    found = {"str": "text", "Stage": "text", "int": "int8", "date": "date",
             "bool": "bool"}.get(kind)
    if found is None:
        raise TypeError(f"Transfer field of type {annotation}: no SQL type for set-based writes")
    return found


_TYPES = {f.name: _array_type(str(f.type)) for f in fields(Transfer) if f.name != "person_id"}


async def transfers_for_group(conn: asyncpg.Connection, identities: list[Identity],
                              person_ids: list[str]) -> list[tuple[int, Transfer]]:
    """(row id, transfer), by id and locked, of each identity that exists (as `load` reads
    one) and of the persons' transfers that are open or completed (all but failed, refused,
    cancelled: what `open_transfers_of` and `has_transfer_between` look at): one query."""
    if not identities and not person_ids:
        return []
    rows = await conn.fetch(
        "SELECT * FROM transfers WHERE id IN ("
        " SELECT id FROM transfers WHERE (direction, from_region, transfer_id) IN"
        "  (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
        " UNION SELECT id FROM transfers WHERE person_key = ANY($4::text[])"
        "  AND stage <> ALL($5::text[])) ORDER BY id FOR UPDATE",
        [i[0] for i in identities], [i[1] for i in identities], [i[2] for i in identities],
        resident_keys_of(person_ids), ENDED)
    return [(r["id"], to_transfer(r)) for r in rows]


async def requests_of(conn: asyncpg.Connection, region: str,
                      requests: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (person, channel reference) transfer-out requests here already have a transfer
    (whatever its stage: a refused request sent again is the same request): one query."""
    if not requests:
        return set()
    person_of = resident_owners({p for p, _ in requests})
    rows = await conn.fetch(
        "SELECT person_key, channel_ref FROM transfers WHERE direction = 'out'"
        " AND from_region = $1 AND channel_ref = ANY($2::text[])"
        " AND person_key = ANY($3::text[])", region, sorted({r for _, r in requests}),
        list(person_of))
    found = {(person_of[r["person_key"]], r["channel_ref"]) for r in rows}
    return found & set(requests)


async def insured_of(conn: asyncpg.Connection, person_ids: list[str], for_update: bool = False
                     ) -> dict[str, tuple[str | None, str | None, str | None]]:
    """(status, insurance type, the row's keyed hash) of each person, as `insured` gives the
    first two; (None, None, None) without a row. `for_update` locks the rows a group will
    write, so a re-hash after a key rotation waits until it has."""
    found: dict[str, tuple[str | None, str | None, str | None]] = {
        p: (None, None, None) for p in person_ids}
    if not person_ids:
        return found
    person_of = resident_owners(person_ids)
    rows = await conn.fetch("SELECT person_key, status, insurance_type FROM insured_view"
                            " WHERE person_key = ANY($1::text[])"
                            + (" FOR UPDATE" if for_update else ""), list(person_of))
    seen: set[str] = set()
    for r in rows:
        person = person_of[r["person_key"]]
        if person not in seen:  # one row per person; a second under an old key is not read
            seen.add(person)
            found[person] = (r["status"], r["insurance_type"], r["person_key"])
    return found


async def set_insured_statuses(conn: asyncpg.Connection,
                               statuses: list[tuple[str, str, str, str | None]]) -> None:
    """(person, insurance type, status, the hash its row is found under or None) each, one
    per person: the row found is updated (under whichever valid hash it has), else one is
    added, in one statement, as `set_insured_status` does for one person."""
    if not statuses:
        return
    await conn.execute(
        "INSERT INTO insured_view (person_ref, person_key, insurance_type, status)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
        " ON CONFLICT (person_key) DO UPDATE SET insurance_type = EXCLUDED.insurance_type,"
        " status = EXCLUDED.status, updated_at = now()",
        [INSURED.seal(p) for p, _, _, _ in statuses],
        [key or resident_key(p) for p, _, _, key in statuses],
        [t for _, t, _, _ in statuses], [s for _, _, s, _ in statuses])


async def save_all(conn: asyncpg.Connection, transfers: list[Transfer]) -> dict[Identity, int]:
    """Upsert each transfer (one row per identity, as `save` does one) in one statement;
    returns each one's row id, for its history."""
    if not transfers:
        return {}
    columns = [*_COLUMNS, "person_ref", "person_key"]
    types = [*(_TYPES[c] for c in _COLUMNS), "text", "text"]
    arrays: list[list[Any]] = [[] for _ in columns]
    name_at = _COLUMNS.index("name")
    for t in transfers:
        values = [getattr(t, name) for name in _COLUMNS]
        values = [v.value if isinstance(v, Stage) else v for v in values]
        values[name_at] = NAME.seal(t.name, *(getattr(t, c) for c in _IDENTITY))
        values += [PERSON.seal(t.person_id), resident_key(t.person_id)]
        for array, value in zip(arrays, values, strict=True):
            array.append(value)
    unnest = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(types, start=1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)
    rows = await conn.fetch(
        f"INSERT INTO transfers ({', '.join(columns)}) SELECT * FROM unnest({unnest})"
        f" ON CONFLICT (direction, from_region, transfer_id) DO UPDATE SET {updates},"
        " updated_at = now() RETURNING id, direction, from_region, transfer_id", *arrays)
    return {(r["direction"], r["from_region"], r["transfer_id"]): r["id"] for r in rows}


async def record_history(conn: asyncpg.Connection,
                         entries: list[tuple[str, int, str, str | None, str]]) -> None:
    """History lines (transfer id, row id, stage, note, cause id), in order, in one COPY."""
    if entries:
        await conn.copy_records_to_table(
            "transfer_history", columns=["transfer_id", "transfer_row", "stage", "note",
                                         "cause_id"], records=entries)


async def record_ignored_answers(conn: asyncpg.Connection,
                                 entries: list[tuple[str, str, str, str, str]]) -> None:
    """Ignored answers (event id, transfer id, sender, reason, detail), in order, in one COPY."""
    if entries:
        await conn.copy_records_to_table(
            "ignored_answers", columns=["event_id", "transfer_id", "sender", "reason",
                                        "detail"], records=entries)
