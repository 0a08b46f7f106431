"""Read side of enrollment: a person's status, applications, payments and history."""
from __future__ import annotations

import json
from typing import Any

import asyncpg

from services.enrollment.repository import CASE_DATA, REFUSAL, status_of
from shared.db.sealed import resident_keys

__all__ = ["progress_of", "status_of"]


async def progress_of(conn: asyncpg.Connection, person_id: str) -> dict[str, list[dict[str, Any]]]:
    """Everything the person asked of enrollment or was decided for them, as rows for
    shared.progress: applications, cases (their employer's civil-servant case included),
    filings, family aid, stop requests, requests waiting for a policy, refusals."""
    # Every table finds the person by the keyed hash of the ID asked about.
    keys = resident_keys(person_id)
    employer = await conn.fetchval("SELECT employer_code FROM persons"
                                   " WHERE person_key = ANY($1::text[])", keys)
    applications = await conn.fetch(
        "SELECT application_id, insurance_type, state, reasons, created_at, updated_at"
        " FROM applications WHERE person_key = ANY($1::text[])", keys)
    # The case's data holds the applicant's submission (disease, certificate), sealed: it is
    # opened here and only the field a progress line needs leaves this function. A case's
    # subject (the person, or an employer's code) is hashed alike.
    cases = await conn.fetch(
        "SELECT case_id, kind, state, reasons, data, created_at, updated_at FROM cases"
        " WHERE subject_key = ANY($1::text[])"
        " OR (kind = 'civil_servant_benefit' AND subject_key = ANY($2::text[]))",
        keys, resident_keys(employer) if employer is not None else [])
    filings = await conn.fetch(
        "SELECT filing_id, category, kind, source, start_date, end_date, state, created_at,"
        " updated_at FROM filings WHERE person_key = ANY($1::text[])", keys)
    aid = await conn.fetch(
        "SELECT authorisation_id, person_key = ANY($1::text[]) AS granted, state, created_at,"
        " updated_at FROM family_aid"
        " WHERE person_key = ANY($1::text[]) OR relative_key = ANY($1::text[])", keys)
    history = await conn.fetch(
        "SELECT reference, what, detail, cause_type, recorded_at FROM history"
        " WHERE person_key = ANY($1::text[]) AND what = 'stop requested' ORDER BY id", keys)
    refused = await conn.fetch(
        "SELECT reference, request_type, rule, reason, cause_id, refused_at"
        " FROM refused_requests WHERE person_key = ANY($1::text[]) ORDER BY id", keys)
    waiting = await conn.fetch(
        "SELECT reference, event_type, fact_date, received_at, waiting_since, resumed_at"
        " FROM awaiting_policy WHERE person_key = ANY($1::text[])", keys)
    return {
        "applications": [dict(a) | {"reasons": json.loads(a["reasons"])} for a in applications],
        "cases": [{k: v for k, v in c.items() if k != "data"}
                  | {"reasons": json.loads(c["reasons"]),
                     "review_from": (CASE_DATA.open_json(c["data"], c["case_id"]) or {}
                                     ).get("review_from")} for c in cases],
        "filings": [dict(f) for f in filings],
        "family_aid": [dict(a) for a in aid],
        "history": [dict(h) | {"detail": json.loads(h["detail"])} for h in history],
        "awaiting_policy": [dict(w) for w in waiting],
        "refused": [{k: v for k, v in r.items() if k != "cause_id"}
                    | {"reason": REFUSAL.open(r["reason"], person_id, r["reference"],
                                              r["cause_id"])} for r in refused],
    }
