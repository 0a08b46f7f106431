"""Read side of reimbursement for a person's progress: claims, births, refused requests."""
from __future__ import annotations

import json
from typing import Any

import asyncpg

from shared.db.sealed import resident_keys


async def progress_of(conn: asyncpg.Connection, person_id: str) -> dict[str, list[dict[str, Any]]]:
    """The person's claims (each with the pay-by date of an agency-started one), births not
    yet paid as an allowance and refused requests, as rows for shared.progress."""
    keys = resident_keys(person_id)
    claims = await conn.fetch(
        "SELECT c.claim_id, c.benefit_line, c.stage, c.reasons, c.channel, c.payee,"
        " c.filed_on, c.created_at, c.updated_at, p.pay_by FROM claims c"
        # Each table found by the person's keys, never joined on person_key: a rotation
        # re-hashes one table at a time.
        " LEFT JOIN proactive_records p ON p.claim_id = c.claim_id"
        " AND p.person_key = ANY($1::text[]) WHERE c.person_key = ANY($1::text[])", keys)
    births = await conn.fetch(
        "SELECT birth_id, state, reason, birth_date FROM births"
        " WHERE person_key = ANY($1::text[]) AND claim_id IS NULL", keys)
    refused = await conn.fetch(
        "SELECT reference, request_type, rule, reason, refused_at FROM refused_requests"
        " WHERE person_key = ANY($1::text[]) ORDER BY id", keys)
    return {"claims": [dict(c) | {"reasons": json.loads(c["reasons"])} for c in claims],
            "births": [dict(b) for b in births], "refused": [dict(r) for r in refused]}
