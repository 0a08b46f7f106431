"""Reimbursement keeps no resident ID in clear: keyed hashes to find a person, the ID sealed."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from stdnum.cn import uscc

from services.reimbursement import repository as repo
from services.reimbursement import views
from services.reimbursement.app import GAUGES
from services.reimbursement.domain.claims import Claim, Stage
from shared.contracts.channels import ClaimSubmitted, RemoteTreatmentFilingApplied
from shared.contracts.employer import (
    EmployerRegistered,
    EmployerRosterSubmitted,
    EmployerWageBaseReported,
    RosterRow,
)
from shared.contracts.hospital import (
    BirthRecorded,
    DirectSettlementRecorded,
    OutageSettlementsUploaded,
    SettlementRecord,
)
from shared.contracts.reimbursement import SettlementOutageDeclared
from shared.db import sealed
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack import people
from shared.settings import PlatformSettings
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.e2e.test_enrollment_stories import send
from tests.e2e.test_reimbursement_story import claim_of, enroll_for_claims
from tests.helpers import poll

# Shared machinery's bookkeeping (the outbox holds events, which name the person by design).
BOOKKEEPING = {"outbox", "outbox_set_aside", "processed_messages", "schema_migrations"}
# Every table of the schema that names a person.
PERSON_TABLES = ("insured_view", "claims", "claim_history", "filings_view", "coverage_view",
                 "proactive_records", "direct_settlements", "employments", "births")


async def _tables_as_text(conn: asyncpg.Connection) -> dict[str, str]:
    """Every value of every table of the schema (but bookkeeping), as a copy would show it."""
    tables = [r["table_name"] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " ORDER BY table_name")]
    return {t: await conn.fetchval(
        f'SELECT coalesce(string_agg(row_to_json(t)::text, E\'\\n\'), \'\') FROM "{t}" t')
        for t in tables if t not in BOOKKEEPING}


def _reimbursement(found: dict[str, Any]) -> dict[str, Any]:
    return found.get("reimbursement", {}) or {}


async def test_a_story_leaves_no_resident_id_in_clear_and_status_still_finds_the_person(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    today = now.date()
    institution = f"H{uuid.uuid4().hex[:8].upper()}"

    # A remote claim, then the filing that covers it; a receipt settled at the hospital.
    claim_id = f"CLM-{uuid.uuid4().hex[:8]}"
    expense = today - timedelta(days=5)
    await send(stack, ClaimSubmitted(
        claim_id=claim_id, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H44030001", expense_date=expense, amount_fen=300_000,
        hospital_level=3, treatment_area="440300", channel="wechat", submitted_at=now),
        RemoteTreatmentFilingApplied(
            filing_id=f"F-{uuid.uuid4().hex[:6]}", person_id=person, kind="temporary",
            treatment_area="440300", start_date=expense - timedelta(days=1), channel="wechat",
            submitted_at=now),
        DirectSettlementRecorded(
            settlement_id=f"SET-{uuid.uuid4().hex[:6]}", person_id=person,
            invoice_no=f"S{uuid.uuid4().hex[:8]}", institution_code="H21020009",
            settled_on=today, fund_paid_fen=30_000))
    await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("location") == "remote_filed")

    # An outage record uploaded before the agency declared the outage waits, with its data.
    batch = OutageSettlementsUploaded(
        batch_id=f"B-{uuid.uuid4().hex[:6]}", institution_code=institution,
        outage_from=today - timedelta(days=2), outage_to=today - timedelta(days=2),
        records=[SettlementRecord(record_id="0001", person_id=person,
                                  expense_date=today - timedelta(days=2), amount_fen=30_000,
                                  eligible_fen=25_000, hospital_level=1)])
    await send(stack, batch)
    await poll(lambda: collect_status(stack.settings(), institution),
               lambda f: (_reimbursement(f).get("proactive_summary") or {})
               .get("awaiting_declaration") == 1)

    # A mother employed by a firm: her birth waits for its wage base, then is granted.
    body = f"91210200MA0K{uuid.uuid4().hex[:5].upper()}"
    employer = body + uscc.calc_check_digit(body)
    mother = people.resident_id()
    await send(stack, EmployerRegistered(employer_code=employer, name="大连某贸易公司",
                                         region_code=REGION, contact_email="hr@my.example.cn",
                                         channel="window", submitted_at=now),
               EmployerRosterSubmitted(roster_id=f"R-{uuid.uuid4().hex[:6]}",
                                       employer_code=employer, submitted_at=now, rows=[
                                           RosterRow(row=1, action="increase", person_id=mother,
                                                     name="吴静", mobile=people.mobile(),
                                                     effective_on=today)]))
    await poll(lambda: collect_status(stack.settings(), mother),
               lambda f: _reimbursement(f).get("employer_code") == employer
               and (_reimbursement(f).get("insured_status") or {}).get("status") == "active")
    birth_id = f"BIRTH-{uuid.uuid4().hex[:6]}"
    await send(stack, BirthRecorded(birth_id=birth_id, person_id=mother,
                                    institution_code="H21020009", birth_date=today,
                                    difficult_birth=False))
    await poll(lambda: collect_status(stack.settings(), mother),
               lambda f: [b["state"] for b in _reimbursement(f).get("births", [])]
               == ["waiting_for_wage_base"])

    conn = await stack.connect("reimbursement")
    try:
        # While the record waits: its kept data is sealed too.
        for table, text in (await _tables_as_text(conn)).items():
            assert person not in text and mother not in text, table
        await send(stack, EmployerWageBaseReported(employer_code=employer, year=today.year - 1,
                                                   average_monthly_wage_fen=600_000),
                   SettlementOutageDeclared(
                       outage_id=f"OUT-{uuid.uuid4().hex[:6]}",
                       outage_from=today - timedelta(days=2),
                       outage_to=today - timedelta(days=2), pay_by=today + timedelta(days=30),
                       reviewer="staff-3", institution_codes=[institution], declared_at=now))
        await poll(lambda: claim_of(stack, f"MAT-H21020009-{birth_id}"),
                   lambda c: c.get("stage") == "approved")
        await poll(lambda: claim_of(stack, f"PRO-{institution}-0001"),
                   lambda c: c.get("stage") == "approved")

        tables = await _tables_as_text(conn)
        for table, text in tables.items():
            assert person not in text and mother not in text, table
        assert not set(PERSON_TABLES) - set(tables)
        # The story went through every table that names a person, found by the keyed hash.
        keys = sealed.resident_keys_of([person, mother])
        for table in PERSON_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}"
                                       " WHERE person_key = ANY($1::text[])", keys), table

        # Status finds each person by the ID and names them on their claims.
        found = _reimbursement(await collect_status(stack.settings(), person))
        assert found["insured_status"]["status"] == "active" and found["coverage"]
        claims = {c["claim_id"]: c for c in found["claims"]}
        assert set(claims) == {claim_id, f"PRO-{institution}-0001"}
        assert {c["person_id"] for c in claims.values()} == {person}
        assert "person_ref" not in claims[claim_id] and "person_key" not in claims[claim_id]
        assert {h["stage"] for h in claims[claim_id]["history"]} == {"preliminary_review"}
        shown = _reimbursement(await collect_status(stack.settings(), mother))
        assert shown["employer_code"] == employer
        assert [(b["birth_id"], b["state"]) for b in shown["births"]] == [(birth_id, "granted")]
        [maternity] = shown["claims"]
        assert maternity["person_id"] == mother and maternity["payable_fen"] == 1_960_000
        # The proactive claim's pay-by date on the person's progress.
        progress = await views.progress_of(conn, person)
        assert {c["claim_id"]: c["pay_by"] for c in progress["claims"]} == {
            claim_id: None, f"PRO-{institution}-0001": today + timedelta(days=30)}
        summary = await repo.institution_summary(conn, institution)
        assert summary is not None and summary["accepted"] == 1
        assert summary["total_approved_fen"] == 4_000
    finally:
        await conn.close()


async def test_rows_from_before_keyed_ids_are_sealed_found_and_survive_a_rotation(
        stack: TestStack) -> None:
    """A schema with IDs in clear (and a working sealed bound to the clear ID): the migration
    and the worker's start seal them; values sealed before still open; after a new hash key
    the person is still found, no second row is made, and a reseal re-hashes."""
    namespace = f"{stack.namespace}keyed{uuid.uuid4().hex[:4]}_"
    schema = PlatformSettings(MEDINS_DATABASE_URL=stack.database_url,
                              namespace=namespace).schema_for("reimbursement")
    first = [sealed.new_key(sealed.SEAL), sealed.new_key(sealed.HASH)]
    sealed.use_keys(sealed.DataKeys(first))
    person, employer, year = people.resident_id(), "E-1", date.today().year
    working = ["measure 9: confirmed epidemic patient", "borne in full"]
    before_keys = [m for m in service_migrations("reimbursement")
                   if not (m.component == "reimbursement" and m.version >= "0010")]
    admin = await connect(stack.database_url)
    await migrate(admin, schema, before_keys)
    conn = await connect(stack.database_url, schema)
    try:
        # As 0009 left them: the working bound to ("person_id", "claim_id") as it was.
        old_working = sealed.Sealed("claims", "calculation", ("person_id", "claim_id"),
                                    shape="json:working")
        await conn.execute("INSERT INTO insured_view (person_id, insurance_type, status)"
                           " VALUES ($1, 'employee', 'active')", person)
        await conn.execute(
            "INSERT INTO claims (claim_id, person_id, invoice_no, institution_code,"
            " expense_date, amount_fen, stage, calculation, payable_fen) VALUES ('C1', $1,"
            " 'I1', 'H1', $2, 1000, 'approved', $3, 800)", person, date(year, 1, 5),
            json.dumps({"deductible_fen": 0, "working": old_working.seal(
                json.dumps(working), person, "C1")}))
        await conn.execute(
            "INSERT INTO claim_history (claim_id, person_id, stage, detail, cause_id)"
            " VALUES ('C1', $1, 'approved', $2, 'E1')", person,
            json.dumps({"working": working, "version": 1}))  # plaintext: sealed at start
        await conn.execute(
            "INSERT INTO filings_view (filing_id, person_id, treatment_area, start_date,"
            " active) VALUES ('F1', $1, '440300', $2, true)", person, date(year, 1, 1))
        await conn.execute(
            "INSERT INTO coverage_view (person_id, insurance_type, start_date, source,"
            " reference) VALUES ($1, 'employee', $2, 'employer', $3)", person,
            date(year, 1, 1), employer)
        record = {"record_id": "R1", "person_id": person, "expense_date": f"{year}-01-03",
                  "amount_fen": 500, "eligible_fen": 500, "hospital_level": 1}
        await conn.execute(
            "INSERT INTO proactive_records (record_id, batch_id, institution_code, person_id,"
            " accepted, reason, route, record) VALUES ('R1', 'B1', 'H1', $1, false, 'waiting',"
            " 'awaiting_declaration', $2)", person, json.dumps(record))
        await conn.execute(
            "INSERT INTO direct_settlements (invoice_no, institution_code, settlement_id,"
            " person_id, settled_on, fund_paid_fen) VALUES ('I2', 'H1', 'S1', $1, $2, 300)",
            person, date(year, 1, 6))
        await conn.execute("INSERT INTO employments VALUES ($1, $2)", person, employer)
        await conn.execute(
            "INSERT INTO births (birth_id, person_id, birth_date, difficult_birth, babies,"
            " state) VALUES ('BI1', $1, $2, false, 1, 'waiting_for_wage_base')", person,
            date(year, 1, 2))

        await migrate(admin, schema, service_migrations("reimbursement"))
        changed = [await sealed.reseal(conn, col, plaintext_only=True) for col in repo.SEALED]
        # Nine IDs, the history's plaintext working and the kept record; the claim's
        # working was sealed already.
        assert sum(changed) == 11
        assert sum([await sealed.reseal(conn, col, plaintext_only=True)
                    for col in repo.SEALED]) == 0
        for table, text in (await _tables_as_text(conn)).items():
            assert person not in text and "confirmed epidemic" not in text, table

        async def found() -> None:
            shown = await repo.status_of(conn, person)
            assert shown is not None and shown["insured_status"]["status"] == "active"
            assert shown["employer_code"] == employer and len(shown["coverage"]) == 1
            [claim] = shown["claims"]
            assert claim["person_id"] == person and claim["calculation"]["working"] == working
            assert claim["history"][0]["detail"]["working"] == working
            [waiting] = await repo.records_awaiting_declaration(conn)
            assert waiting["record"]["person_id"] == person
            [birth] = await repo.births_waiting(conn, employer, year - 1)
            assert birth["person_id"] == person
            assert len(await repo.filings_for(conn, person)) == 1
            totals = await repo.annual_totals(conn, person, year)
            assert (totals.claims_paid_fen, totals.settled_paid_fen) == (800, 300)
            assert await repo.employer_of(conn, person) == employer

        await found()
        for gauge in GAUGES:  # the service's gauges read the new columns too
            await conn.fetch(gauge.sql)
        # A new hash key: rows still under the old one are found and updated in place.
        rotated = sealed.DataKeys([*first, sealed.new_key(sealed.HASH)])
        sealed.use_keys(rotated)
        await found()
        await repo.set_insured_status(conn, person, "employee", "active")
        await repo.set_employer(conn, person, employer)
        claim = await repo.load_claim(conn, person, "C1")
        assert claim is not None and claim.person_id == person
        await repo.save_submission(conn, Claim("C1", person, 2, Stage.PRELIMINARY_REVIEW,
                                               date(year, 1, 5), 1000, 1000, 3, "in_region"),
                                   "I1", "H1")
        for table in ("insured_view", "employments", "claims"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1, table
        assert await conn.fetchval("SELECT version FROM claims") == 2
        # `medins data-keys reseal`: every row under the new hash key, still found.
        for col in repo.SEALED:
            await sealed.reseal(conn, col)
        current = rotated.current_hash.key_id
        for table in PERSON_TABLES:
            assert await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE person_key NOT LIKE $1 || ':%'",
                current) == 0, table
        shown = await repo.status_of(conn, person)
        assert shown is not None and shown["claims"][0]["version"] == 2
        [waiting] = await repo.records_awaiting_declaration(conn)
        assert waiting["record"]["person_id"] == person
    finally:
        sealed.use_keys(None)
        await conn.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
