"""Refused requests (`refused_requests`, the same columns in every schema), written in order."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def insert_refused_requests(conn: asyncpg.Connection, person_refs: Sequence[str],
                                  person_keys: Sequence[str], references: Sequence[str],
                                  request_types: Sequence[str], rules: Sequence[str],
                                  reasons: Sequence[str], cause_ids: Sequence[str]) -> None:
    """One statement for many rows, kept in the order given (column by column, already
    sealed and hashed by the caller)."""
    if not person_refs:
        return
    await conn.execute(
        "INSERT INTO refused_requests (person_ref, person_key, reference, request_type, rule,"
        " reason, cause_id) SELECT r, k, ref, t, rule, reason, c FROM unnest($1::text[],"
        " $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
        " WITH ORDINALITY AS u(r, k, ref, t, rule, reason, c, n) ORDER BY n",
        list(person_refs), list(person_keys), list(references), list(request_types),
        list(rules), list(reasons), list(cause_ids))
