"""asyncpg queries for the reimbursement schema."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import asyncpg

from services.reimbursement.domain.claims import (
    Claim,
    Coverage,
    DeclaredOutage,
    FilingOnRecord,
    Stage,
)
from shared.db.refusals import insert_refused_requests
from shared.db.sealed import Sealed, resident_id_column, resident_key, resident_keys
from shared.policy import AnnualTotals

# No table keeps a resident ID in clear: each finds the person by the ID's keyed hash
# (person_key, matched under every valid hash key) and keeps the ID sealed (person_ref).
INSURED_ID = resident_id_column("insured_view")
CLAIMS_ID = resident_id_column("claims")
HISTORY_ID = resident_id_column("claim_history")
FILINGS_ID = resident_id_column("filings_view")
COVERAGE_ID = resident_id_column("coverage_view")
PROACTIVE_ID = resident_id_column("proactive_records")
SETTLEMENTS_ID = resident_id_column("direct_settlements")
EMPLOYMENTS_ID = resident_id_column("employments")
BIRTHS_ID = resident_id_column("births")
REFUSED_ID = resident_id_column("refused_requests")
# A calculation's working lines can name a diagnosis (an epidemic patient's, confirmed or
# suspected): sealed at rest (shared/db/sealed.py); the figures stay queryable. Bound to the
# opened resident ID, as they were to the clear one, so values sealed before still open.
WORKING = Sealed("claims", "calculation", (CLAIMS_ID, "claim_id"), shape="json:working")
HISTORY_WORKING = Sealed("claim_history", "detail", (HISTORY_ID, "claim_id", "cause_id"),
                         shape="json:working")
# An outage record kept while it awaits the agency's declaration names the person.
RECORD = Sealed("proactive_records", "record", ("institution_code", "record_id"), shape="json")
SEALED = (INSURED_ID, CLAIMS_ID, HISTORY_ID, FILINGS_ID, COVERAGE_ID, PROACTIVE_ID,
          SETTLEMENTS_ID, EMPLOYMENTS_ID, BIRTHS_ID, REFUSED_ID, WORKING, HISTORY_WORKING,
          RECORD)


def _sealed_working(col: Sealed, detail: dict[str, Any], *row: Any) -> dict[str, Any]:
    if "working" not in detail:
        return detail
    return detail | {"working": col.seal(json.dumps(detail["working"], ensure_ascii=False,
                                                     default=str), *row)}


def _opened_working(col: Sealed, raw: str | None, *row: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    detail: dict[str, Any] = json.loads(raw)
    if isinstance(detail.get("working"), str):
        detail["working"] = json.loads(str(col.open(detail["working"], *row)))
    return detail


async def set_insured_status(conn: asyncpg.Connection, person_id: str, insurance_type: str,
                             status: str) -> None:
    # The person's row is updated whatever hash key it was written under (never a second
    # row during a rotation); inserted only when there is none.
    sets = "insurance_type = $4, status = $5, updated_at = now()"
    await conn.execute(
        f"WITH found AS (UPDATE insured_view SET {sets} WHERE person_key = ANY($1::text[])"
        " RETURNING 1) INSERT INTO insured_view (person_ref, person_key, insurance_type,"
        " status) SELECT $2, $3, $4, $5 WHERE NOT EXISTS (SELECT FROM found)"
        f" ON CONFLICT (person_key) DO UPDATE SET {sets}",
        resident_keys(person_id), INSURED_ID.seal(person_id), resident_key(person_id),
        insurance_type, status)


async def insured(conn: asyncpg.Connection, person_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT insurance_type, status FROM insured_view"
                               " WHERE person_key = ANY($1::text[])", resident_keys(person_id))


async def set_filing(conn: asyncpg.Connection, filing_id: str, person_id: str, area: str,
                     start: date, end: date | None, active: bool, benefit_level: str) -> None:
    """The person's filing (scoped by the person: another's under the same number is
    another), found under any valid hash of the ID, else added; one statement."""
    await conn.execute(
        "WITH updated AS (UPDATE filings_view SET active = $7, benefit_level = $8"
        " WHERE filing_id = $1 AND person_key = ANY($9::text[]) RETURNING 1)"
        " INSERT INTO filings_view (filing_id, person_ref, person_key, treatment_area,"
        " start_date, end_date, active, benefit_level)"
        " SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM updated)",
        filing_id, FILINGS_ID.seal(person_id), resident_key(person_id), area, start, end,
        active, benefit_level, resident_keys(person_id))


async def end_filing(conn: asyncpg.Connection, filing_id: str, person_id: str,
                     ended_on: date) -> None:
    """Kept, with the day it ended: it still covers what was spent while it was valid."""
    await conn.execute("UPDATE filings_view SET active = false,"
                       " ended_on = coalesce(ended_on, $2) WHERE filing_id = $1"
                       " AND person_key = ANY($3::text[])", filing_id, ended_on,
                       resident_keys(person_id))


async def filings_for(conn: asyncpg.Connection, person_id: str) -> list[FilingOnRecord]:
    """Every filing of the person (which covers a place is the domain's GB/T 2260 rule),
    with its last valid day (None: open)."""
    rows = await conn.fetch(
        "SELECT treatment_area, start_date, benefit_level, CASE WHEN end_date IS NULL THEN"
        " ended_on WHEN ended_on IS NULL THEN end_date ELSE least(end_date, ended_on) END"
        " AS last_day FROM filings_view WHERE person_key = ANY($1::text[])",
        resident_keys(person_id))
    return [FilingOnRecord(r["treatment_area"], r["start_date"], r["last_day"],
                           r["benefit_level"]) for r in rows]


async def replace_coverage(conn: asyncpg.Connection, person_id: str,
                           periods: list[tuple[str, date, date | None, str, str]]) -> None:
    """Enrollment sends the complete list each time: ours is replaced, never merged."""
    await conn.execute("DELETE FROM coverage_view WHERE person_key = ANY($1::text[])",
                       resident_keys(person_id))
    # One sealed ID for the person's rows: it is bound to no row, and person_key shows
    # already that they are one person's.
    ref, key = COVERAGE_ID.seal(person_id), resident_key(person_id)
    await conn.executemany(
        "INSERT INTO coverage_view (person_ref, person_key, insurance_type, start_date,"
        " end_date, source, reference) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(ref, key, *p) for p in periods])


async def coverage(conn: asyncpg.Connection, person_id: str) -> list[Coverage]:
    rows = await conn.fetch("SELECT insurance_type, start_date, end_date FROM coverage_view"
                            " WHERE person_key = ANY($1::text[]) ORDER BY start_date",
                            resident_keys(person_id))
    return [Coverage(r["insurance_type"], r["start_date"], r["end_date"]) for r in rows]


async def awaiting_policy(conn: asyncpg.Connection, limit: int = 500) -> list[Claim]:
    rows = await conn.fetch("SELECT * FROM claims WHERE stage = 'awaiting_policy'"
                            " ORDER BY expense_date, claim_id LIMIT $1 FOR UPDATE SKIP LOCKED",
                            limit)
    return [_claim(r) for r in rows]


async def count_awaiting_policy(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM claims"
                                   " WHERE stage = 'awaiting_policy'"))


async def claim_for_receipt(conn: asyncpg.Connection, invoice_no: str, institution_code: str,
                            person_id: str, claim_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT claim_id FROM claims WHERE invoice_no = $1 AND institution_code = $2"
        " AND stage <> 'rejected'"
        " AND (person_key = ANY($3::text[]) AND claim_id = $4) IS NOT TRUE",
        invoice_no, institution_code, resident_keys(person_id), claim_id)


def _claim(row: asyncpg.Record, person_id: str | None = None) -> Claim:
    """A claim row; the person's ID is the one it was looked up by, or else (a job going
    through stored claims) its sealed copy opened."""
    pid = person_id if person_id is not None else str(CLAIMS_ID.open(row["person_ref"]))
    return Claim(row["claim_id"], pid, row["version"], Stage(row["stage"]),
                 row["expense_date"], row["amount_fen"], row["eligible_fen"] or row["amount_fen"],
                 row["hospital_level"], row["location"], row["tracking_no"], row["payable_fen"],
                 row["payment_attempts"], json.loads(row["reasons"]), row["insurance_type"],
                 row["filed_on"], row["waiting_for"], row["benefit_line"], row["payee"],
                 row["channel"], row["filing_level"])


async def load_claim(conn: asyncpg.Connection, person_id: str, claim_id: str) -> Claim | None:
    """A claim is the person's own: the same reference from another person is another claim."""
    row = await conn.fetchrow("SELECT * FROM claims WHERE person_key = ANY($1::text[])"
                              " AND claim_id = $2 FOR UPDATE", resident_keys(person_id),
                              claim_id)
    return _claim(row, person_id) if row else None


async def save_submission(conn: asyncpg.Connection, c: Claim, invoice_no: str,
                          institution_code: str) -> None:
    """A new claim, or a new version of a rejected one under the same claim id (its row
    updated whatever hash key it was written under: never a second row in a rotation)."""
    sets = ("invoice_no = $5, institution_code = $6, expense_date = $7, amount_fen = $8,"
            " stage = $9, reasons = $10, version = $11, eligible_fen = $12,"
            " hospital_level = $13, location = $14, insurance_type = $15, filed_on = $16,"
            " waiting_for = $17, benefit_line = $18, payee = $19, channel = $20,"
            " filing_level = $21, tracking_no = NULL, payable_fen = NULL, calculation = NULL,"
            " payment_attempts = 0, updated_at = now()")
    await conn.execute(
        f"WITH found AS (UPDATE claims SET {sets} WHERE person_key = ANY($4::text[])"
        " AND claim_id = $1 RETURNING 1)"
        " INSERT INTO claims (claim_id, person_ref, person_key, invoice_no, institution_code,"
        " expense_date, amount_fen, stage, reasons, version, eligible_fen, hospital_level,"
        " location, insurance_type, filed_on, waiting_for, benefit_line, payee, channel,"
        " filing_level) SELECT $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
        " $16, $17, $18, $19, $20, $21 WHERE NOT EXISTS (SELECT FROM found)"
        f" ON CONFLICT (person_key, claim_id) DO UPDATE SET {sets}",
        c.claim_id, CLAIMS_ID.seal(c.person_id), resident_key(c.person_id),
        resident_keys(c.person_id), invoice_no, institution_code, c.expense_date, c.amount_fen,
        c.stage.value, json.dumps(c.reasons, ensure_ascii=False), c.version, c.eligible_fen,
        c.hospital_level, c.location, c.insurance_type, c.filed_on, c.waiting_for,
        c.benefit_line, c.payee, c.channel, c.filing_level)


async def save_claim(conn: asyncpg.Connection, c: Claim) -> None:
    """Stage, decision and payment progress of an existing claim."""
    await conn.execute(
        "UPDATE claims SET stage = $2, reasons = $3, tracking_no = $4, payable_fen = $5,"
        " payment_attempts = $6, waiting_for = $7, updated_at = now() WHERE claim_id = $1"
        " AND person_key = ANY($8::text[])",
        c.claim_id, c.stage.value, json.dumps(c.reasons, ensure_ascii=False), c.tracking_no,
        c.payable_fen, c.payment_attempts, c.waiting_for, resident_keys(c.person_id))


async def set_treatment_area(conn: asyncpg.Connection, person_id: str, claim_id: str,
                             area: str | None) -> None:
    await conn.execute("UPDATE claims SET treatment_area = $3"
                       " WHERE person_key = ANY($1::text[]) AND claim_id = $2",
                       resident_keys(person_id), claim_id, area)


async def unfiled_claims(conn: asyncpg.Connection, person_id: str, start: date,
                         end: date | None) -> list[tuple[Claim, str]]:
    """Claims in this window treated as remote without filing, with their place."""
    rows = await conn.fetch(
        "SELECT * FROM claims WHERE person_key = ANY($1::text[])"
        " AND treatment_area IS NOT NULL"
        " AND location = 'remote_unfiled' AND expense_date >= $2"
        " AND ($3::date IS NULL OR expense_date <= $3) AND stage <> 'rejected'"
        " ORDER BY expense_date FOR UPDATE", resident_keys(person_id), start, end)
    return [(_claim(r, person_id), r["treatment_area"]) for r in rows]


async def calculation_of(conn: asyncpg.Connection, claim: Claim) -> dict[str, Any]:
    raw = await conn.fetchval("SELECT calculation FROM claims"
                              " WHERE person_key = ANY($1::text[]) AND claim_id = $2",
                              resident_keys(claim.person_id), claim.claim_id)
    return _opened_working(WORKING, raw, claim.person_id, claim.claim_id) or {}


async def set_location(conn: asyncpg.Connection, claim: Claim, location: str,
                       filing_level: str | None) -> None:
    await conn.execute("UPDATE claims SET location = $3, filing_level = $4"
                       " WHERE person_key = ANY($1::text[]) AND claim_id = $2",
                       resident_keys(claim.person_id), claim.claim_id, location, filing_level)


async def add_top_up(conn: asyncpg.Connection, claim: Claim, fen: int) -> None:
    await conn.execute("UPDATE claims SET top_up_fen = top_up_fen + $3,"
                       " payable_fen = payable_fen + $3"
                       " WHERE person_key = ANY($1::text[]) AND claim_id = $2",
                       resident_keys(claim.person_id), claim.claim_id, fen)


async def save_calculation(conn: asyncpg.Connection, claim: Claim,
                           calculation: dict[str, Any]) -> None:
    await conn.execute("UPDATE claims SET calculation = $3"
                       " WHERE person_key = ANY($1::text[]) AND claim_id = $2",
                       resident_keys(claim.person_id), claim.claim_id,
                       json.dumps(_sealed_working(WORKING, calculation, claim.person_id,
                                                  claim.claim_id), ensure_ascii=False,
                                  default=str))


async def annual_totals(conn: asyncpg.Connection, person_id: str, year: int,
                        line: str = "medical") -> AnnualTotals:
    """One benefit line's totals for the year of the expense: approved or paid claims of that
    line (their payable and the deductible their calculation met) and what the hospital
    settled directly from that line (fund paid, deductible used)."""
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(payable_fen), 0) FROM claims"
        "   WHERE person_key = ANY($1::text[])"
        "   AND benefit_line = $3 AND stage IN ('approved', 'paid')"
        "   AND extract(year FROM expense_date) = $2) AS claims_paid,"
        " (SELECT coalesce(sum((calculation->>'deductible_fen')::bigint), 0) FROM claims"
        "   WHERE person_key = ANY($1::text[]) AND benefit_line = $3"
        "   AND stage IN ('approved', 'paid')"
        "   AND extract(year FROM expense_date) = $2) AS claims_deductible,"
        " (SELECT coalesce(sum(fund_paid_fen), 0) FROM direct_settlements"
        "   WHERE person_key = ANY($1::text[])"
        "   AND benefit_line = $3 AND extract(year FROM settled_on) = $2) AS settled_paid,"
        " (SELECT coalesce(sum(deductible_used_fen), 0) FROM direct_settlements"
        "   WHERE person_key = ANY($1::text[]) AND benefit_line = $3"
        "   AND extract(year FROM settled_on) = $2) AS settled_deductible",
        resident_keys(person_id), year, line)
    return AnnualTotals(line, year, int(row["claims_paid"]), int(row["settled_paid"]),
                        int(row["claims_deductible"]), int(row["settled_deductible"]))


async def record(conn: asyncpg.Connection, claim: Claim, detail: dict[str, Any],
                 cause_id: str) -> None:
    await conn.execute("INSERT INTO claim_history (claim_id, person_ref, person_key, stage,"
                       " detail, cause_id) VALUES ($1, $2, $3, $4, $5, $6)", claim.claim_id,
                       HISTORY_ID.seal(claim.person_id), resident_key(claim.person_id),
                       claim.stage.value,
                       json.dumps(_sealed_working(HISTORY_WORKING, detail, claim.person_id,
                                                  claim.claim_id, cause_id)
                                  | {"version": claim.version}, ensure_ascii=False,
                                  default=str), cause_id)


async def record_settlement(conn: asyncpg.Connection, invoice_no: str, institution: str,
                            settlement_id: str, person_id: str, settled_on: date,
                            fund_paid_fen: int, deductible_used_fen: int, line: str) -> None:
    await conn.execute(
        "INSERT INTO direct_settlements (invoice_no, institution_code, settlement_id,"
        " person_ref, person_key, settled_on, fund_paid_fen, deductible_used_fen, benefit_line)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        invoice_no, institution, settlement_id, SETTLEMENTS_ID.seal(person_id),
        resident_key(person_id), settled_on, fund_paid_fen, deductible_used_fen, line)


async def settlement_for_receipt(conn: asyncpg.Connection, invoice_no: str,
                                 institution: str) -> str | None:
    return await conn.fetchval("SELECT settlement_id FROM direct_settlements WHERE"
                               " invoice_no = $1 AND institution_code = $2",
                               invoice_no, institution)


async def set_employer(conn: asyncpg.Connection, person_id: str, employer: str | None) -> None:
    if employer is None:
        await conn.execute("DELETE FROM employments WHERE person_key = ANY($1::text[])",
                           resident_keys(person_id))
        return
    # Updated whatever hash key the row was written under; inserted only when there is none.
    await conn.execute(
        "WITH found AS (UPDATE employments SET employer_code = $4"
        " WHERE person_key = ANY($1::text[]) RETURNING 1)"
        " INSERT INTO employments (person_ref, person_key, employer_code) SELECT $2, $3, $4"
        " WHERE NOT EXISTS (SELECT FROM found)"
        " ON CONFLICT (person_key) DO UPDATE SET employer_code = $4",
        resident_keys(person_id), EMPLOYMENTS_ID.seal(person_id), resident_key(person_id),
        employer)


async def employer_of(conn: asyncpg.Connection, person_id: str) -> str | None:
    # Each table looked up by the keys, not joined on person_key: a rotation re-hashes one
    # table at a time.
    return await conn.fetchval(
        "SELECT employer_code FROM employments WHERE person_key = ANY($1::text[])"
        " AND EXISTS (SELECT FROM insured_view WHERE person_key = ANY($1::text[])"
        " AND status = 'active')", resident_keys(person_id))


async def save_wage_base(conn: asyncpg.Connection, employer: str, year: int, fen: int) -> None:
    await conn.execute(
        "INSERT INTO wage_bases VALUES ($1, $2, $3) ON CONFLICT (employer_code, year)"
        " DO UPDATE SET average_monthly_wage_fen = $3", employer, year, fen)


async def wage_base(conn: asyncpg.Connection, employer: str, year: int) -> int | None:
    return await conn.fetchval("SELECT average_monthly_wage_fen FROM wage_bases"
                               " WHERE employer_code = $1 AND year = $2", employer, year)


async def save_birth(conn: asyncpg.Connection, b: Any, state: str, reason: str | None,
                     claim_id: str | None, employer: str | None = None) -> None:
    """`employer`: whose wage base it was judged (or waits) under."""
    # Scoped by the hospital that recorded it: another hospital's birth 0001 is another birth.
    await conn.execute(
        "INSERT INTO births (birth_id, person_ref, person_key, birth_date, difficult_birth,"
        " babies, state, reason, claim_id, employer_code, institution_code)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (institution_code, birth_id)"
        " DO UPDATE SET state = $7, reason = $8, claim_id = $9, employer_code = $10",
        b.birth_id, BIRTHS_ID.seal(b.person_id), resident_key(b.person_id), b.birth_date,
        b.difficult_birth, b.babies, state, reason, claim_id, employer, b.institution_code)


async def births_waiting(conn: asyncpg.Connection, employer: str,
                         year: int) -> list[dict[str, Any]]:
    """Births waiting for this employer's wage base of the year before, with the mother's
    ID opened (the wage base names no person)."""
    rows = await conn.fetch(
        "SELECT * FROM births WHERE state = 'waiting_for_wage_base' AND employer_code = $1"
        " AND extract(year FROM birth_date) = $2 + 1", employer, year)
    return [dict(r) | {"person_id": BIRTHS_ID.open(r["person_ref"])} for r in rows]


async def proactive_record_route(conn: asyncpg.Connection, institution: str,
                                 record_id: str) -> str | None:
    """Scoped by the sender: the same record id from another institution is another record."""
    route: str | None = await conn.fetchval(
        "SELECT route FROM proactive_records WHERE institution_code = $1 AND record_id = $2",
        institution, record_id)
    return route


async def save_proactive_record(conn: asyncpg.Connection, record_id: str, batch_id: str,
                                institution: str, person_id: str, claim_id: str | None,
                                route: str, reason: str, outage: DeclaredOutage | None,
                                record: dict[str, Any] | None = None) -> None:
    await conn.execute(
        "INSERT INTO proactive_records (record_id, batch_id, institution_code, person_ref,"
        " person_key, accepted, claim_id, reason, route, outage_id, pay_by, record)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (institution_code, record_id) DO UPDATE SET accepted = $6,"
        " claim_id = $7, reason = $8, route = $9, outage_id = $10, pay_by = $11, record = $12",
        record_id, batch_id, institution, PROACTIVE_ID.seal(person_id),
        resident_key(person_id), route == "proactive", claim_id, reason, route,
        outage.outage_id if outage else None, outage.pay_by if outage else None,
        RECORD.seal_json(record, institution, record_id) if record is not None else None)


async def save_outage(conn: asyncpg.Connection, o: DeclaredOutage, declared_by: str,
                      declared_at: Any) -> None:
    await conn.execute(
        "INSERT INTO declared_outages VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (outage_id) DO UPDATE SET outage_from = $2, outage_to = $3, pay_by = $4,"
        " institution_codes = $5, declared_by = $6, declared_at = $7",
        o.outage_id, o.outage_from, o.outage_to, o.pay_by, list(o.institution_codes),
        declared_by, declared_at)


async def outages_for(conn: asyncpg.Connection, institution: str) -> list[DeclaredOutage]:
    rows = await conn.fetch("SELECT * FROM declared_outages WHERE institution_codes = '{}'"
                            " OR $1 = ANY(institution_codes) ORDER BY outage_from", institution)
    return [DeclaredOutage(r["outage_id"], r["outage_from"], r["outage_to"], r["pay_by"],
                           tuple(r["institution_codes"])) for r in rows]


async def records_awaiting_declaration(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Each with its kept record opened (`record`: the outage record as uploaded)."""
    rows = await conn.fetch(
        "SELECT batch_id, institution_code, record_id, record FROM proactive_records"
        " WHERE route = 'awaiting_declaration' ORDER BY recorded_at FOR UPDATE")
    return [dict(r) | {"record": RECORD.open_json(r["record"], r["institution_code"],
                                                  r["record_id"])} for r in rows]


# An outage record's claim, joined on the business ids (agency-started claims have no
# channel and their claim id is unique to the record): never on person_key, which a rotation
# re-hashes one table at a time.
PROACTIVE_CLAIM = ("c.claim_id = p.claim_id AND c.institution_code = p.institution_code"
                   " AND c.channel IS NULL")


async def institution_summary(conn: asyncpg.Connection,
                              institution: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT count(*) AS records, count(*) FILTER (WHERE p.accepted) AS accepted,"
        " count(*) FILTER (WHERE p.route = 'rejected') AS rejected,"
        " count(*) FILTER (WHERE p.route = 'manual') AS manual,"
        " count(*) FILTER (WHERE p.route = 'awaiting_declaration') AS awaiting_declaration,"
        " count(*) FILTER (WHERE p.accepted AND c.stage IS DISTINCT FROM 'paid') AS unpaid,"
        " min(p.pay_by) FILTER (WHERE p.accepted AND c.stage IS DISTINCT FROM 'paid')"
        " AS next_pay_by,"
        " coalesce(sum(c.payable_fen) FILTER (WHERE c.stage IN ('approved', 'paid')), 0)"
        " AS total_approved_fen,"
        " coalesce(sum(c.payable_fen) FILTER (WHERE c.stage = 'paid'), 0) AS total_paid_fen"
        f" FROM proactive_records p LEFT JOIN claims c ON {PROACTIVE_CLAIM}"
        " WHERE p.institution_code = $1", institution)
    if row is None or row["records"] == 0:
        return None
    rejected = await conn.fetch("SELECT record_id, route, reason FROM proactive_records"
                                " WHERE institution_code = $1 AND NOT accepted"
                                " ORDER BY recorded_at LIMIT 50", institution)
    return dict(row) | {"rejected_records": [dict(r) for r in rejected]}


def _named(row: asyncpg.Record, col: Sealed) -> dict[str, Any]:
    """The row with its resident ID opened as `person_id` (for staff, who mask it), without
    the sealed copy and the hash."""
    return {"person_id": col.open(row["person_ref"])} | {
        k: v for k, v in row.items() if k not in ("person_ref", "person_key")}


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    """By a resident ID, a claim id or (for the outage summary) an institution code."""
    keys = resident_keys(ref)
    rows = [_named(r, CLAIMS_ID) for r in await conn.fetch(
        "SELECT * FROM claims WHERE person_key = ANY($1::text[]) OR claim_id = $2"
        " ORDER BY created_at", keys, ref)]
    view = await conn.fetchrow("SELECT insurance_type, status, updated_at FROM insured_view"
                               " WHERE person_key = ANY($1::text[])", keys)
    employer = await conn.fetchval("SELECT employer_code FROM employments"
                                   " WHERE person_key = ANY($1::text[])", keys)
    births = await conn.fetch("SELECT birth_id, birth_date, state, reason, claim_id FROM births"
                              " WHERE person_key = ANY($1::text[])", keys)
    periods = await conn.fetch("SELECT insurance_type, start_date, end_date, source, reference"
                               " FROM coverage_view WHERE person_key = ANY($1::text[])"
                               " ORDER BY start_date", keys)
    if not rows and view is None and not periods:
        summary = await institution_summary(conn, ref)
        return {"proactive_summary": summary} if summary else None
    claims = []
    for r in rows:
        history = await conn.fetch("SELECT stage, detail, cause_id, recorded_at"
                                   " FROM claim_history"
                                   " WHERE claim_id = $1 AND person_key = ANY($2::text[])"
                                   " ORDER BY id", r["claim_id"],
                                   resident_keys(r["person_id"]))
        claims.append(dict(r) | {
            "reasons": json.loads(r["reasons"]),
            "calculation": _opened_working(WORKING, r["calculation"], r["person_id"],
                                           r["claim_id"]),
            "history": [{k: v for k, v in h.items() if k != "cause_id"} | {
                "detail": _opened_working(HISTORY_WORKING, h["detail"], r["person_id"],
                                          r["claim_id"], h["cause_id"])} for h in history]})
    return {"insured_status": {"person_id": ref} | dict(view) if view else None,
            "employer_code": employer,
            "coverage": [dict(p) for p in periods],
            "claims": claims, "births": [dict(b) for b in births]}


async def proactive_pay_by(conn: asyncpg.Connection, claim: Claim) -> date | None:
    day: date | None = await conn.fetchval(
        "SELECT pay_by FROM proactive_records WHERE person_key = ANY($1::text[])"
        " AND claim_id = $2", resident_keys(claim.person_id), claim.claim_id)
    return day


async def institution_of(conn: asyncpg.Connection, claim: Claim) -> str | None:
    code: str | None = await conn.fetchval(
        "SELECT institution_code FROM claims WHERE person_key = ANY($1::text[])"
        " AND claim_id = $2", resident_keys(claim.person_id), claim.claim_id)
    return code


# (person, reference, request type, rule, reason, cause id) of a refused request.
Refusal = tuple[str, str, str, str, str, str]


async def record_refusals(conn: asyncpg.Connection, rows: list[Refusal]) -> None:
    """Refused requests, in order, in one statement (one event's or a whole batch's)."""
    await insert_refused_requests(
        conn, [REFUSED_ID.seal(r[0]) for r in rows], [resident_key(r[0]) for r in rows],
        *([r[i] for r in rows] for i in range(1, 6)))


# Set-based reads and writes: a batch of events loads each table once (`= ANY` of every
# person's keys or of the business ids) and writes each table with one statement.

PersonKeys = dict[str, list[str]]


def person_keys(person_ids: Iterable[str]) -> PersonKeys:
    """Each resident ID -> its hashes under every valid key, computed once for all of a
    batch's look-ups."""
    return {pid: resident_keys(pid) for pid in set(person_ids)}


def _owners(keys: PersonKeys) -> dict[str, str]:
    """Each valid hash of each ID -> the ID: rows are found under any key and told apart by
    the person they belong to."""
    return {key: pid for pid, found in keys.items() for key in found}


async def claims_of(conn: asyncpg.Connection, wanted: list[tuple[str, str]],
                    person: PersonKeys) -> dict[tuple[str, str], tuple[Claim, int]]:
    """(person, claim id) -> the claim and the deductible its calculation met, locked for
    the batch; a pair with no claim is left out."""
    owners = _owners(person)
    keys, ids = [], []
    for pid, claim_id in set(wanted):
        for key in person[pid]:
            keys.append(key)
            ids.append(claim_id)
    rows = await conn.fetch(
        "SELECT c.*, (c.calculation->>'deductible_fen')::bigint AS met_deductible_fen"
        " FROM claims c JOIN unnest($1::text[], $2::text[]) AS k(person_key, claim_id)"
        " ON c.person_key = k.person_key AND c.claim_id = k.claim_id FOR UPDATE OF c",
        keys, ids)
    found = {}
    for r in rows:
        pid = owners[r["person_key"]]
        found[(pid, r["claim_id"])] = (_claim(r, pid), int(r["met_deductible_fen"] or 0))
    return found


async def receipts_claimed(conn: asyncpg.Connection, receipts: list[tuple[str, str]],
                           person: PersonKeys) -> dict[tuple[str, str], tuple[str | None, str]]:
    """(invoice, institution) -> (person, claim id) of the claim not rejected that holds the
    receipt (one at most: claims_receipt); the person is None when not one of `person`."""
    owners = _owners(person)
    rows = await conn.fetch(
        "SELECT c.invoice_no, c.institution_code, c.person_key, c.claim_id FROM claims c"
        " JOIN unnest($1::text[], $2::text[]) AS r(invoice_no, institution_code)"
        " ON c.invoice_no = r.invoice_no AND c.institution_code = r.institution_code"
        " WHERE c.stage <> 'rejected'",
        [i for i, _ in receipts], [c for _, c in receipts])
    return {(r["invoice_no"], r["institution_code"]): (owners.get(r["person_key"]),
                                                       r["claim_id"]) for r in rows}


async def receipts_settled(conn: asyncpg.Connection, receipts: list[tuple[str, str]]
                           ) -> dict[tuple[str, str], str]:
    """(invoice, institution) -> the direct settlement that already paid the receipt."""
    rows = await conn.fetch(
        "SELECT s.invoice_no, s.institution_code, s.settlement_id FROM direct_settlements s"
        " JOIN unnest($1::text[], $2::text[]) AS r(invoice_no, institution_code)"
        " ON s.invoice_no = r.invoice_no AND s.institution_code = r.institution_code",
        [i for i, _ in receipts], [c for _, c in receipts])
    return {(r["invoice_no"], r["institution_code"]): r["settlement_id"] for r in rows}


async def coverage_of(conn: asyncpg.Connection, person: PersonKeys
                      ) -> dict[str, list[Coverage]]:
    """Each person's coverage periods by start date (none: an empty list)."""
    owners = _owners(person)
    rows = await conn.fetch("SELECT person_key, insurance_type, start_date, end_date"
                            " FROM coverage_view WHERE person_key = ANY($1::text[])"
                            " ORDER BY start_date", list(owners))
    found: dict[str, list[Coverage]] = {pid: [] for pid in person}
    for r in rows:
        found[owners[r["person_key"]]].append(
            Coverage(r["insurance_type"], r["start_date"], r["end_date"]))
    return found


async def filings_of(conn: asyncpg.Connection, person: PersonKeys
                     ) -> dict[str, list[FilingOnRecord]]:
    """Each person's filings as `filings_for` gives them."""
    owners = _owners(person)
    rows = await conn.fetch(
        "SELECT person_key, treatment_area, start_date, benefit_level, CASE WHEN end_date IS"
        " NULL THEN ended_on WHEN ended_on IS NULL THEN end_date ELSE least(end_date,"
        " ended_on) END AS last_day FROM filings_view WHERE person_key = ANY($1::text[])",
        list(owners))
    found: dict[str, list[FilingOnRecord]] = {pid: [] for pid in person}
    for r in rows:
        found[owners[r["person_key"]]].append(FilingOnRecord(
            r["treatment_area"], r["start_date"], r["last_day"], r["benefit_level"]))
    return found


async def annual_totals_of(conn: asyncpg.Connection, person: PersonKeys
                           ) -> dict[tuple[str, str, int], AnnualTotals]:
    """(person, line, year) -> the totals `annual_totals` gives; absent: all zero."""
    owners = _owners(person)
    keys = list(owners)
    # The figures are taken out of each row before grouping (OFFSET 0 keeps the subquery
    # from being merged into the grouping): sorted whole, the rows carried their
    # calculation (~1 kB each) and the sort of an outage's persons' claims spilled to disk
    # (490 ms a batch at 56,000 claims, against ~60 ms).
    claims = await conn.fetch(
        "SELECT person_key, benefit_line, year, coalesce(sum(paid), 0) AS paid,"
        " coalesce(sum(deductible), 0) AS deductible FROM ("
        " SELECT person_key, benefit_line, extract(year FROM expense_date)::int AS year,"
        " payable_fen AS paid, (calculation->>'deductible_fen')::bigint AS deductible"
        " FROM claims WHERE person_key = ANY($1::text[]) AND stage IN ('approved', 'paid')"
        " OFFSET 0) AS counted GROUP BY 1, 2, 3", keys)
    settled = await conn.fetch(
        "SELECT person_key, benefit_line, extract(year FROM settled_on)::int AS year,"
        " coalesce(sum(fund_paid_fen), 0) AS paid,"
        " coalesce(sum(deductible_used_fen), 0) AS deductible"
        " FROM direct_settlements WHERE person_key = ANY($1::text[]) GROUP BY 1, 2, 3", keys)
    totals: dict[tuple[str, str, int], AnnualTotals] = {}
    for rows, paid_field, deductible_field in (
            (claims, "claims_paid_fen", "claims_deductible_fen"),
            (settled, "settled_paid_fen", "settled_deductible_fen")):
        for r in rows:
            at = (owners[r["person_key"]], r["benefit_line"], r["year"])
            now = totals.get(at) or AnnualTotals(at[1], at[2])
            totals[at] = replace(now, **{
                paid_field: getattr(now, paid_field) + int(r["paid"]),
                deductible_field: getattr(now, deductible_field) + int(r["deductible"])})
    return totals


@dataclass
class ClaimWrite:
    """A claim's row as a batch leaves it: what `save_submission` writes, and what later
    statements of the same handling set (calculation, payment progress, place)."""

    claim: Claim
    invoice_no: str
    institution_code: str
    calculation: dict[str, Any] | None = None
    # Only a channel's claim names a place; an agency-started one leaves the row's as it is.
    sets_treatment_area: bool = False
    treatment_area: str | None = None
    # Whether the batch found the claim's row when it loaded it: only those are looked for
    # to update (under any of the person's hashes); a new one is inserted.
    stored: bool = True


_CLAIM_COLUMNS = ("invoice_no", "institution_code", "expense_date", "amount_fen", "stage",
                  "reasons", "version", "eligible_fen", "hospital_level", "location",
                  "insurance_type", "filed_on", "waiting_for", "benefit_line", "payee",
                  "channel", "filing_level", "tracking_no", "payable_fen", "calculation",
                  "payment_attempts")


async def save_claims(conn: asyncpg.Connection, writes: list[ClaimWrite],
                      person: PersonKeys) -> None:
    """Every claim of a batch (one write per claim), each row updated whatever hash key it
    was written under, else inserted: as `save_submission` does for one."""
    if not writes:
        return
    keys_i: list[int] = []
    keys: list[str] = []
    for i, w in enumerate(writes):
        if not w.stored:
            # Not looked for: with every write's keys the planner joined them with a scan of
            # the whole claims table (66 ms a batch at 14,000 claims, growing), though an
            # outage's claims are all new. A row written meanwhile by another writer is
            # still updated, by the insert's ON CONFLICT.
            continue
        for key in person[w.claim.person_id]:
            keys_i.append(i)
            keys.append(key)
    c = [w.claim for w in writes]
    sets = ", ".join(f"{col} = u.{col}" for col in _CLAIM_COLUMNS)
    excluded = ", ".join(f"{col} = EXCLUDED.{col}" for col in _CLAIM_COLUMNS)
    await conn.execute(
        "WITH u AS (SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[],"
        " $5::text[], $6::text[], $7::date[], $8::bigint[], $9::text[], $10::text[]::jsonb[],"
        " $11::int[], $12::bigint[], $13::int[], $14::text[], $15::text[], $16::date[],"
        " $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[],"
        " $23::bigint[], $24::text[]::jsonb[], $25::int[], $26::bool[], $27::text[])"
        " AS u(i, claim_id, person_ref, person_key, invoice_no, institution_code,"
        " expense_date, amount_fen, stage, reasons, version, eligible_fen, hospital_level,"
        " location, insurance_type, filed_on, waiting_for, benefit_line, payee, channel,"
        " filing_level, tracking_no, payable_fen, calculation, payment_attempts, sets_area,"
        " treatment_area)),"
        " k AS (SELECT * FROM unnest($28::int[], $29::text[]) AS k(i, person_key)),"
        f" found AS (UPDATE claims c SET {sets}, treatment_area = CASE WHEN u.sets_area"
        " THEN u.treatment_area ELSE c.treatment_area END, updated_at = now()"
        " FROM u JOIN k ON k.i = u.i"
        " WHERE c.person_key = k.person_key AND c.claim_id = u.claim_id RETURNING u.i)"
        f" INSERT INTO claims (claim_id, person_ref, person_key, {', '.join(_CLAIM_COLUMNS)},"
        f" treatment_area) SELECT claim_id, person_ref, person_key,"
        f" {', '.join(_CLAIM_COLUMNS)}, treatment_area FROM u"
        " WHERE u.i NOT IN (SELECT i FROM found) ORDER BY u.i"
        # Another writer's row under the current key (never this batch's own): updated
        # as the UPDATE above would have.
        f" ON CONFLICT (person_key, claim_id) DO UPDATE SET {excluded},"
        " treatment_area = CASE WHEN (SELECT u.sets_area FROM u WHERE u.claim_id ="
        " EXCLUDED.claim_id AND u.person_key = EXCLUDED.person_key) THEN"
        " EXCLUDED.treatment_area ELSE claims.treatment_area END, updated_at = now()",
        list(range(len(writes))), [x.claim_id for x in c],
        [CLAIMS_ID.seal(x.person_id) for x in c], [resident_key(x.person_id) for x in c],
        [w.invoice_no for w in writes], [w.institution_code for w in writes],
        [x.expense_date for x in c], [x.amount_fen for x in c], [x.stage.value for x in c],
        [json.dumps(x.reasons, ensure_ascii=False) for x in c], [x.version for x in c],
        [x.eligible_fen for x in c], [x.hospital_level for x in c], [x.location for x in c],
        [x.insurance_type for x in c], [x.filed_on for x in c], [x.waiting_for for x in c],
        [x.benefit_line for x in c], [x.payee for x in c], [x.channel for x in c],
        [x.filing_level for x in c], [x.tracking_no for x in c], [x.payable_fen for x in c],
        [None if w.calculation is None else json.dumps(
            _sealed_working(WORKING, w.calculation, w.claim.person_id, w.claim.claim_id),
            ensure_ascii=False, default=str) for w in writes],
        [x.payment_attempts for x in c], [w.sets_treatment_area for w in writes],
        [w.treatment_area for w in writes], keys_i, keys)


async def record_all(conn: asyncpg.Connection,
                     entries: list[tuple[Claim, dict[str, Any], str]]) -> None:
    """History rows (claim as it stood, detail, cause) in order, as `record` writes each."""
    if not entries:
        return
    await conn.copy_records_to_table(
        "claim_history",
        columns=["claim_id", "person_ref", "person_key", "stage", "detail", "cause_id"],
        records=[(claim.claim_id, HISTORY_ID.seal(claim.person_id),
                  resident_key(claim.person_id), claim.stage.value,
                  json.dumps(_sealed_working(HISTORY_WORKING, detail, claim.person_id,
                                             claim.claim_id, cause_id)
                             | {"version": claim.version}, ensure_ascii=False, default=str),
                  cause_id) for claim, detail, cause_id in entries])


async def record_settlements(conn: asyncpg.Connection,
                             settlements: list[tuple[str, str, str, str, date, int, int, str]]
                             ) -> None:
    """(invoice, institution, settlement id, person, settled on, fund paid, deductible used,
    line) each, in order: the first of a receipt is kept, as `record_settlement` does."""
    first: dict[tuple[str, str], tuple[str, str, str, str, date, int, int, str]] = {}
    for s in settlements:
        first.setdefault((s[0], s[1]), s)
    rows = list(first.values())
    if not rows:
        return
    await conn.execute(
        "INSERT INTO direct_settlements (invoice_no, institution_code, settlement_id,"
        " person_ref, person_key, settled_on, fund_paid_fen, deductible_used_fen, benefit_line)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::date[], $7::bigint[], $8::bigint[], $9::text[]) ON CONFLICT DO NOTHING",
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [SETTLEMENTS_ID.seal(r[3]) for r in rows], [resident_key(r[3]) for r in rows],
        [r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows], [r[7] for r in rows])


async def proactive_routes(conn: asyncpg.Connection, records: list[tuple[str, str]]
                           ) -> dict[tuple[str, str], str]:
    """(institution, record id) -> the route it was given; a record never seen is left out."""
    rows = await conn.fetch(
        "SELECT p.institution_code, p.record_id, p.route FROM proactive_records p"
        " JOIN unnest($1::text[], $2::text[]) AS r(institution_code, record_id)"
        " ON p.institution_code = r.institution_code AND p.record_id = r.record_id",
        [i for i, _ in records], [r for _, r in records])
    return {(r["institution_code"], r["record_id"]): r["route"] for r in rows}


@dataclass
class ProactiveWrite:
    """An outage record's row as `save_proactive_record` writes it."""

    record_id: str
    batch_id: str
    institution: str
    person_id: str
    claim_id: str | None
    route: str
    reason: str
    outage: DeclaredOutage | None
    record: dict[str, Any] | None = None


async def save_proactive_records(conn: asyncpg.Connection,
                                 writes: list[ProactiveWrite]) -> None:
    """Every outage record of a batch: one row each by (institution, record id); a record
    written twice keeps the first write's batch and person and the last one's outcome, as
    two `save_proactive_record` calls leave it."""
    rows: dict[tuple[str, str], ProactiveWrite] = {}
    for w in writes:
        at = (w.institution, w.record_id)
        first = rows.get(at)
        rows[at] = w if first is None else replace(w, batch_id=first.batch_id,
                                                   person_id=first.person_id)
    if not rows:
        return
    out = list(rows.values())
    await conn.execute(
        "INSERT INTO proactive_records (record_id, batch_id, institution_code, person_ref,"
        " person_key, accepted, claim_id, reason, route, outage_id, pay_by, record)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::bool[], $7::text[], $8::text[], $9::text[], $10::text[], $11::date[],"
        " $12::text[]::jsonb[])"
        " ON CONFLICT (institution_code, record_id) DO UPDATE SET accepted = EXCLUDED.accepted,"
        " claim_id = EXCLUDED.claim_id, reason = EXCLUDED.reason, route = EXCLUDED.route,"
        " outage_id = EXCLUDED.outage_id, pay_by = EXCLUDED.pay_by, record = EXCLUDED.record",
        [w.record_id for w in out], [w.batch_id for w in out], [w.institution for w in out],
        [PROACTIVE_ID.seal(w.person_id) for w in out],
        [resident_key(w.person_id) for w in out], [w.route == "proactive" for w in out],
        [w.claim_id for w in out], [w.reason for w in out], [w.route for w in out],
        [w.outage.outage_id if w.outage else None for w in out],
        [w.outage.pay_by if w.outage else None for w in out],
        [RECORD.seal_json(w.record, w.institution, w.record_id) if w.record is not None
         else None for w in out])


async def outages_of(conn: asyncpg.Connection, institutions: set[str]
                     ) -> dict[str, list[DeclaredOutage]]:
    """Each institution's declared outages as `outages_for` gives them."""
    rows = await conn.fetch("SELECT * FROM declared_outages WHERE institution_codes = '{}'"
                            " OR institution_codes && $1::text[] ORDER BY outage_from",
                            list(institutions))
    return {inst: [DeclaredOutage(r["outage_id"], r["outage_from"], r["outage_to"],
                                  r["pay_by"], tuple(r["institution_codes"]))
                   for r in rows if not r["institution_codes"] or inst in r["institution_codes"]]
            for inst in institutions}
