"""Transfer's set-based handlers: one batch gives exactly what the same events give one by one."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import pytest_asyncio

from services.transfer.handlers import ROUTES
from services.transfer.repository import NAME, PERSON
from services.transfer.work import Work
from shared.contracts.base import Payload
from shared.contracts.channels import TransferOutRequested
from shared.contracts.enrollment import InsuredStatusChanged, PersonDeceased
from shared.contracts.envelope import Envelope
from shared.contracts.partner import (
    PartnerPersonEnrolled,
    PartnerTransferAcknowledged,
    PartnerTransferCancelled,
    PartnerTransferOut,
)
from shared.contracts.transfer_office import TransferInfoSheetIssued, TransferMaterialsRequested
from shared.db import sealed
from shared.db.pool import Database
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, is_batched, plan_groups
from shared.settings import TransferSettings
from tests.conftest import TestStack
from tests.helpers import envelope, fresh_schemas, raw_batch

# Jinan here; Dalian the partner of the transfers; Weihai, of Jinan's province, takes a person
# in (an automatic transfer); Baotou is no party to them.
HERE, PARTNER, WEIHAI, BAOTOU = "370100", "210200", "371000", "150200"


@pytest_asyncio.fixture
async def schemas(stack: TestStack) -> AsyncIterator[tuple[Database, Database]]:
    """Two fresh transfer schemas of Jinan: one fed a batch at once, one an event at a time."""
    async with fresh_schemas(stack.database_url, stack.namespace, "transfer") as (one, two):
        yield one, two


def consumer(stack: TestStack, db: Database) -> EventConsumer:
    settings = TransferSettings(broker_url=stack.broker_url,
                                MEDINS_DATABASE_URL=stack.database_url,
                                namespace=stack.namespace, region=HERE,
                                transfer_interconnected=f"{HERE},{PARTNER},{WEIHAI}")
    return EventConsumer("transfer", settings, db, dict(ROUTES))


def here(payload: Payload) -> Envelope:
    return envelope(payload, region=HERE)


def status(person: str, to: str) -> Envelope:
    return here(InsuredStatusChanged(
        person_id=person, insurance_type="resident", from_status="pending", to_status=to,  # type: ignore[arg-type]
        reason="test", effective_on=date.today()))


def request(transfer_id: str, person: str, to: str = PARTNER) -> Envelope:
    return here(TransferOutRequested(
        transfer_id=transfer_id, person_id=person, to_region=to, channel="national_app",
        requested_at=datetime.now(UTC)))


def from_partner(payload: Payload) -> Envelope:
    return envelope(payload, region=PARTNER)


async def state(db: Database) -> dict[str, Any]:
    """Everything the handlers wrote, without what differs by construction (serial ids,
    timestamps, nonces of sealed values, signatures): the sealed values opened. A batch
    keeps each person's order, not the order between persons (Kafka keeps none either): the
    rows of a transfer are compared in their order, transfers and ignored answers as sets;
    the outbox keeps the batch's order."""
    async with db.pool.acquire() as conn:
        transfers = []
        for r in await conn.fetch("SELECT * FROM transfers ORDER BY id"):
            row = {k: v for k, v in dict(r).items()
                   if k not in ("id", "created_at", "updated_at", "person_ref", "name")}
            row["person"] = PERSON.open(r["person_ref"])
            row["name"] = NAME.open(r["name"], r["direction"], r["from_region"],
                                    r["transfer_id"])
            transfers.append(row)
        transfers.sort(key=lambda t: (t["direction"], t["from_region"], t["transfer_id"]))
        history: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {}
        for r in await conn.fetch(
                "SELECT h.transfer_id, t.direction, t.from_region, h.stage, h.note, h.cause_id"
                " FROM transfer_history h JOIN transfers t ON t.id = h.transfer_row"
                " ORDER BY h.id"):
            history.setdefault((r["direction"], r["from_region"], r["transfer_id"]), []).append(
                (r["stage"], r["note"], r["cause_id"]))
        ignored = sorted(tuple(r) for r in await conn.fetch(
            "SELECT event_id, transfer_id, sender, reason, detail FROM ignored_answers"))
        outbox = []
        for r in await conn.fetch("SELECT topic, key, value, headers FROM outbox ORDER BY id"):
            headers = dict(json.loads(r["headers"]))
            if "dlq-reason" in headers:
                outbox.append((r["topic"], headers["dlq-reason"], headers["dlq-offset"]))
                continue
            event = json.loads(r["value"])
            event.pop("time")
            outbox.append((r["topic"], r["key"], event))
        processed = sorted(r["event_id"] for r in await conn.fetch(
            "SELECT event_id FROM processed_messages"))
    return {"transfers": transfers, "history": history, "ignored": ignored,
            "outbox": outbox, "processed": processed}


async def test_a_batch_of_several_persons_gives_what_one_by_one_gives(
        stack: TestStack, schemas: tuple[Database, Database],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_batched(ROUTES[TransferOutRequested.event_type])
    batch_db, single_db = schemas
    alone, open_one, active, taken_in, later, both = (people.resident_id() for _ in range(6))
    before = [status(alone, "suspended"), status(open_one, "suspended"),
              status(active, "active"), status(taken_in, "active"), status(later, "suspended"),
              status(both, "active"), request("TR-OPEN", open_one)]
    sheet_for = TransferInfoSheetIssued(transfer_id="TR-A", person_id=alone, name="王伟",
                                        contribution_months=36, account_balance_fen=0,
                                        issued_at=datetime.now(UTC))
    transfer_in = PartnerTransferOut(
        transfer_id="JN-1", person_id=taken_in, from_region=PARTNER, to_region=HERE, name="李娜",
        insurance_type="resident", contribution_months=24, account_balance_fen=0,
        trigger="application", started_on=date.today(), due_on=date.today(), in_leg_days=5)
    events = [
        request("TR-A", alone),                  # accepted
        request("TR-A", alone),                  # the same request again: nothing
        request("TR-B", alone),                  # the same person's second: one open already
        request("TR-A", later),                  # the same number from someone else: a
        request("TR-A", later),                  # transfer of its own, once
        request("TR-C", open_one),               # open before the batch: refused
        request("TR-D", active),                 # not suspended: refused
        request("TR-E", later, to=HERE),       # to this region: refused
        here(sheet_for),                          # the accepted one goes out at once
        here(TransferMaterialsRequested(         # the refused one is not pausable
            transfer_id="TR-C", person_id=open_one, missing=["户口簿"],
            requested_at=datetime.now(UTC))),
        from_partner(transfer_in),                 # taken in and merged at once
        from_partner(transfer_in.model_copy()),    # the same transfer-out again: ignored
        from_partner(PartnerTransferAcknowledged(  # an answer before sending: ignored
            transfer_id="TR-OPEN", person_id=open_one, from_region=HERE, to_region=PARTNER,
            credited_months=0, credited_balance_fen=0, accepted_on=date.today())),
        from_partner(PartnerTransferCancelled(     # Jinan cancels the one sent to it
            transfer_id="TR-A", person_id=alone, from_region=HERE, to_region=PARTNER,
            reason="撤回")),
        envelope(PartnerPersonEnrolled(          # the province's other region took `later`
            person_id=later, region=WEIHAI, insurance_type="resident",
            active_since=date.today()), region=WEIHAI),
        request("TR-F", alone),                  # after the cancellation: accepted
        status(active, "suspended"),             # stopped here in the batch: then accepted
        request("TR-G", active),
        envelope(PartnerPersonEnrolled(          # insured in both: waits for the suspension
            person_id=both, region=WEIHAI, insurance_type="resident",
            active_since=date.today()), region=WEIHAI),
        status(both, "suspended"),               # which comes: the transfer starts
        here(PersonDeceased(                     # ends the one open before the batch
            person_id=open_one, date_of_death=date.today(), source="civil_registry",
            ended_filings=[], ended_authorisations=[])),
    ]

    # A bug's event (a transfer-out addressed elsewhere) beside a good one of its type (for a
    # person the batch suspended here: refused).
    faulty = [from_partner(PartnerTransferOut(
        **(transfer_in.model_dump() | {"transfer_id": "JN-2", "to_region": BAOTOU}))),
        from_partner(PartnerTransferOut(
            **(transfer_in.model_dump() | {"transfer_id": "JN-3", "person_id": active})))]

    batched, single = consumer(stack, batch_db), consumer(stack, single_db)
    for one in raw_batch(before):
        await batched.process([one])
        await single.process([one])
    flushes = 0
    flush = Work.flush

    async def counted(work: Work) -> None:
        nonlocal flushes
        flushes += 1
        await flush(work)

    monkeypatch.setattr(Work, "flush", counted)
    await batched.process(raw_batch(events))
    # One set-based call per group (a type's events together, but a person's later event
    # after their earlier ones), none redone one by one.
    plan = plan_groups([(i, r.key, ROUTES[e.type])
                        for i, (r, e) in enumerate(zip(raw_batch(events), events, strict=True))])
    assert flushes == len(plan) < len(events)
    await batched.process(raw_batch(faulty))
    for one in raw_batch(events) + raw_batch(faulty):
        await single.process([one])

    got, expected = await state(batch_db), await state(single_db)
    assert got == expected
    auto = [t for t in got["transfers"] if t["trigger"] == "automatic"]
    assert {(t["person"], t["to_region"], t["stage"]) for t in auto} == {
        (later, WEIHAI, "awaiting_info_sheet"), (both, WEIHAI, "awaiting_info_sheet")}
    # Two people's requests under one channel reference are two transfers, each the
    # person's: the second gets a transfer id of its own, still found by the reference.
    [own] = [t["transfer_id"] for t in got["transfers"]
             if t["person"] == later and t["channel_ref"] == "TR-A"]
    assert own.startswith("TR-A-") and len(own) == len("TR-A-") + 8
    assert [t["channel_ref"] for t in got["transfers"] if t["transfer_id"] == "TR-A"] == ["TR-A"]
    assert {(t["direction"], t["transfer_id"], t["person"]): t["stage"]
            for t in got["transfers"] if t["trigger"] != "automatic"} == {
        ("out", own, later): "awaiting_info_sheet",
        ("out", "TR-OPEN", open_one): "cancelled", ("out", "TR-G", active): "awaiting_info_sheet",
        ("out", "TR-A", alone): "cancelled", ("out", "TR-B", alone): "refused",
        ("out", "TR-C", open_one): "refused", ("out", "TR-D", active): "refused",
        ("out", "TR-E", later): "refused", ("in", "JN-1", taken_in): "completed",
        ("in", "JN-3", active): "refused", ("out", "TR-F", alone): "awaiting_info_sheet"}
    assert sorted(i[3] for i in got["ignored"]) == ["duplicate", "out_of_order"]
    dead = [o for o in got["outbox"] if o[0].endswith("deadletter")]
    assert len(dead) == 1 and "addressed to 150200" in dead[0][1]


async def test_a_batch_finds_rows_under_an_older_hash_key_and_adds_none_twice(
        stack: TestStack, schemas: tuple[Database, Database]) -> None:
    """After a hash-key rotation, before `data-keys reseal`: the set-based loads find the
    person's status and open transfer under the old hash, the status is updated on its row,
    and only a new transfer takes the new hash."""
    db, _ = schemas
    seal, first, second = (sealed.new_key(sealed.SEAL), sealed.new_key(sealed.HASH),
                           sealed.new_key(sealed.HASH))
    person = people.resident_id()
    worker = consumer(stack, db)
    try:
        sealed.use_keys(sealed.DataKeys([seal, first]))
        await worker.process(raw_batch([status(person, "suspended"), request("TR-1", person)]))
        sealed.use_keys(sealed.DataKeys([seal, first, second]))
        transfer_in = PartnerTransferOut(
            transfer_id="JN-1", person_id=person, from_region=PARTNER, to_region=HERE,
            name="李娜", insurance_type="resident", contribution_months=12,
            account_balance_fen=0, trigger="application", started_on=date.today(),
            due_on=date.today(), in_leg_days=5)
        await worker.process(raw_batch([request("TR-2", person), status(person, "active"),
                                      from_partner(transfer_in)]))
        async with db.pool.acquire() as conn:
            insured = await conn.fetch("SELECT person_key, status FROM insured_view")
            transfers = {r["transfer_id"]: (r["stage"], r["person_key"].split(":")[0])
                         for r in await conn.fetch("SELECT * FROM transfers")}
    finally:
        sealed.use_keys(None)
    assert [(r["person_key"].split(":")[0], r["status"]) for r in insured] == [
        (first.key_id, "active")]
    assert transfers == {"TR-1": ("awaiting_info_sheet", first.key_id),
                         "TR-2": ("refused", second.key_id),  # TR-1 was found open
                         "JN-1": ("completed", second.key_id)}  # active was found
