"""Set-based writes of gateway answers and SMS receipts: one statement per kind for a batch."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
import asyncpg

from services.notify.domain.sms import RECEIPT_STATES, overall_delivery_state

# The same rules as repository.mark_sent / mark_failed / mark_unknown / record_receipt, for
# many rows at once: a gateway's answer beats a sweep's 'unknown', a replayed answer changes
# nothing (so nothing is emitted twice), 'unknown' is only set on a row still 'sending'.


async def lock_messages(conn: asyncpg.Connection, message_ids: Iterable[str]) -> None:
    """A receipt can race the submit response it answers; the lock orders the two so the later
    one sees the earlier one's row. Same lock and order as repository._lock_messages."""
    ids = sorted({m for m in message_ids if m})
    if ids:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(m))"
                           " FROM unnest($1::text[]) AS m ORDER BY m", ids)


async def mark_sent(conn: asyncpg.Connection,
                    sent: Sequence[tuple[int, str, list[str]]]) -> set[int]:
    """(delivery id, channel, gateway ids) answered as accepted; returns the ids changed now."""
    if not sent:
        return set()
    await lock_messages(conn, (m for _, channel, ids in sent if channel == "sms" for m in ids))
    rows = await conn.fetch(
        "UPDATE deliveries d SET status = 'sent', sent_at = now(), last_error = NULL,"
        " provider_ids = v.provider_ids,"
        " delivery_state = CASE WHEN v.channel = 'sms' THEN 'submitted' ELSE 'accepted' END"
        " FROM jsonb_to_recordset($1::jsonb) AS v(id bigint, channel text, provider_ids text[])"
        " WHERE d.id = v.id AND d.status IN ('sending', 'unknown') RETURNING d.id",
        json.dumps([{"id": i, "channel": c, "provider_ids": p} for i, c, p in sent]))
    changed = {r["id"] for r in rows}
    parts = [(mid, i, seq) for i, channel, ids in sent if channel == "sms" and i in changed
             for seq, mid in enumerate(ids, start=1) if mid]
    if parts:
        await conn.execute(
            "INSERT INTO sms_parts (message_id, delivery_id, seq)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[]) ON CONFLICT DO NOTHING",
            [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts])
        # Receipts that overtook their submit response already sit in sms_receipts.
        await refresh_sms_states(conn, {p[1] for p in parts}, only_changed_from="submitted")
    return changed


async def mark_failed(conn: asyncpg.Connection,
                      failed: Sequence[tuple[int, str, bool, float]]) -> set[int]:
    """(delivery id, error, park, retry in seconds): refused, nothing went out."""
    if not failed:
        return set()
    rows = await conn.fetch(
        "UPDATE deliveries d SET status = CASE WHEN v.park THEN 'parked' ELSE 'pending' END,"
        " last_error = v.error, next_attempt_at = now() + make_interval(secs => v.retry_in)"
        " FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::float8[])"
        " AS v(id, error, park, retry_in)"
        " WHERE d.id = v.id AND d.status IN ('sending', 'unknown') RETURNING d.id",
        [f[0] for f in failed], [f[1] for f in failed], [f[2] for f in failed],
        [float(f[3]) for f in failed])
    return {r["id"] for r in rows}


async def mark_unknown(conn: asyncpg.Connection,
                       unknown: Sequence[tuple[int, str, list[str] | None]]) -> set[int]:
    """(delivery id, error, gateway ids of parts that went or None): handed over, no answer."""
    if not unknown:
        return set()
    rows = await conn.fetch(
        "UPDATE deliveries d SET status = 'unknown', last_error = v.error,"
        " provider_ids = coalesce(v.provider_ids, d.provider_ids)"
        " FROM jsonb_to_recordset($1::jsonb) AS v(id bigint, error text, provider_ids text[])"
        " WHERE d.id = v.id AND d.status = 'sending' RETURNING d.id",
        json.dumps([{"id": i, "error": e, "provider_ids": p or None} for i, e, p in unknown]))
    return {r["id"] for r in rows}


async def record_receipts(conn: asyncpg.Connection, receipts: Sequence[tuple[str, str]]) -> None:
    """(gateway message id, receipt stat); the last receipt for a message wins."""
    states = {mid: RECEIPT_STATES.get(stat, stat.lower()) for mid, stat in receipts}
    if not states:
        return
    await lock_messages(conn, states)
    ids = list(states)
    await conn.execute(
        "INSERT INTO sms_receipts (message_id, state) SELECT * FROM unnest($1::text[], $2::text[])"
        " ON CONFLICT (message_id) DO UPDATE SET state = excluded.state, received_at = now()",
        ids, [states[m] for m in ids])
    deliveries = {r["delivery_id"] for r in await conn.fetch(
        "SELECT DISTINCT delivery_id FROM sms_parts WHERE message_id = ANY($1::text[])", ids)}
    await refresh_sms_states(conn, deliveries)


async def refresh_sms_states(conn: asyncpg.Connection, delivery_ids: Iterable[int],
                             only_changed_from: str | None = None) -> None:
    ids = sorted(set(delivery_ids))
    if not ids:
        return
    parts: dict[int, list[str]] = {i: [] for i in ids}
    for r in await conn.fetch(
            "SELECT p.delivery_id, coalesce(r.state, 'submitted') AS state FROM sms_parts p"
            " LEFT JOIN sms_receipts r USING (message_id)"
            " WHERE p.delivery_id = ANY($1::bigint[])", ids):
        parts[r["delivery_id"]].append(r["state"])
    overall = {i: overall_delivery_state(states) for i, states in parts.items()}
    if only_changed_from is not None:
        overall = {i: s for i, s in overall.items() if s != only_changed_from}
    if overall:
        await conn.execute(
            "UPDATE deliveries d SET delivery_state = v.state"
            " FROM unnest($1::bigint[], $2::text[]) AS v(id, state) WHERE d.id = v.id",
            list(overall), list(overall.values()))
