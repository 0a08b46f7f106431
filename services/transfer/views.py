"""What `medins status` and GET /status/{ref} show of transfers: stages, clocks, estimates."""
from __future__ import annotations

from typing import Any

import asyncpg

from services.transfer import repository as repo
from services.transfer.domain import transfer as rules
from services.transfer.repository import to_transfer
from shared.clock import china_today
from shared.db.sealed import resident_keys
from shared.workdays import default_calendar

_SHOWN = ("transfer_id", "direction", "from_region", "to_region", "stage", "trigger", "mode",
          "insurance_type", "contribution_months", "account_balance_fen", "credited_months",
          "credited_balance_fen", "started_on", "due_on", "leg_due_on", "dispatched_on",
          "completed_on", "paused_since", "paused_working_days", "tracking_number", "reason",
          "due_provisional", "partner_active_since", "clock_source", "channel_ref")


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    rows = await repo.transfers_for_status(conn, ref)
    view = await repo.insured_row(conn, ref)
    ignored = await repo.ignored_answers(conn, ref)
    if not rows and view is None and not ignored:
        return None
    today, calendar = china_today(), default_calendar()
    transfers = []
    for row in rows:
        t = to_transfer(row)
        shown: dict[str, Any] = {k: row[k] for k in _SHOWN}
        # Past the holiday data the counts are provisional (weekends only), never missing.
        p = rules.progress(t, today, calendar)
        shown |= {"working_days_left": p.working_days_left,
                  "estimated_completion": p.estimated_completion,
                  "clocks_stopped": p.clocks_stopped,
                  "reconciled": rules.reconciled(t)}
        if t.due_provisional and t.started_on and t.due_on:
            shown["provisional_years"] = list(calendar.missing_years(t.started_on, t.due_on))
        shown["stages"] = [dict(h) for h in await repo.history(conn, row["id"])]
        shown["ignored_answers"] = await repo.ignored_answers(conn, t.transfer_id)
        transfers.append(shown)
    result: dict[str, Any] = {"insured_status": view, "transfers": transfers}
    if ignored and not rows:
        result["ignored_answers"] = ignored
    return result


async def progress_of(conn: asyncpg.Connection, person_id: str) -> dict[str, list[dict[str, Any]]]:
    """The person's transfers, either way, as rows for shared.progress (no balances)."""
    rows = await conn.fetch(
        "SELECT transfer_id, direction, from_region, to_region, stage, trigger, mode, reason,"
        " started_on, due_on, completed_on, paused_since, created_at, updated_at"
        " FROM transfers WHERE person_key = ANY($1::text[])", resident_keys(person_id))
    return {"transfers": [dict(r) for r in rows]}
