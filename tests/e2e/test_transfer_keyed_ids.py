"""Transfer's tables keep no resident ID in clear: keyed hashes find the rows, status still does."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest

from services.transfer import repository as repo
from services.transfer import views
from services.transfer.domain.transfer import Stage, Transfer
from shared.contracts.channels import TransferOutRequested
from shared.contracts.transfer_office import TransferFundsReceived
from shared.db import sealed
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack import people
from shared.progress import collect_progress
from tests.conftest import TestStack
from tests.e2e.test_transfer_stories import (
    DALIAN,
    JINAN,
    enroll_in,
    info_sheet,
    insured_in,
    request,
    send_in,
    stage_is,
    status_in,
    suspended_person,
    transfer_events,
    transfer_in,
)
from tests.helpers import poll

# The messaging machinery's own tables: they carry events, which name the person by ID.
BOOKKEEPING = {"outbox", "outbox_set_aside", "processed_messages", "schema_migrations"}


async def tables_holding(conn: asyncpg.Connection, schema: str, text: str) -> list[str]:
    """The schema's tables and views (but the bookkeeping) any of whose values shows `text`."""
    names = [r["table_name"] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)]
    assert {"transfers", "insured_view", "transfer_history"} <= set(names)
    return [name for name in names if name not in BOOKKEEPING and await conn.fetchval(
        f'SELECT count(*) FROM "{schema}"."{name}" t'
        " WHERE strpos(row_to_json(t)::text, $1) > 0", text)]


@pytest.mark.usefixtures("partner_regions")
async def test_a_transfer_both_ways_leaves_no_id_in_clear_and_status_finds_the_person(
        stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    await enroll_in(stack, JINAN, person)
    refused = TransferOutRequested(transfer_id=f"TR-{uuid.uuid4().hex[:10]}", person_id=person,
                                   to_region=DALIAN, channel="national_app",
                                   requested_at=datetime.now(UTC))
    cmd = request(person, JINAN)
    await send_in(stack, DALIAN, refused, cmd)
    await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("awaiting_info_sheet"))
    await send_in(stack, DALIAN, info_sheet(cmd, person))
    await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("received", "in"))
    await send_in(stack, JINAN, TransferFundsReceived(
        transfer_id=cmd.transfer_id, person_id=person, from_region=DALIAN,
        amount_fen=345_678, received_at=datetime.now(UTC)))
    await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("completed"))
    await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("completed", "in"))
    await insured_in(stack, DALIAN, person, "transferred_out")

    # Dalian completed on Jinan's answer, found by the transfer's id: the event it emitted
    # still names the person, opened from the row.
    [completed] = await transfer_events(stack, DALIAN, cmd.transfer_id,
                                        "cn.medins.transfer.completed.v1")
    assert completed["data"]["person_id"] == person

    keys = sealed.resident_keys(person)
    for region, transfers in ((DALIAN, 2), (JINAN, 1)):
        schema = stack.settings(region=region).schema_for("transfer")
        conn = await connect(stack.database_url, schema)
        try:
            assert await tables_holding(conn, schema, person) == [], region
            rows = await conn.fetch("SELECT person_ref, person_key, transfer_id FROM transfers"
                                    " WHERE person_key = ANY($1::text[])", keys)
            assert len(rows) == transfers, region
            assert all(r["person_ref"].startswith(sealed.PREFIX) for r in rows)
            assert await conn.fetchval("SELECT count(*) FROM insured_view"
                                       " WHERE person_key = ANY($1::text[])", keys) == 1
            assert await conn.fetchval(
                "SELECT count(*) FROM transfer_history h JOIN transfers t ON t.id ="
                " h.transfer_row WHERE t.transfer_id = $1", cmd.transfer_id) >= 2
        finally:
            await conn.close()

    # `medins status` and the progress view, asked by the ID, find the person's rows.
    here = await status_in(stack, DALIAN, "transfer", person)
    assert here["insured_status"]["person_id"] == person
    assert here["insured_status"]["status"] == "transferred_out"
    assert {t["transfer_id"]: t["stage"] for t in here["transfers"]} == {
        refused.transfer_id: "refused", cmd.transfer_id: "completed"}
    there = await status_in(stack, JINAN, "transfer", person)
    assert there["insured_status"]["status"] == "active"
    assert [(t["direction"], t["stage"]) for t in there["transfers"]] == [("in", "completed")]
    progress = await collect_progress(stack.settings(region=JINAN), person)
    assert [t["transfer_id"] for t in progress["transfer"]["transfers"]] == [cmd.transfer_id]


async def test_rows_from_before_still_open_and_a_new_hash_key_finds_them(
        stack: TestStack) -> None:
    """What a worker's start does to a schema whose tables held the ID in clear, and then a
    hash-key rotation: nothing is found twice or missed, and nothing is added twice."""
    schema = stack.settings(f"{stack.namespace}tkey{uuid.uuid4().hex[:4]}_"
                            ).schema_for("transfer")
    seal, first, second = (sealed.new_key(sealed.SEAL), sealed.new_key(sealed.HASH),
                           sealed.new_key(sealed.HASH))
    sealed.use_keys(sealed.DataKeys([seal, first]))
    person, today = people.resident_id(), date.today()
    admin = await connect(stack.database_url)
    await migrate(admin, schema, [m for m in service_migrations("transfer")
                                  if m.component != "transfer" or m.version < "0005"])
    conn = await connect(stack.database_url, schema)
    try:
        await conn.execute("INSERT INTO insured_view (person_id, insurance_type, status)"
                           " VALUES ($1, 'flexible', 'suspended')", person)
        # The name was sealed then already, bound to the transfer (not to the person).
        await conn.execute(
            "INSERT INTO transfers (transfer_id, person_id, direction, from_region, to_region,"
            " stage, name, started_on) VALUES ('TR-OLD', $1, 'out', $2, $3,"
            " 'awaiting_info_sheet', $4, $5)",
            person, DALIAN, JINAN, repo.NAME.seal("李娜", "out", DALIAN, "TR-OLD"), today)
        await migrate(admin, schema, service_migrations("transfer"))
        changed = [await sealed.reseal(conn, col, plaintext_only=True) for col in repo.SEALED]
        assert changed == [0, 1, 1]  # the name was sealed; both IDs sealed and hashed
        assert await tables_holding(conn, schema, person) == []

        assert await repo.insured(conn, person) == ("suspended", "flexible")
        [old] = await repo.open_transfers_of(conn, person)
        assert (old.person_id, old.name) == (person, "李娜")

        # A new hash key: rows still carry the old hash until `data-keys reseal`.
        sealed.use_keys(sealed.DataKeys([seal, first, second]))
        await repo.set_insured_status(conn, person, "flexible", "active")
        assert await repo.insured(conn, person) == ("active", "flexible")
        assert await conn.fetchval("SELECT count(*) FROM insured_view") == 1
        old.reason = "kept"
        await repo.save(conn, old, "saved again", "cause-1")
        assert await repo.has_transfer_between(conn, person, JINAN)
        await repo.save(conn, Transfer("TR-NEW", person, "in", JINAN, DALIAN, Stage.RECEIVED,
                                       name="李娜"), "received", "cause-2")
        hashes = dict(await conn.fetch("SELECT transfer_id, person_key FROM transfers"))
        assert hashes["TR-OLD"].startswith(first.key_id + ":")
        assert hashes["TR-NEW"].startswith(second.key_id + ":")
        assert [r["transfer_id"] for r in await repo.transfers_for_status(conn, person)] == [
            "TR-OLD", "TR-NEW"]
        assert len((await views.progress_of(conn, person))["transfers"]) == 2

        await sealed.reseal(conn, repo.PERSON)
        await sealed.reseal(conn, repo.INSURED)
        assert all(k.startswith(second.key_id + ":") for k in await conn.fetchval(
            "SELECT array_agg(person_key) FROM (SELECT person_key FROM transfers UNION ALL"
            " SELECT person_key FROM insured_view) k"))
        shown = await views.status_of(conn, person)
        assert shown is not None and shown["insured_status"]["status"] == "active"
        assert [(t["transfer_id"], t["reason"]) for t in shown["transfers"]] == [
            ("TR-OLD", "kept"), ("TR-NEW", None)]
        assert [t.transfer_id for t in await repo.open_transfers_of(conn, person)] == [
            "TR-OLD", "TR-NEW"]
    finally:
        await conn.close()
        sealed.use_keys(None)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.mark.usefixtures("partner_regions")
async def test_the_same_channel_reference_from_two_people_is_two_transfers(
        stack: TestStack) -> None:
    first, _ = await suspended_person(stack, DALIAN)
    second, _ = await suspended_person(stack, DALIAN)
    await enroll_in(stack, JINAN, second)
    reference = f"TR-{uuid.uuid4().hex[:10]}"

    def asked(person: str) -> TransferOutRequested:
        return TransferOutRequested(transfer_id=reference, person_id=person, to_region=JINAN,
                                    channel="national_app", requested_at=datetime.now(UTC))

    # The first person's request, the second's under the same number, the first's again.
    await send_in(stack, DALIAN, asked(first), asked(second), asked(first))
    found = await poll(lambda: status_in(stack, DALIAN, "transfer", reference),
                       lambda s: len(s.get("transfers", [])) == 2
                       and all(t["stage"] == "awaiting_info_sheet" for t in s["transfers"]))
    ids = [t["transfer_id"] for t in found["transfers"]]
    assert ids[0] == reference and ids[1].startswith(f"{reference}-")
    assert [t["channel_ref"] for t in found["transfers"]] == [reference, reference]
    own = ids[1]
    # Each person was told of their own, under its own id, once.
    for person, transfer_id in ((first, reference), (second, own)):
        [received] = await transfer_events(stack, DALIAN, transfer_id,
                                           "cn.medins.transfer.request.received.v1")
        assert received["data"]["person_id"] == person
    # The office and the partner address the second by its own id: it goes on to Jinan.
    await send_in(stack, DALIAN, info_sheet(own, second))
    taken = await transfer_in(stack, JINAN, own, stage_is("received", "in"))
    assert taken["transfer_id"] == own
    mine = await status_in(stack, DALIAN, "transfer", first)
    assert [(t["transfer_id"], t["stage"]) for t in mine["transfers"]] == [
        (reference, "awaiting_info_sheet")]
