"""Notify's tables keep no resident ID in clear: keyed hashes find the rows, status still does."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.notify import repository as repo
from services.notify.domain.catalogue import Contact, Message
from shared.contracts.channels import NotificationPreferencesSet, TransferOutRequested
from shared.db import sealed
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack import people
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.e2e.test_enrollment_stories import enroll, send
from tests.helpers import poll

# The messaging machinery's own tables: they carry events, which name the person by ID.
BOOKKEEPING = {"outbox", "outbox_set_aside", "processed_messages", "schema_migrations"}


async def tables_holding(conn: asyncpg.Connection, schema: str, text: str) -> list[str]:
    """The schema's tables and views (but the bookkeeping) any of whose values shows `text`."""
    names = [r["table_name"] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)]
    assert {"contacts", "deliveries", "preferences"} <= set(names)
    return [name for name in names if name not in BOOKKEEPING and await conn.fetchval(
        f'SELECT count(*) FROM "{schema}"."{name}" t'
        " WHERE strpos(row_to_json(t)::text, $1) > 0", text)]


async def test_messages_preferences_and_a_wait_for_contact_leave_no_id_in_clear(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, mobile = people.resident_id(), people.mobile()
    email = f"keyed{uuid.uuid4().hex[:6]}@example.cn"
    keys = sealed.resident_keys(person)
    schema = stack.settings().schema_for("notify")
    conn = await stack.connect("notify")
    try:
        # Only SMS, chosen before notify knows how to reach the person.
        await send(stack, NotificationPreferencesSet(person_id=person, sms=True, email=False,
                                                     changed_at=datetime.now(UTC)))
        await poll(lambda: conn.fetchval("SELECT count(*) FROM preferences"
                                         " WHERE person_key = ANY($1::text[])", keys),
                   lambda n: n == 1)
        # Refused (not insured here): the answer waits, parked, for the contact data.
        refused = TransferOutRequested(transfer_id=f"TR-{uuid.uuid4().hex[:10]}",
                                       person_id=person, to_region="370100",
                                       channel="national_app", requested_at=datetime.now(UTC))
        await send(stack, refused)
        await poll(lambda: conn.fetchval(
            "SELECT status FROM deliveries WHERE person_key = ANY($1::text[])"
            " AND channel = 'none'", keys), lambda s: s == "parked")
        await enroll(stack, "flexible", email=email, person=person, mobile=mobile)

        def answered(rows: list[asyncpg.Record]) -> bool:
            return any(r["channel"] == "sms" and r["template"].startswith(
                "transfer.request.rejected") and r["status"] == "sent" for r in rows)

        rows = await poll(lambda: conn.fetch(
            "SELECT channel, template, status, person_ref FROM deliveries"
            " WHERE person_key = ANY($1::text[]) ORDER BY id", keys), answered, timeout=60)
        assert [r["status"] for r in rows if r["channel"] == "none"] == ["resolved"]
        assert "email" not in {r["channel"] for r in rows}  # the person's choice held
        assert all(r["person_ref"].startswith(sealed.PREFIX) for r in rows)
        assert await conn.fetchval("SELECT count(*) FROM contacts"
                                   " WHERE person_key = ANY($1::text[])", keys) == 1
        assert await tables_holding(conn, schema, person) == []
        assert await tables_holding(conn, schema, mobile) == []
    finally:
        await conn.close()

    # `medins status`, asked by the ID, finds the contact data and the messages.
    shown = (await collect_status(stack.settings(region=REGION), person))["notify"]
    assert shown["contact"]["person_id"] == person and shown["contact"]["mobile"] == mobile
    assert any(m["template"].startswith("transfer.request.rejected") and m["recipient"] == mobile
               for m in shown["messages"])


async def test_rows_from_before_still_open_and_a_new_hash_key_finds_them(
        stack: TestStack) -> None:
    """What a worker's start does to a schema whose deliveries and preferences held the ID in
    clear (and whose contacts were hashed for their table alone), then a hash-key rotation:
    nothing is found twice or missed, and nothing is added twice."""
    schema = stack.settings(f"{stack.namespace}nkey{uuid.uuid4().hex[:4]}_"
                            ).schema_for("notify")
    seal, first, second = (sealed.new_key(sealed.SEAL), sealed.new_key(sealed.HASH),
                           sealed.new_key(sealed.HASH))
    sealed.use_keys(sealed.DataKeys([seal, first]))
    person, mobile = people.resident_id(), people.mobile()
    admin = await connect(stack.database_url)
    await migrate(admin, schema, [m for m in service_migrations("notify")
                                  if m.component != "notify" or m.version < "0006"])
    conn = await connect(stack.database_url, schema)
    try:
        before = sealed.Sealed("contacts", "person_ref", (), hash_column="person_key")
        await conn.execute(
            "INSERT INTO contacts (person_ref, person_key, name, mobile) VALUES ($1, $2, $3, $4)",
            before.seal(person), before.digest(person), repo.NAME.seal("王芳", person),
            repo.MOBILE.seal(mobile, person))
        await conn.execute("INSERT INTO preferences (person_id, sms, email)"
                           " VALUES ($1, false, true)", person)
        # Sealed then already, bound to the person's ID, event and channel.
        sent = (person, "e1", "sms")
        waiting = (person, "e0", "none")
        data = {"person_id": person, "transfer_id": "TR-1"}
        await conn.execute(
            "INSERT INTO deliveries (source_event_id, person_id, channel, recipient,"
            " recipient_key, template, body, status) VALUES ('e1', $1, 'sms', $2, $3, 't',"
            " $4, 'sent'), ('e0', $1, 'none', $5, $6, 'cn.x.v1', $7, 'parked')",
            person, repo.RECIPIENT.seal(mobile, *sent), repo.RECIPIENT.digest(mobile, *sent),
            repo.BODY.seal("【医保服务】王芳您好", *sent), repo.RECIPIENT.seal(REGION, *waiting),
            repo.RECIPIENT.digest(REGION, *waiting), repo.BODY.seal(json.dumps(data), *waiting))
        await migrate(admin, schema, service_migrations("notify"))
        for col in repo.SEALED:
            await sealed.reseal(conn, col, plaintext_only=True)
        assert await tables_holding(conn, schema, person) == []

        # The contact's hash is the one every table uses now; its values opened as before.
        assert await repo.load_contact(conn, person) == Contact(person, "王芳", mobile, None,
                                                                False, True)
        [parked] = await repo.waiting_for_contact(conn, person)
        assert parked["data"] == data and parked["region"] == REGION
        shown = await repo.status_of(conn, person)
        assert shown is not None and shown["contact"]["name"] == "王芳"
        assert [m["recipient"] for m in shown["messages"]] == [mobile, REGION]

        # A new hash key: rows still carry the old hash until `data-keys reseal`.
        sealed.use_keys(sealed.DataKeys([seal, first, second]))
        await repo.set_preferences(conn, person, True, False)
        await repo.upsert_contact(conn, person, "王芳", mobile, None)
        contact = await repo.load_contact(conn, person)
        assert contact is not None and (contact.sms_opt_in, contact.email_opt_in) == (True, False)
        assert await conn.fetchval("SELECT count(*) FROM preferences") == 1
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 1
        await repo.claim_deliveries(conn, "e2", person, [Message(
            "sms", mobile, "t", None, "【医保服务】王芳您好")])
        hashes = dict(await conn.fetch("SELECT source_event_id, person_key FROM deliveries"))
        assert hashes["e1"].startswith(first.key_id + ":")
        assert hashes["e2"].startswith(second.key_id + ":")
        [due] = await repo.claim_due(conn, "sms", 10, "w1")
        assert (due["person_id"], due["recipient"]) == (person, mobile)
        assert due["person_ref"].startswith(sealed.PREFIX) and "person_key" not in due
        shown = await repo.status_of(conn, person)
        assert shown is not None and len(shown["messages"]) == 3

        for col in repo.SEALED:
            await sealed.reseal(conn, col)
        assert all(k.startswith(second.key_id + ":") for k in await conn.fetchval(
            "SELECT array_agg(person_key) FROM (SELECT person_key FROM deliveries UNION ALL"
            " SELECT person_key FROM contacts UNION ALL SELECT person_key FROM preferences) k"))
        assert await repo.load_contact(conn, person) == contact
        assert len((await repo.status_of(conn, person) or {})["messages"]) == 3
        assert await tables_holding(conn, schema, person) == []
    finally:
        await conn.close()
        sealed.use_keys(None)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
