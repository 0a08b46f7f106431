"""asyncpg queries for the transfer schema."""
from __future__ import annotations

from typing import Any

import asyncpg

from services.transfer.domain.transfer import Transfer


async def set_insured_status(conn: asyncpg.Connection, person_id: str, insurance_type: str,
                             status: str) -> None:
    await conn.execute(
        "INSERT INTO insured_view (person_id, insurance_type, status) VALUES ($1, $2, $3)"
        " ON CONFLICT (person_id) DO UPDATE SET insurance_type = $2, status = $3,"
        " updated_at = now()", person_id, insurance_type, status)


async def insured_status(conn: asyncpg.Connection, person_id: str) -> str | None:
    return await conn.fetchval("SELECT status FROM insured_view WHERE person_id = $1", person_id)


async def transfer_exists(conn: asyncpg.Connection, transfer_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM transfers WHERE transfer_id = $1",
                                    transfer_id))


async def save_transfer(conn: asyncpg.Connection, t: Transfer, reason: str | None,
                        cause_id: str) -> None:
    await conn.execute(
        "INSERT INTO transfers (transfer_id, person_id, from_region, to_region, stage, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (transfer_id) DO UPDATE SET stage = $5,"
        " reason = $6, updated_at = now()",
        t.transfer_id, t.person_id, t.from_region, t.to_region, t.stage.value, reason)
    await conn.execute("INSERT INTO transfer_history (transfer_id, stage, note, cause_id)"
                       " VALUES ($1, $2, $3, $4)", t.transfer_id, t.stage.value, reason, cause_id)


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    rows = await conn.fetch("SELECT * FROM transfers WHERE person_id = $1 OR transfer_id = $1"
                            " ORDER BY created_at", ref)
    view = await conn.fetchrow("SELECT * FROM insured_view WHERE person_id = $1", ref)
    if not rows and view is None:
        return None
    transfers = []
    for r in rows:
        history = await conn.fetch("SELECT stage, note, recorded_at FROM transfer_history"
                                   " WHERE transfer_id = $1 ORDER BY id", r["transfer_id"])
        transfers.append(dict(r) | {"history": [dict(h) for h in history]})
    return {"insured_status": dict(view) if view else None, "transfers": transfers}
