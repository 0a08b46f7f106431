"""Set-based writes of gateway answers and SMS receipts: one statement per kind for a batch."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from services.notify import repository as repo
from services.notify.domain.sms import (
    RECEIPT_STATES,
    overall_delivery_state,
    parts_needed,
    receipts_show_sent,
)

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
    await _add_parts(conn, [(mid, i, seq) for i, channel, ids in sent
                            if channel == "sms" and i in changed
                            for seq, mid in enumerate(ids, start=1) if mid])
    return changed


async def _add_parts(conn: asyncpg.Connection, parts: list[tuple[str, int, int]]) -> None:
    """(gateway message id, delivery id, seq): the SMS parts the SMSC took, so their receipts
    reach the delivery; receipts that overtook the answer already sit in sms_receipts."""
    if not parts:
        return
    await conn.execute(
        "INSERT INTO sms_parts (message_id, delivery_id, seq)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[]) ON CONFLICT DO NOTHING",
        [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts])
    await refresh_sms_states(conn, {p[1] for p in parts}, only_changed_from="submitted")


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
    """(delivery id, error, gateway ids of parts that went or None): handed over, no answer.
    The parts the SMSC did take are recorded as parts, so their receipts reach the message
    (and the reconciliation can tell from them that it went out)."""
    if not unknown:
        return set()
    await lock_messages(conn, (m for _, _, ids in unknown for m in ids or ()))
    rows = await conn.fetch(
        "UPDATE deliveries d SET status = 'unknown', last_error = v.error,"
        " provider_ids = coalesce(v.provider_ids, d.provider_ids)"
        " FROM jsonb_to_recordset($1::jsonb) AS v(id bigint, error text, provider_ids text[])"
        " WHERE d.id = v.id AND d.status = 'sending' RETURNING d.id, d.channel",
        json.dumps([{"id": i, "error": e, "provider_ids": p or None} for i, e, p in unknown]))
    sms = {r["id"] for r in rows if r["channel"] == "sms"}
    await _add_parts(conn, [(mid, i, seq) for i, _, ids in unknown if i in sms
                            for seq, mid in enumerate(ids or (), start=1) if mid])
    return {r["id"] for r in rows}


async def record_receipts(conn: asyncpg.Connection, receipts: Sequence[tuple[str, str]]) -> None:
    """(gateway message id, receipt stat); the last receipt for a message wins. A receipt
    naming its handset (domain.sms.Receipt) keeps the handset's keyed hash."""
    states = {mid: RECEIPT_STATES.get(stat, stat.lower()) for mid, stat in receipts}
    if not states:
        return
    handsets = {r[0]: repo.handset_key(h) for r in receipts
                if (h := getattr(r, "handset", None))}
    await lock_messages(conn, states)
    ids = list(states)
    await conn.execute(
        "INSERT INTO sms_receipts (message_id, state, handset_key)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
        " ON CONFLICT (message_id) DO UPDATE SET state = excluded.state, received_at = now(),"
        " handset_key = coalesce(excluded.handset_key, sms_receipts.handset_key)",
        ids, [states[m] for m in ids], [handsets.get(m) for m in ids])
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


async def resolve_unknown_sms(conn: asyncpg.Connection, settle_seconds: float,
                              limit: int = 500) -> list[dict[str, Any]]:
    """Reconcile 'unknown' SMS against the SMSC's receipts (run in one transaction with the
    events it causes). First, receipts whose submit answer was lost are linked to the message
    they are about: by handset, received since its hand-over and left unclaimed for
    `settle_seconds`, only where exactly one unknown SMS to that handset lacks parts and the
    receipts are exactly as many as it lacks (anything else stays for an operator). Then each
    whose receipts account for every part, delivered or accepted, becomes 'sent' (once: a
    late answer or another replica finds it sent already). Returns those, for their events."""
    unknown = await repo.unknown_sms(conn, limit)
    if not unknown:
        return []
    by_id = {r["id"]: r for r in unknown}
    needed = {r["id"]: parts_needed(str(r["body"])) for r in unknown}
    known = await _part_states(conn, list(by_id))
    lacking: dict[str, list[dict[str, Any]]] = {}
    for r in unknown:
        if len(known[r["id"]]) < needed[r["id"]]:
            lacking.setdefault(str(r["recipient"]), []).append(r)
    owner = {k: handset for handset, rows in lacking.items() if len(rows) == 1
             for k in repo.handset_keys(handset)}
    found: dict[str, list[asyncpg.Record]] = {}
    for receipt in await repo.unclaimed_receipts(conn, list(owner), settle_seconds):
        found.setdefault(owner[receipt["handset_key"]], []).append(receipt)
    links = []
    for handset, receipts in found.items():
        (row,) = lacking[handset]
        since = [m["message_id"] for m in receipts if m["received_at"] >= row["claimed_at"]]
        if len(since) == needed[row["id"]] - len(known[row["id"]]):
            links += [(mid, row["id"], len(known[row["id"]]) + n)
                      for n, mid in enumerate(since, start=1)]
    if links:
        await lock_messages(conn, (mid for mid, _, _ in links))
        await _add_parts(conn, links)
        known = await _part_states(conn, list(by_id))
    confirmed = [i for i in by_id if receipts_show_sent(known[i], needed[i])]
    if not confirmed:
        return []
    rows = await conn.fetch(
        "UPDATE deliveries d SET status = 'sent', sent_at = now(), last_error = NULL,"
        " provider_ids = (SELECT array_agg(message_id ORDER BY seq) FROM sms_parts p"
        " WHERE p.delivery_id = d.id)"
        " WHERE d.id = ANY($1::bigint[]) AND d.status = 'unknown' RETURNING d.id", confirmed)
    return [by_id[r["id"]] for r in sorted(rows, key=lambda r: r["id"])]


async def _part_states(conn: asyncpg.Connection, delivery_ids: list[int]) -> dict[int, list[str]]:
    """Per delivery, the receipt state of each part it has (submitted while none came)."""
    states: dict[int, list[str]] = {i: [] for i in delivery_ids}
    for r in await conn.fetch(
            "SELECT p.delivery_id, coalesce(r.state, 'submitted') AS state FROM sms_parts p"
            " LEFT JOIN sms_receipts r USING (message_id)"
            " WHERE p.delivery_id = ANY($1::bigint[]) ORDER BY p.delivery_id, p.seq",
            delivery_ids):
        states[r["delivery_id"]].append(r["state"])
    return states
