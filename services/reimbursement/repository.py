"""asyncpg queries for the reimbursement schema."""
from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg


async def set_insured_status(conn: asyncpg.Connection, person_id: str, insurance_type: str,
                             status: str) -> None:
    await conn.execute(
        "INSERT INTO insured_view (person_id, insurance_type, status) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id) DO UPDATE SET insurance_type = $2, status = $3,"
        " updated_at = now()", person_id, insurance_type, status)


async def insured_status(conn: asyncpg.Connection, person_id: str) -> str | None:
    return await conn.fetchval("SELECT status FROM insured_view WHERE person_id = $1", person_id)


async def claim_exists(conn: asyncpg.Connection, claim_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM claims WHERE claim_id = $1", claim_id))


async def claim_for_receipt(conn: asyncpg.Connection, invoice_no: str,
                            institution_code: str) -> str | None:
    return await conn.fetchval(
        "SELECT claim_id FROM claims WHERE invoice_no = $1 AND institution_code = $2"
        " AND stage <> 'rejected'", invoice_no, institution_code)


async def save_claim(conn: asyncpg.Connection, *, claim_id: str, person_id: str,
                     invoice_no: str, institution_code: str, expense_date: date,
                     amount_fen: int, stage: str, reasons: list[str], cause_id: str) -> None:
    await conn.execute(
        "INSERT INTO claims (claim_id, person_id, invoice_no, institution_code, expense_date,"
        " amount_fen, stage, reasons) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        claim_id, person_id, invoice_no, institution_code, expense_date, amount_fen, stage,
        json.dumps(reasons, ensure_ascii=False))
    await conn.execute("INSERT INTO claim_history (claim_id, stage, detail, cause_id)"
                       " VALUES ($1, $2, $3, $4)", claim_id, stage,
                       json.dumps({"reasons": reasons}, ensure_ascii=False), cause_id)


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    rows = await conn.fetch("SELECT * FROM claims WHERE person_id = $1 OR claim_id = $1"
                            " ORDER BY created_at", ref)
    view = await conn.fetchrow("SELECT * FROM insured_view WHERE person_id = $1", ref)
    if not rows and view is None:
        return None
    claims = []
    for r in rows:
        history = await conn.fetch("SELECT stage, detail, recorded_at FROM claim_history"
                                   " WHERE claim_id = $1 ORDER BY id", r["claim_id"])
        claims.append(dict(r) | {"reasons": json.loads(r["reasons"]),
                                 "history": [dict(h) | {"detail": json.loads(h["detail"])}
                                             for h in history]})
    return {"insured_status": dict(view) if view else None, "claims": claims}
