"""asyncpg queries for the enrollment schema."""
from __future__ import annotations

import json
from typing import Any

import asyncpg

from services.enrollment.domain.model import Application, ApplicationState, InsuredStatus, Person


async def load_person(conn: asyncpg.Connection, person_id: str) -> Person | None:
    row = await conn.fetchrow("SELECT * FROM persons WHERE person_id = $1 FOR UPDATE", person_id)
    if row is None:
        return None
    return Person(row["person_id"], row["name"], row["mobile"], row["email"],
                  row["insurance_type"], InsuredStatus(row["status"]), row["paid_until"])


async def save_person(conn: asyncpg.Connection, p: Person) -> None:
    await conn.execute(
        "INSERT INTO persons (person_id, name, mobile, email, insurance_type, status, paid_until)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (person_id) DO UPDATE SET"
        " name = $2, mobile = $3, email = $4, insurance_type = $5, status = $6,"
        " paid_until = $7, updated_at = now()",
        p.person_id, p.name, p.mobile, p.email, p.insurance_type, p.status.value, p.paid_until,
    )


def _application(row: asyncpg.Record | None) -> Application | None:
    if row is None:
        return None
    return Application(row["application_id"], row["person_id"], row["insurance_type"],
                       row["channel"], ApplicationState(row["state"]), json.loads(row["reasons"]))


async def load_application(conn: asyncpg.Connection, application_id: str) -> Application | None:
    return _application(await conn.fetchrow(
        "SELECT * FROM applications WHERE application_id = $1 FOR UPDATE", application_id))


async def latest_application(conn: asyncpg.Connection, person_id: str) -> Application | None:
    return _application(await conn.fetchrow(
        "SELECT * FROM applications WHERE person_id = $1 ORDER BY created_at DESC LIMIT 1",
        person_id))


async def save_application(conn: asyncpg.Connection, a: Application) -> None:
    await conn.execute(
        "INSERT INTO applications (application_id, person_id, insurance_type, channel, state,"
        " reasons) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (application_id) DO UPDATE SET"
        " state = $5, reasons = $6, updated_at = now()",
        a.application_id, a.person_id, a.insurance_type, a.channel, a.state.value,
        json.dumps(a.reasons, ensure_ascii=False),
    )


async def record_history(conn: asyncpg.Connection, person_id: str, reference: str, what: str,
                         detail: dict[str, Any], cause_id: str, cause_type: str) -> None:
    await conn.execute(
        "INSERT INTO history (person_id, reference, what, detail, cause_id, cause_type)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        person_id, reference, what, json.dumps(detail, ensure_ascii=False, default=str),
        cause_id, cause_type,
    )


async def payment_exists(conn: asyncpg.Connection, payment_ref: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM payments WHERE payment_ref = $1", payment_ref))


async def save_payment(conn: asyncpg.Connection, ref: str, person_id: str,
                       application_id: str | None, period: tuple[Any, Any], amount_fen: int,
                       state: str, reason: str | None) -> None:
    await conn.execute(
        "INSERT INTO payments (payment_ref, person_id, application_id, period_start, period_end,"
        " amount_fen, state, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ref, person_id, application_id, period[0], period[1], amount_fen, state, reason,
    )


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    """A person's (or an application's person's) status, applications, payments and history."""
    person_id = ref
    if not await conn.fetchval("SELECT 1 FROM persons WHERE person_id = $1", ref):
        person_id = await conn.fetchval(
            "SELECT person_id FROM applications WHERE application_id = $1", ref)
        if person_id is None:
            return None
    person = await conn.fetchrow("SELECT * FROM persons WHERE person_id = $1", person_id)
    apps = await conn.fetch("SELECT application_id, insurance_type, channel, state, reasons,"
                            " updated_at FROM applications WHERE person_id = $1"
                            " ORDER BY created_at", person_id)
    payments = await conn.fetch("SELECT payment_ref, period_start, period_end, amount_fen, state,"
                                " reason FROM payments WHERE person_id = $1"
                                " ORDER BY recorded_at", person_id)
    history = await conn.fetch("SELECT recorded_at, reference, what, detail, cause_type"
                               " FROM history WHERE person_id = $1 ORDER BY id", person_id)
    return {
        "person": dict(person) if person else {"person_id": person_id},
        "applications": [dict(a) | {"reasons": json.loads(a["reasons"])} for a in apps],
        "payments": [dict(p) for p in payments],
        "history": [dict(h) | {"detail": json.loads(h["detail"])} for h in history],
    }
