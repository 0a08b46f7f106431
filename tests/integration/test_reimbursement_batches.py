"""Reimbursement's set-based handlers leave exactly what one event at a time leaves."""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from services.reimbursement import batched
from services.reimbursement import repository as repo
from services.reimbursement.handlers import routes
from shared.contracts import Payload
from shared.contracts.channels import ClaimSubmitted
from shared.contracts.enrollment import CoverageChanged, CoveragePeriod
from shared.contracts.envelope import Envelope
from shared.contracts.hospital import (
    DirectSettlementRecorded,
    OutageSettlementsUploaded,
    SettlementRecord,
)
from shared.contracts.reimbursement import SettlementOutageDeclared
from shared.db.pool import Database
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, is_batched
from shared.policy import BookCache, folders
from shared.settings import ReimbursementSettings
from tests.conftest import REGION, TestStack
from tests.helpers import counting_groups, envelope, fresh_schemas, raw_batch


@pytest_asyncio.fixture
async def two_schemas(stack: TestStack) -> AsyncIterator[tuple[Database, Database]]:
    """Two empty reimbursement schemas: one fed a batch at once, one an event at a time."""
    async with fresh_schemas(stack.database_url, stack.namespace,
                             "reimbursement") as (one, two):
        yield one, two


def _consumer(stack: TestStack, db: Database, set_based: bool) -> EventConsumer:
    settings = ReimbursementSettings(
        broker_url=stack.broker_url, MEDINS_DATABASE_URL=stack.database_url,
        namespace=stack.namespace, region=REGION)
    cache = BookCache(REGION, folders(None, [stack.policy_dir]))
    return EventConsumer("reimbursement", settings, db, routes(cache, set_based=set_based))


def _story(fault: bool = False) -> tuple[list[Envelope], dict[str, str]]:
    """Coverage and settlements, then a mix of claims (a claim submitted twice, a receipt
    claimed by two people, a receipt already settled, a rejected claim resubmitted, a person
    not covered) and outage uploads (a record twice in one upload, a record re-sent in a
    second upload, a second record of a person counting the first in the totals, an
    invalid ID, an inpatient record, a day outside the declared window, an institution
    whose outage is not declared). With `fault`, an upload that fails among them."""
    now = datetime.now(UTC)
    day = now.date() - timedelta(days=3)
    p1, p2, p3, p4, p5 = (people.resident_id() for _ in range(5))
    tag = uuid.uuid4().hex[:6].upper()
    hospital, undeclared = f"H{tag}A", f"H{tag}B"
    events: list[Payload] = [CoverageChanged(
        person_id=p, cause="test", periods=[CoveragePeriod(
            insurance_type="resident", start=date(day.year, 1, 1), end=date(day.year, 12, 31),
            source="tax_payment", reference=f"TAX-{i}")]) for i, p in enumerate((p1, p2, p3, p4))]

    def settled(person: str, invoice: str, sid: str, fund: int) -> DirectSettlementRecorded:
        return DirectSettlementRecorded(
            settlement_id=sid, person_id=person, invoice_no=invoice, institution_code=hospital,
            settled_on=day, fund_paid_fen=fund, deductible_used_fen=50_000)

    def claim(person: str, claim_id: str, invoice: str, **extra: Any) -> ClaimSubmitted:
        return ClaimSubmitted(**{
            "claim_id": claim_id, "person_id": person, "invoice_no": invoice,
            "institution_code": hospital, "expense_date": day, "amount_fen": 120_000,
            "eligible_fen": 100_000, "hospital_level": 2, "channel": "wechat",
            "submitted_at": now} | extra)

    def record(record_id: str, person: str, **extra: Any) -> SettlementRecord:
        return SettlementRecord(**{"record_id": record_id, "person_id": person,
                                   "expense_date": day, "amount_fen": 90_000,
                                   "eligible_fen": 80_000, "hospital_level": 1} | extra)

    events += [
        settled(p2, f"INV-S-{tag}", "S-1", 10_000), settled(p3, f"INV-T-{tag}", "S-2", 20_000),
        SettlementOutageDeclared(outage_id=f"OUT-{tag}", outage_from=day, outage_to=day,
                                 pay_by=day + timedelta(days=90), reviewer="staff-017",
                                 declared_at=now, institution_codes=[hospital]),
        claim(p1, "CL-1", f"INV-1-{tag}"),
        claim(p2, "CL-2", f"INV-S-{tag}"),  # settled at the hospital: rejected
        claim(p1, "CL-1", f"INV-9-{tag}"),  # the same claim again: refused
        claim(p3, "CL-3", f"INV-1-{tag}"),  # p1's receipt: rejected
        claim(p2, "CL-2", f"INV-2-{tag}", amount_fen=99_000),  # resubmitted: version 2
        claim(p5, "CL-5", f"INV-5-{tag}"),  # not covered: rejected
        claim(p4, "CL-4", f"INV-4-{tag}", treatment_area="370100"),
        settled(p4, f"INV-6-{tag}", "S-3", 1_000), settled(p4, f"INV-6-{tag}", "S-4", 2_000),
        claim(p4, "CL-6", f"INV-6-{tag}"),  # settled just before, in the same batch
        OutageSettlementsUploaded(
            batch_id=f"B1-{tag}", institution_code=hospital, outage_from=day, outage_to=day,
            records=[record("R1", p1), record("R2", p1, amount_fen=400_000,
                                                eligible_fen=350_000),
                     record("R1", p1), record("R3", p3), record("R4", "11010119000101123"),
                     record("R5", p2, care="inpatient"),
                     record("R6", p4, expense_date=day - timedelta(days=1))]),
        OutageSettlementsUploaded(
            batch_id=f"B2-{tag}", institution_code=hospital, outage_from=day, outage_to=day,
            records=[record("R3", p3), record("R7", p3)]),
    ]
    if fault:
        # A record whose claim would take a receipt a claim holds: that upload alone is
        # dead-lettered (the claims' unique receipt), whichever way it is handled.
        events += [claim(p1, "CL-8", "R9"), OutageSettlementsUploaded(
            batch_id=f"B5-{tag}", institution_code=hospital, outage_from=day, outage_to=day,
            records=[record("R9", p2), record("R10", p2)])]
    events += [
        OutageSettlementsUploaded(
            batch_id=f"B3-{tag}", institution_code=undeclared, outage_from=day,
            outage_to=day, records=[record("R1", p1)]),
        OutageSettlementsUploaded(
            batch_id=f"B4-{tag}", institution_code=undeclared, outage_from=day,
            outage_to=day, records=[record("R1", p1, amount_fen=91_000)]),
    ]
    return [envelope(e) for e in events], {"p1": p1, "p2": p2, "p3": p3, "p4": p4,
                                           "p5": p5, "hospital": hospital,
                                           "undeclared": undeclared}


async def _state(db: Database) -> dict[str, Any]:
    """What the handling left, without what differs between two runs by design (row times,
    the sealed copies' nonces: each sealed value is compared opened)."""
    async with db.pool.acquire() as conn:
        claims = [{k: v for k, v in r.items() if k not in ("created_at", "updated_at")}
                  | {"person_ref": repo.CLAIMS_ID.open(r["person_ref"]),
                     "calculation": repo._opened_working(
                         repo.WORKING, r["calculation"], repo.CLAIMS_ID.open(r["person_ref"]),
                         r["claim_id"])}
                  for r in await conn.fetch("SELECT * FROM claims ORDER BY person_key, claim_id")]
        history = [{k: v for k, v in r.items() if k not in ("id", "recorded_at")}
                   | {"person_ref": repo.HISTORY_ID.open(r["person_ref"]),
                      "detail": repo._opened_working(
                          repo.HISTORY_WORKING, r["detail"],
                          repo.HISTORY_ID.open(r["person_ref"]), r["claim_id"], r["cause_id"])}
                   for r in await conn.fetch("SELECT * FROM claim_history ORDER BY id")]
        records = [{k: v for k, v in r.items() if k != "recorded_at"}
                   | {"person_ref": repo.PROACTIVE_ID.open(r["person_ref"]),
                      "record": repo.RECORD.open_json(r["record"], r["institution_code"],
                                                      r["record_id"])
                      if r["record"] is not None else None}
                   for r in await conn.fetch("SELECT * FROM proactive_records"
                                             " ORDER BY institution_code, record_id")]
        settlements = [dict(r) | {"person_ref": repo.SETTLEMENTS_ID.open(r["person_ref"])}
                       for r in await conn.fetch("SELECT * FROM direct_settlements"
                                                 " ORDER BY invoice_no")]
        refused = [{k: v for k, v in r.items() if k not in ("id", "refused_at")}
                   | {"person_ref": repo.REFUSED_ID.open(r["person_ref"])}
                   for r in await conn.fetch("SELECT * FROM refused_requests ORDER BY id")]
        emitted, dead = [], []
        for r in await conn.fetch("SELECT topic, key, value, headers FROM outbox"
                                  " ORDER BY id"):
            if r["topic"].endswith(".deadletter"):  # sealed: its reason and place instead
                headers = dict(json.loads(r["headers"]))
                dead.append((headers["dlq-offset"], headers["dlq-reason"]))
                continue
            doc = json.loads(r["value"])
            emitted.append((r["topic"], r["key"], doc["id"], doc["type"], doc["data"]))
        processed = await conn.fetchval("SELECT count(*) FROM processed_messages")
    # A claim's rows in order; rows of different people are written in the order their
    # groups ran, which Kafka never orders across keys anyway.
    history.sort(key=lambda h: (h["person_key"], h["claim_id"]))
    refused.sort(key=lambda x: (x["person_key"], x["cause_id"]))
    return {"claims": claims, "history": history, "records": records,
            "settlements": settlements, "refused": refused, "emitted": emitted, "dead": dead,
            "processed": processed}


async def _both_ways(stack: TestStack, two_schemas: tuple[Database, Database],
                    events: list[Envelope]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The events as one batch with the set-based handlers and one by one with the
    per-event ones: what the batch left (the same as one by one), and the sizes of the
    groups the set-based handlers were given."""
    whole, single = two_schemas
    at_once = _consumer(stack, whole, set_based=True)
    calls: dict[str, list[int]] = {}
    at_once.routes = {t: counting_groups(t, h, calls) if is_batched(h) else h
                      for t, h in at_once.routes.items()}
    await at_once.process(raw_batch(events))
    one_by_one = _consumer(stack, single, set_based=False)
    for raw in raw_batch(events):
        await one_by_one.process([raw])
    got, expected = await _state(whole), await _state(single)
    for part in expected:
        assert got[part] == expected[part], part
    return got, calls


async def test_a_bad_upload_in_a_batch_costs_that_upload_alone(
        stack: TestStack, two_schemas: tuple[Database, Database]) -> None:
    got, calls = await _both_ways(stack, two_schemas, _story(fault=True)[0])
    assert len(got["dead"]) == 1 and "UniqueViolation" in got["dead"][0][1]
    # The faulty upload's group is redone once, one event at a time, the faulty one
    # dead-lettered in that same pass: the other groups run twice, not once per fault.
    uploads = calls[OutageSettlementsUploaded.event_type]
    assert uploads[0] == 5 and set(uploads[1:]) == {1}
    assert calls[ClaimSubmitted.event_type] == [7, 2] * 2


async def test_a_batch_at_once_leaves_what_one_event_at_a_time_leaves(
        stack: TestStack, two_schemas: tuple[Database, Database]) -> None:
    events, who = _story()
    got, calls = await _both_ways(stack, two_schemas, events)
    # Each group in one call (a key's later events in a later group).
    assert calls == {ClaimSubmitted.event_type: [7, 1],
                     DirectSettlementRecorded.event_type: [2, 2],
                     OutageSettlementsUploaded.event_type: [4]}
    assert got["dead"] == []
    # And what that is, in short.
    stages = {(c["person_ref"], c["claim_id"]): (c["stage"], c["version"])
              for c in got["claims"]}
    p1, p2, p3, p4, p5 = (who[k] for k in ("p1", "p2", "p3", "p4", "p5"))
    assert stages[(p1, "CL-1")] == ("preliminary_review", 1)
    assert stages[(p2, "CL-2")] == ("preliminary_review", 2)
    assert stages[(p3, "CL-3")][0] == stages[(p5, "CL-5")][0] == "rejected"
    assert stages[(p4, "CL-6")][0] == "rejected"  # settled earlier in the same batch
    types = [t.rsplit(".", 2)[-2] for _, _, _, t, _ in got["emitted"]]
    assert types.count("refused") == 1  # CL-1 submitted again
    # ... and kept for the person's progress, with its rule.
    assert [(r["person_ref"], r["reference"], r["rule"]) for r in got["refused"]] == [
        (p1, "CL-1", "claim_in_progress")]
    routes_of = {(r["institution_code"], r["record_id"]): (r["route"], r["batch_id"])
                 for r in got["records"]}
    hospital, undeclared = who["hospital"], who["undeclared"]
    assert {k[1]: v[0] for k, v in routes_of.items() if k[0] == hospital} == {
        "R1": "proactive", "R2": "proactive", "R3": "proactive", "R4": "rejected",
        "R5": "manual", "R6": "rejected", "R7": "proactive"}
    assert routes_of[(undeclared, "R1")][0] == "awaiting_declaration"
    assert routes_of[(undeclared, "R1")][1].startswith("B3-")  # the first upload's batch
    told = [d for _, _, _, t, d in got["emitted"] if t.endswith("record-processed.v1")]
    # R1 twice in one upload and R3 re-sent are told once; a record awaiting the
    # declaration is taken again when re-sent.
    assert len(told) == 6 + 1 + 2
    assert types.count("instructed") == 4
    second = next(c for c in got["claims"] if c["claim_id"] == f"PRO-{hospital}-R2")
    first = next(c for c in got["claims"] if c["claim_id"] == f"PRO-{hospital}-R1")
    assert second["calculation"]["totals"]["claims_paid_fen"] == first["payable_fen"]
    settlements = {r["invoice_no"]: r["settlement_id"] for r in got["settlements"]}
    assert sum(1 for k in settlements if k.startswith("INV-6-")) == 1
    assert next(v for k, v in settlements.items() if k.startswith("INV-6-")) == "S-3"


async def test_large_uploads_are_taken_in_runs_with_the_same_result(
        stack: TestStack, two_schemas: tuple[Database, Database],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs: the first upload (7 records), the next two (2 and 1), the last.
    monkeypatch.setattr(batched, "RECORDS_AT_ONCE", 3)
    got, calls = await _both_ways(stack, two_schemas, _story()[0])
    assert calls[OutageSettlementsUploaded.event_type] == [4]
    assert len([r for r in got["records"] if r["route"] == "proactive"]) == 4
