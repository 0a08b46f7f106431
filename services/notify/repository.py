"""asyncpg queries for the notify schema: contacts and deliveries."""
from __future__ import annotations

from typing import Any

import asyncpg

from services.notify.domain.catalogue import Contact, Message


async def upsert_contact(conn: asyncpg.Connection, person_id: str, name: str, mobile: str,
                         email: str | None) -> None:
    await conn.execute(
        "INSERT INTO contacts (person_id, name, mobile, email) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (person_id) DO UPDATE SET name = $2, mobile = $3, email = $4,"
        " updated_at = now()", person_id, name, mobile, email)


async def load_contact(conn: asyncpg.Connection, person_id: str) -> Contact | None:
    row = await conn.fetchrow("SELECT * FROM contacts WHERE person_id = $1", person_id)
    if row is None:
        return None
    return Contact(row["person_id"], row["name"], row["mobile"], row["email"],
                   row["sms_opt_in"], row["email_opt_in"])


async def claim_deliveries(conn: asyncpg.Connection, source_event_id: str, person_id: str,
                           messages: list[Message]) -> None:
    await conn.executemany(
        "INSERT INTO deliveries (source_event_id, person_id, channel, recipient, template,"
        " subject, body) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (source_event_id, channel, recipient) DO NOTHING",
        [(source_event_id, person_id, m.channel, m.recipient, m.template, m.subject, m.body)
         for m in messages],
    )


async def park_without_contact(conn: asyncpg.Connection, source_event_id: str, person_id: str,
                               event_type: str) -> None:
    await conn.execute(
        "INSERT INTO deliveries (source_event_id, person_id, channel, recipient, template, body,"
        " status, last_error) VALUES ($1, $2, 'none', '', $3, '', 'parked',"
        " 'no contact data recorded for this person') ON CONFLICT DO NOTHING",
        source_event_id, person_id, event_type)


async def claim_due(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Mark due messages as sending; a crash leaves them 'sending' for reconciliation."""
    return await conn.fetch(
        "UPDATE deliveries SET status = 'sending', attempts = attempts + 1 WHERE id IN ("
        " SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *", limit)


async def mark_sent(conn: asyncpg.Connection, delivery_id: int) -> None:
    await conn.execute("UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL"
                       " WHERE id = $1", delivery_id)


async def mark_failed(conn: asyncpg.Connection, delivery_id: int, error: str, park: bool,
                      retry_in_seconds: float) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = $2, last_error = $3,"
        " next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1",
        delivery_id, "parked" if park else "pending", error, retry_in_seconds)


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    contact = await conn.fetchrow("SELECT person_id, name, mobile, email FROM contacts"
                                  " WHERE person_id = $1", ref)
    rows = await conn.fetch(
        "SELECT channel, recipient, template, status, attempts, last_error, created_at, sent_at"
        " FROM deliveries WHERE person_id = $1 ORDER BY id", ref)
    if contact is None and not rows:
        return None
    return {"contact": dict(contact) if contact else None, "messages": [dict(r) for r in rows]}
