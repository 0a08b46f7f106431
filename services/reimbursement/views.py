"""Read side of reimbursement for a person's progress: claims and births, without amounts."""
from __future__ import annotations

import json
from typing import Any

import asyncpg


async def progress_of(conn: asyncpg.Connection, person_id: str) -> dict[str, list[dict[str, Any]]]:
    """The person's claims (each with the pay-by date of an agency-started one) and births
    not yet paid as an allowance, as rows for shared.progress."""
    claims = await conn.fetch(
        "SELECT c.claim_id, c.benefit_line, c.stage, c.reasons, c.channel, c.payee,"
        " c.filed_on, c.created_at, c.updated_at, p.pay_by FROM claims c"
        " LEFT JOIN proactive_records p ON p.person_id = c.person_id AND p.claim_id = c.claim_id"
        " WHERE c.person_id = $1", person_id)
    births = await conn.fetch(
        "SELECT birth_id, state, reason, birth_date FROM births"
        " WHERE person_id = $1 AND claim_id IS NULL", person_id)
    return {"claims": [dict(c) | {"reasons": json.loads(c["reasons"])} for c in claims],
            "births": [dict(b) for b in births]}
