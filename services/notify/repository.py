"""asyncpg queries for the notify schema: contacts, preferences, deliveries, SMS receipts."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg

from services.notify.domain.catalogue import NOT_SENT, Contact, Message
from services.notify.domain.sms import RECEIPT_STATES, overall_delivery_state
from shared.db.sealed import (
    Sealed,
    keys,
    resident_id_column,
    resident_key,
    resident_keys,
    resident_owners,
)

# Contact data and what a message says (names, diseases, amounts) sealed at rest
# (shared/db/sealed.py); a delivery's values are bound to its person, event and channel.
# No table keeps a resident ID in clear: a keyed hash of it (person_key, the same in every
# table) finds a person's rows, the ID itself is kept sealed (person_ref) for re-hashing
# under a new key, and binds the row's values (those sealed before bound to the same ID).
PERSON = resident_id_column("contacts")
NAME = Sealed("contacts", "name", (PERSON,))
MOBILE = Sealed("contacts", "mobile", (PERSON,))
EMAIL = Sealed("contacts", "email", (PERSON,))
PREFERRING = resident_id_column("preferences")
ADDRESSEE = resident_id_column("deliveries")
_MESSAGE = (ADDRESSEE, "source_event_id", "channel")
# The keyed hash keeps "one message per event, channel and recipient" a unique key.
RECIPIENT = Sealed("deliveries", "recipient", _MESSAGE, hash_column="recipient_key")
SUBJECT = Sealed("deliveries", "subject", _MESSAGE)
BODY = Sealed("deliveries", "body", _MESSAGE)
SEALED = (PERSON, NAME, MOBILE, EMAIL, PREFERRING, ADDRESSEE, RECIPIENT, SUBJECT, BODY)
# The handset an SMS receipt reports on, as a keyed hash of one purpose for every receipt and
# message (recipient_key is bound to its message): it links a receipt whose submit answer was
# lost to the message sent to that handset, with no mobile number kept in clear.
HANDSET = "sms-handset"


def handset_key(number: str) -> str:
    return keys().digest(number, HANDSET)


def handset_keys(number: str) -> list[str]:
    """Under every valid hash key: receipts hashed before a key rotation still match."""
    return keys().digests(number, HANDSET)


def _opened(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A delivery row with its person's ID, recipient, subject and body opened (those it
    has); `person_ref` stays sealed, for the journal (person_key is of no use past here)."""
    out = dict(row)
    out.pop("person_key", None)
    out["person_id"] = ADDRESSEE.open(out["person_ref"])
    key = (out["person_id"], out["source_event_id"], out["channel"])
    for col in (RECIPIENT, SUBJECT, BODY):
        if col.column in out:
            out[col.column] = col.open(out[col.column], *key)
    return out


def _sealed_message(source_event_id: str, person_id: str, channel: str, recipient: str,
                    subject: str | None, body: str) -> tuple[Any, ...]:
    key = (person_id, source_event_id, channel)
    return (RECIPIENT.seal(recipient, *key), RECIPIENT.digest(recipient, *key),
            SUBJECT.seal(subject, *key), BODY.seal(body, *key))

REQUEUED = "requeued by operator"


async def upsert_contact(conn: asyncpg.Connection, person_id: str, name: str, mobile: str,
                         email: str | None) -> None:
    await upsert_contacts(conn, [(person_id, name, mobile, email)])


async def upsert_contacts(conn: asyncpg.Connection,
                          contacts: list[tuple[str, str, str, str | None]]) -> None:
    """Contact data of several people (one each) in one statement per table: rows found by
    any valid hash of the ID are updated, the others inserted."""
    if not contacts:
        return
    owner = resident_owners(pid for pid, *_ in contacts)
    stored = {owner[r["person_key"]]: r["person_key"] for r in await conn.fetch(
        "SELECT person_key FROM contacts WHERE person_key = ANY($1::text[])", list(owner))}
    update, insert = [], []
    for pid, name, mobile, email in contacts:
        values = (NAME.seal(name, pid), MOBILE.seal(mobile, pid), EMAIL.seal(email, pid))
        if pid in stored:
            update.append((stored[pid], *values))
        else:
            insert.append((PERSON.seal(pid), resident_key(pid), *values))
    if update:
        await conn.execute(
            "UPDATE contacts c SET name = u.name, mobile = u.mobile, email = u.email,"
            " updated_at = now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " AS u(person_key, name, mobile, email) WHERE c.person_key = u.person_key",
            *[list(col) for col in zip(*update, strict=True)])
    if insert:
        await conn.execute(
            "INSERT INTO contacts (person_ref, person_key, name, mobile, email)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])",
            *[list(col) for col in zip(*insert, strict=True)])


async def set_preferences(conn: asyncpg.Connection, person_id: str, sms: bool,
                          email: bool) -> None:
    # The row found by any valid hash of the ID is updated (one not yet re-hashed after a key
    # rotation too), else one is added: one statement, as before.
    await conn.execute(
        "WITH updated AS (UPDATE preferences SET sms = $4, email = $5, updated_at = now()"
        " WHERE person_key = ANY($1::text[]) RETURNING 1)"
        " INSERT INTO preferences (person_ref, person_key, sms, email)"
        " SELECT $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM updated)",
        resident_keys(person_id), PREFERRING.seal(person_id), resident_key(person_id), sms,
        email)


async def load_contact(conn: asyncpg.Connection, person_id: str) -> Contact | None:
    return (await load_contacts(conn, {person_id})).get(person_id)


async def load_contacts(conn: asyncpg.Connection,
                        person_ids: set[str]) -> dict[str, Contact]:
    """The contacts of several people at once (one query per table), by any valid hash of
    each ID; those with none are absent."""
    if not person_ids:
        return {}
    owner = resident_owners(person_ids)
    keys = list(owner)
    rows = await conn.fetch("SELECT person_key, name, mobile, email FROM contacts"
                            " WHERE person_key = ANY($1::text[])", keys)
    chosen = {r["person_key"]: (r["sms"], r["email"]) for r in await conn.fetch(
        "SELECT person_key, sms, email FROM preferences WHERE person_key = ANY($1::text[])",
        keys)}
    prefs = {owner[k]: v for k, v in chosen.items()}
    found = {}
    for r in rows:
        pid = owner[r["person_key"]]
        sms, mail = prefs.get(pid, (True, True))
        found[pid] = Contact(pid, str(NAME.open(r["name"], pid)),
                             str(MOBILE.open(r["mobile"], pid)), EMAIL.open(r["email"], pid),
                             sms, mail)
    return found


DUE_PREFIX, DUE_HASH_CHARS = "deliveries_due_", 12


def due_channel(schema: str) -> str:
    """The NOTIFY channel on which a schema's new deliveries are announced (its committing
    transaction computes the same name from `current_schema()`)."""
    digest = hashlib.md5(schema.encode(), usedforsecurity=False).hexdigest()
    return DUE_PREFIX + digest[:DUE_HASH_CHARS]


async def claim_all_deliveries(conn: asyncpg.Connection,
                               claims: list[tuple[str, str, list[Message]]]
                               ) -> list[list[Message]]:
    """One delivery row per message of several events, the messages to send in one
    statement; one with a problem is parked at once with it, never sent (rare: one statement
    each). Returns, per claim, the messages newly parked (a replayed event parks none)."""
    rows, channels = [], set()
    for source_event_id, person_id, messages in claims:
        ref, key = ADDRESSEE.seal(person_id), resident_key(person_id)
        sending = [m for m in messages if m.problem is None]
        rows += [(source_event_id, ref, key, m.channel,
                  *_sealed_message(source_event_id, person_id, m.channel, m.recipient,
                                   m.subject, m.body), m.template) for m in sending]
        channels.update(m.channel for m in sending)
    if rows:
        await conn.execute(
            "INSERT INTO deliveries (source_event_id, person_ref, person_key, channel,"
            " recipient, recipient_key, subject, body, template)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
            " $6::text[], $7::text[], $8::text[], $9::text[])"
            " ON CONFLICT (source_event_id, channel, recipient_key) DO NOTHING",
            *[list(col) for col in zip(*rows, strict=True)])
        # Delivered on commit: the dispatcher claims at once instead of at its next poll,
        # on the channels named (comma-separated) only.
        await conn.execute(f"SELECT pg_notify('{DUE_PREFIX}' || left(md5(current_schema()),"
                           f" {DUE_HASH_CHARS}), $1)", ",".join(sorted(channels)))
    return [await _park(conn, source_event_id, person_id, messages)
            for source_event_id, person_id, messages in claims]


async def _park(conn: asyncpg.Connection, source_event_id: str, person_id: str,
                messages: list[Message]) -> list[Message]:
    parked = []
    for m in messages:
        if m.problem is not None and await conn.fetchval(
                "INSERT INTO deliveries (source_event_id, person_ref, person_key, channel,"
                " recipient, recipient_key, subject, body, template, status, last_error)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'parked', $10)"
                " ON CONFLICT (source_event_id, channel, recipient_key) DO NOTHING RETURNING id",
                source_event_id, ADDRESSEE.seal(person_id), resident_key(person_id), m.channel,
                *_sealed_message(source_event_id, person_id, m.channel, m.recipient,
                                 m.subject, m.body), m.template, m.problem) is not None:
            parked.append(m)
    return parked


async def claim_deliveries(conn: asyncpg.Connection, source_event_id: str, person_id: str,
                           messages: list[Message]) -> list[Message]:
    """One row per message; one with a problem is parked at once with it, never sent.
    Returns those newly parked (a replayed event parks nothing twice)."""
    return (await claim_all_deliveries(conn, [(source_event_id, person_id, messages)]))[0]


async def wait_for_contact(conn: asyncpg.Connection, source_event_id: str, person_id: str,
                           event_type: str, region: str, data: dict[str, Any]) -> None:
    """Keep the event, visibly parked, until the person's contact data arrives."""
    recipient, key, _, body = _sealed_message(source_event_id, person_id, "none", region, None,
                                              json.dumps(data, ensure_ascii=False))
    await conn.execute(
        "INSERT INTO deliveries (source_event_id, person_ref, person_key, channel, recipient,"
        " recipient_key, template, body, status, last_error) VALUES ($1, $2, $3, 'none', $4,"
        " $5, $6, $7, 'parked', 'no contact data recorded for this person yet')"
        " ON CONFLICT DO NOTHING",
        source_event_id, ADDRESSEE.seal(person_id), resident_key(person_id), recipient, key,
        event_type, body)


async def waiting_for_contact(conn: asyncpg.Connection,
                              person_id: str) -> list[dict[str, Any]]:
    return (await waiting_for_contacts(conn, {person_id})).get(person_id, [])


async def waiting_for_contacts(conn: asyncpg.Connection,
                               person_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The events of several people kept until their contact data arrives, in one query:
    person -> waiting events, oldest first, locked."""
    if not person_ids:
        return {}
    owner = resident_owners(person_ids)
    found: dict[str, list[dict[str, Any]]] = {}
    for r in await conn.fetch(
            "SELECT id, source_event_id, person_ref, person_key, channel, recipient,"
            " template AS event_type, body FROM deliveries"
            " WHERE person_key = ANY($1::text[]) AND channel = 'none' AND status = 'parked'"
            " ORDER BY id FOR UPDATE", list(owner)):
        pid = owner[r["person_key"]]
        row = _opened(r)
        found.setdefault(pid, []).append({
            "id": row["id"], "source_event_id": row["source_event_id"],
            "region": row["recipient"], "event_type": row["event_type"], "body": row["body"],
            "data": json.loads(row["body"])})
    return found


async def contact_arrived(conn: asyncpg.Connection, delivery_id: int) -> None:
    await conn.execute("UPDATE deliveries SET status = 'resolved', last_error = NULL"
                       " WHERE id = $1", delivery_id)


async def claim_due(conn: asyncpg.Connection, channel: str, limit: int,
                    worker: str | None = None) -> list[dict[str, Any]]:
    """Mark due messages 'sending' before any is sent: a crash leaves them for reconciling."""
    return [_opened(r) for r in await conn.fetch(
        "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = now(),"
        " claimed_by = $3"
        " WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND channel = $1"
        " AND next_attempt_at <= now() ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING *", channel, limit, worker)]


async def release_unsent(conn: asyncpg.Connection, worker: str) -> int:
    """At a worker's start: what its previous run claimed and, per its journal, never handed
    over goes back to pending (the caller first marks what was handed over)."""
    rows = await conn.fetch(
        "UPDATE deliveries SET status = 'pending', attempts = greatest(attempts - 1, 0)"
        " WHERE status = 'sending' AND claimed_by = $1 RETURNING id", worker)
    return len(rows)


async def mark_sent(conn: asyncpg.Connection, delivery_id: int, provider_ids: list[str],
                    channel: str) -> bool:
    """Record a hand-over the gateway answered; a gateway's answer beats a sweep's 'unknown'.
    False when already recorded (a replayed outcome), so nothing is emitted twice."""
    updated = await conn.fetchval(
        "UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL,"
        " provider_ids = $2, delivery_state = $3 WHERE id = $1"
        " AND status IN ('sending', 'unknown') RETURNING id",
        delivery_id, provider_ids, "submitted" if channel == "sms" else "accepted")
    if updated is None:
        return False
    if channel == "sms":
        await _lock_messages(conn, provider_ids)
        await conn.executemany(
            "INSERT INTO sms_parts (message_id, delivery_id, seq) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            [(mid, delivery_id, seq) for seq, mid in enumerate(provider_ids, start=1) if mid])
        await refresh_sms_state(conn, delivery_id)
    return True


async def mark_failed(conn: asyncpg.Connection, delivery_id: int, error: str, park: bool,
                      retry_in_seconds: float) -> bool:
    """The gateway refused it (nothing went out): retry later or park."""
    updated = await conn.fetchval(
        "UPDATE deliveries SET status = $2, last_error = $3,"
        " next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1"
        " AND status IN ('sending', 'unknown') RETURNING id",
        delivery_id, "parked" if park else "pending", error, retry_in_seconds)
    return updated is not None


async def mark_unknown(conn: asyncpg.Connection, delivery_id: int, error: str,
                       provider_ids: list[str] | None = None) -> bool:
    updated = await conn.fetchval(
        "UPDATE deliveries SET status = 'unknown', last_error = $2,"
        " provider_ids = coalesce($3, provider_ids) WHERE id = $1 AND status = 'sending'"
        " RETURNING id", delivery_id, error, provider_ids)
    return updated is not None


async def release(conn: asyncpg.Connection, ids: list[int]) -> None:
    """Claimed but never handed over (the worker is stopping): due again at once."""
    await conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = greatest(attempts - 1, 0)"
        " WHERE id = ANY($1::bigint[]) AND status = 'sending'", ids)


async def stale_sending_to_unknown(conn: asyncpg.Connection, older_than_seconds: float,
                                   holding: list[int] | None = None,
                                   worker: str | None = None) -> int:
    """A 'sending' row nobody holds an answer for: its worker died between hand-over and
    writing down the answer. Rows this worker still holds are never guessed at; rows this
    (live) worker claimed and holds nothing of were never handed over (every hand-over stays
    held until its answer is written: a claim whose reply the database lost on its way
    down) and go back to pending."""
    if worker is not None:
        await conn.execute(
            "UPDATE deliveries SET status = 'pending', attempts = greatest(attempts - 1, 0)"
            " WHERE status = 'sending' AND claimed_by = $1"
            " AND claimed_at < now() - make_interval(secs => $2)"
            " AND NOT id = ANY($3::bigint[])", worker, older_than_seconds, holding or [])
    rows = await conn.fetch(
        "UPDATE deliveries SET status = 'unknown', last_error = 'worker died after handing it"
        " over and before recording the answer; check with the gateway before resending'"
        " WHERE status = 'sending' AND claimed_at < now() - make_interval(secs => $1)"
        " AND NOT id = ANY($2::bigint[]) RETURNING id", older_than_seconds, holding or [])
    return len(rows)


async def record_receipt(conn: asyncpg.Connection, message_id: str, stat: str) -> None:
    state = RECEIPT_STATES.get(stat, stat.lower())
    await _lock_messages(conn, [message_id])
    await conn.execute(
        "INSERT INTO sms_receipts (message_id, state) VALUES ($1, $2) ON CONFLICT (message_id)"
        " DO UPDATE SET state = $2, received_at = now()", message_id, state)
    delivery_id = await conn.fetchval("SELECT delivery_id FROM sms_parts WHERE message_id = $1",
                                      message_id)
    if delivery_id is not None:
        await refresh_sms_state(conn, delivery_id)


async def _lock_messages(conn: asyncpg.Connection, message_ids: list[str]) -> None:
    """A receipt can race the submit response it answers; this lock orders the two so the
    later one always sees the earlier one's row."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(m))"
                       " FROM unnest($1::text[]) AS m ORDER BY m", message_ids)


async def refresh_sms_state(conn: asyncpg.Connection, delivery_id: int) -> None:
    states = [r["state"] for r in await conn.fetch(
        "SELECT coalesce(r.state, 'submitted') AS state FROM sms_parts p"
        " LEFT JOIN sms_receipts r USING (message_id) WHERE p.delivery_id = $1", delivery_id)]
    await conn.execute("UPDATE deliveries SET delivery_state = $2 WHERE id = $1",
                       delivery_id, overall_delivery_state(states))


async def counts_by_status(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT channel, status, count(*) AS n FROM deliveries"
                            " WHERE status IN ('parked', 'unknown') GROUP BY 1, 2")


async def needing_attention(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [{k: v for k, v in _opened(r).items() if k not in ("source_event_id", "person_ref")}
            for r in await conn.fetch(
                "SELECT id, person_ref, source_event_id, channel, recipient, template, status,"
                " attempts, last_error, created_at FROM deliveries"
                " WHERE status IN ('parked', 'unknown') ORDER BY id")]


async def unknown_sms(conn: asyncpg.Connection, limit: int = 500) -> list[dict[str, Any]]:
    """'unknown' SMS, latest hand-over first (receipts come within the SMSC's validity period:
    old ones left for the operator do not crowd out new ones), recipient and body opened:
    what the reconciliation checks against the SMSC's receipts."""
    return [_opened(r) for r in await conn.fetch(
        "SELECT id, person_ref, source_event_id, channel, recipient, body, template, attempts,"
        " coalesce(claimed_at, created_at) AS claimed_at FROM deliveries"
        " WHERE status = 'unknown' AND channel = 'sms'"
        " ORDER BY coalesce(claimed_at, created_at) DESC, id DESC LIMIT $1", limit)]


async def unclaimed_receipts(conn: asyncpg.Connection, handsets: list[str],
                             older_than_seconds: float = 0.0) -> list[asyncpg.Record]:
    """Receipts about these handsets (keyed hashes) that no message here claims as a part
    (their submit answer was lost), received at least `older_than_seconds` ago."""
    return await conn.fetch(
        "SELECT r.message_id, r.state, r.handset_key, r.received_at FROM sms_receipts r"
        " WHERE r.handset_key = ANY($1::text[])"
        " AND r.received_at <= now() - make_interval(secs => $2)"
        " AND NOT EXISTS (SELECT 1 FROM sms_parts p WHERE p.message_id = r.message_id)"
        " ORDER BY r.received_at, r.message_id", handsets, older_than_seconds)


async def receipts_say_handed_over(conn: asyncpg.Connection, ids: list[int]) -> set[int]:
    """Of these SMS, those the SMSC's receipts show went out: a receipt for one of its parts,
    or a receipt about its handset since it was handed over that no message claims (its
    submit answer was lost: it may well be this one). Never resent, even with --force."""
    if not ids:
        return set()
    rows = [_opened(r) for r in await conn.fetch(
        "SELECT id, person_ref, source_event_id, channel, recipient,"
        " coalesce(claimed_at, created_at) AS claimed_at,"
        " EXISTS (SELECT 1 FROM sms_parts p JOIN sms_receipts r USING (message_id)"
        " WHERE p.delivery_id = d.id) AS receipted"
        " FROM deliveries d WHERE id = ANY($1::bigint[]) AND channel = 'sms'", ids)]
    found = {r["id"] for r in rows if r["receipted"]}
    for r in rows:
        if r["id"] not in found and any(
                u["received_at"] >= r["claimed_at"] for u in await unclaimed_receipts(
                    conn, handset_keys(str(r["recipient"])))):
            found.add(r["id"])
    return found


async def requeue(conn: asyncpg.Connection, ids: list[int] | None,
                  force: list[int] | None = None) -> list[asyncpg.Record]:
    """Operator's retry: parked messages go back to pending with fresh attempts; an 'unknown'
    one only when named in `force` (the operator checked with the gateway); never one the
    records show as handed over (a gateway id, a sent time, or the SMSC's receipts), nor one
    parked before sending because a value was missing (the operator contacts the person
    instead)."""
    if force:
        receipted = await receipts_say_handed_over(conn, force)
        force = [i for i in force if i not in receipted]
    return await conn.fetch(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),"
        " retry_since = now(), last_error = $2"
        " WHERE (status = 'parked' OR (status = 'unknown' AND id = ANY($3::bigint[])))"
        " AND sent_at IS NULL AND cardinality(array_remove(provider_ids, '')) = 0"
        # Parked before sending for a missing value: resending would send the gap.
        " AND coalesce(last_error, '') NOT LIKE $4 || '%'"
        " AND channel <> 'none' AND ($1::bigint[] IS NULL OR id = ANY($1)) RETURNING id, channel",
        ids, REQUEUED, force or [], NOT_SENT)


async def not_requeueable(conn: asyncpg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    """Why each named message cannot be requeued as asked (for the operator)."""
    receipted = await receipts_say_handed_over(conn, ids)
    return [dict(r) | {"receipted": r["id"] in receipted} for r in await conn.fetch(
        "SELECT id, status, sent_at IS NOT NULL OR cardinality(array_remove(provider_ids, ''))"
        " > 0 AS handed_over, coalesce(last_error, '') LIKE $2 || '%' AS not_sent"
        " FROM deliveries WHERE id = ANY($1::bigint[]) ORDER BY id", ids, NOT_SENT)]


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    keys = resident_keys(ref)
    contact = await conn.fetchrow("SELECT name, mobile, email FROM contacts"
                                  " WHERE person_key = ANY($1::text[])", keys)
    hidden = ("person_id", "person_ref", "source_event_id")
    rows = [{k: v for k, v in _opened(r).items() if k not in hidden}
            for r in await conn.fetch(
                "SELECT id, person_ref, source_event_id, channel, recipient, template, status,"
                " delivery_state, attempts, last_error, created_at, sent_at FROM deliveries"
                " WHERE person_key = ANY($1::text[]) ORDER BY id", keys)]
    if contact is None and not rows:
        return None
    if contact is not None:
        contact = {"person_id": ref} | {c.column: c.open(contact[c.column], ref)
                                        for c in (NAME, MOBILE, EMAIL)}
    return {"contact": dict(contact) if contact else None, "messages": rows}
