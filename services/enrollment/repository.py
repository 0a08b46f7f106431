"""asyncpg queries for the enrollment schema."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from services.enrollment.domain.coverage import Period
from services.enrollment.domain.filings import Filing
from services.enrollment.domain.model import Application, ApplicationState, InsuredStatus, Person
from shared.contracts.common import MINE, OTHERS
from shared.db.refusals import insert_refused_requests
from shared.db.sealed import (
    PREFIX,
    Sealed,
    resident_id_column,
    resident_key,
    resident_keys,
)
from shared.db.sealed import (
    keys as data_keys,
)

# No table keeps a resident ID in clear: each finds the person by a keyed hash of the ID
# (`person_key`, the same in every table) and keeps the ID sealed (`person_ref`) so a new
# hashing key can be applied to existing rows, and a job working from stored rows can name
# the person. Writes store `resident_key`; look-ups match every valid hash (`resident_keys`),
# so rows not yet re-hashed after a key rotation are still found.
PERSONS_ID = resident_id_column("persons")
APPLICANT = resident_id_column("applications")
HISTORY_OF = resident_id_column("history")  # a person, or the employer of an employer's case
PAYER = resident_id_column("payments")
# A case's subject: the person, or the employer code of a civil-servant case.
CASE_SUBJECT = resident_id_column("cases", "subject_ref", "subject_key")
FILER = resident_id_column("filings")
PATIENT = resident_id_column("chronic_recognitions")
AID_HOLDER = resident_id_column("family_aid")
AID_RELATIVE = resident_id_column("family_aid", "relative_ref", "relative_key")
SCHEDULED_FOR = resident_id_column("scheduled_changes")
COVERED = resident_id_column("coverage_periods")
CREDITED = resident_id_column("transfer_credits")
WAITING_FOR = resident_id_column("awaiting_policy")
DECISION_FOR = resident_id_column("awaiting_application")
REFUSED = resident_id_column("refused_requests")
RESIDENT_IDS = (PERSONS_ID, APPLICANT, HISTORY_OF, PAYER, CASE_SUBJECT, FILER, PATIENT,
                AID_HOLDER, AID_RELATIVE, SCHEDULED_FOR, COVERED, CREDITED, WAITING_FOR,
                DECISION_FOR, REFUSED)

# Health and contact data sealed at rest (shared/db/sealed.py), each bound to its row (the
# person's sealed ID opens to the ID the values were first bound to, so they still open).
NAME = Sealed("persons", "name", (PERSONS_ID,))
MOBILE = Sealed("persons", "mobile", (PERSONS_ID,))
EMAIL = Sealed("persons", "email", (PERSONS_ID,))
# Who has which chronic disease: the disease is sealed and found by its own keyed hash.
DISEASE = Sealed("chronic_recognitions", "disease", (PATIENT,), hash_column="disease_key")
# A case's data is the applicant's submission: disease, certificate, relatives' details.
CASE_DATA = Sealed("cases", "data", ("case_id",), shape="json")
FILING_DISEASES = Sealed("filings", "detail", ("filing_id",), shape="json:chronic_diseases")
# An event kept until its policy is published carries whatever the sender sent.
WAITING_EVENT = Sealed("awaiting_policy", "envelope", ("event_id",), shape="bytes")
# A refusal's staff text can quote the disease or a relative's details.
REFUSAL = Sealed("refused_requests", "reason", (REFUSED, "reference", "cause_id"))
EARLY_DECISION = Sealed("awaiting_application", "envelope", ("event_id",), shape="bytes")
# The IDs first: a value bound to its row's ID is sealed after that ID is.
SEALED = (*RESIDENT_IDS, NAME, MOBILE, EMAIL, DISEASE, CASE_DATA, FILING_DISEASES,
          WAITING_EVENT, REFUSAL, EARLY_DECISION)

# A history row about the person as a whole (a status or coverage change) names no ID as
# its reference; the status view shows the person's ID there again.
ABOUT_PERSON = "(person)"


def _key_or_none(person_id: str | None) -> str | None:
    return None if person_id is None else resident_key(person_id)


async def load_person(conn: asyncpg.Connection, person_id: str) -> Person | None:
    row = await conn.fetchrow("SELECT * FROM persons WHERE person_key = ANY($1::text[])"
                              " FOR UPDATE", resident_keys(person_id))
    if row is None:
        return None
    pid = person_id
    return Person(pid, str(NAME.open(row["name"], pid)), str(MOBILE.open(row["mobile"], pid)),
                  EMAIL.open(row["email"], pid), row["insurance_type"],
                  InsuredStatus(row["status"]), row["paid_until"], row["employer_code"],
                  row["retired"])


async def save_person(conn: asyncpg.Connection, p: Person) -> None:
    # The row found by any valid hash is updated (it may still carry an older key's hash
    # during a rotation); only a person with no row gets one, under the current hash.
    await conn.execute(
        "WITH found AS (UPDATE persons SET name = $3, mobile = $4, email = $5,"
        " insurance_type = $6, status = $7, paid_until = $8, employer_code = $9,"
        " retired = $10, updated_at = now() WHERE person_key = ANY($1::text[]) RETURNING 1)"
        " INSERT INTO persons (person_ref, person_key, name, mobile, email, insurance_type,"
        " status, paid_until, employer_code, retired)"
        " SELECT $2, $11, $3, $4, $5, $6, $7, $8, $9, $10 WHERE NOT EXISTS (SELECT 1 FROM found)"
        " ON CONFLICT (person_key) DO UPDATE SET name = $3, mobile = $4, email = $5,"
        " insurance_type = $6, status = $7, paid_until = $8, employer_code = $9, retired = $10,"
        " updated_at = now()",
        resident_keys(p.person_id), PERSONS_ID.seal(p.person_id),
        NAME.seal(p.name, p.person_id), MOBILE.seal(p.mobile, p.person_id),
        EMAIL.seal(p.email, p.person_id), p.insurance_type, p.status.value, p.paid_until,
        p.employer_code, p.retired, resident_key(p.person_id),
    )


def _application(row: asyncpg.Record | None, person_id: str | None = None) -> Application | None:
    if row is None:
        return None
    pid = person_id if person_id is not None else str(APPLICANT.open(row["person_ref"]))
    return Application(row["application_id"], pid, row["insurance_type"],
                       row["channel"], ApplicationState(row["state"]), json.loads(row["reasons"]),
                       row["channel_ref"])


async def load_application(conn: asyncpg.Connection, application_id: str) -> Application | None:
    # Looked up by its own id: the applicant's ID is opened to say whose it is.
    return _application(await conn.fetchrow(
        "SELECT * FROM applications WHERE application_id = $1 FOR UPDATE", application_id))


async def application_for(conn: asyncpg.Connection, reference: str,
                          person_id: str) -> Application | None:
    """The application a message under `reference` about the person names: the person's own
    under that number (its id, or the channel's number it was sent under), else the one with
    that id (another person's, which the rules refuse or tell apart)."""
    return _application(await conn.fetchrow(
        "SELECT * FROM applications WHERE application_id = $1"
        " OR (channel_ref = $1 AND person_key = ANY($2::text[]))"
        " ORDER BY person_key = ANY($2::text[]) DESC, application_id = $1 DESC LIMIT 1"
        " FOR UPDATE", reference, resident_keys(person_id)))


async def latest_application(conn: asyncpg.Connection, person_id: str) -> Application | None:
    return _application(await conn.fetchrow(
        "SELECT * FROM applications WHERE person_key = ANY($1::text[])"
        " ORDER BY created_at DESC LIMIT 1", resident_keys(person_id)), person_id)


async def save_application(conn: asyncpg.Connection, a: Application) -> None:
    await conn.execute(
        "INSERT INTO applications (application_id, person_ref, person_key, insurance_type,"
        " channel, state, reasons, channel_ref) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (application_id) DO UPDATE SET state = $6, reasons = $7,"
        " updated_at = now()",
        a.application_id, APPLICANT.seal(a.person_id), resident_key(a.person_id),
        a.insurance_type, a.channel, a.state.value, json.dumps(a.reasons, ensure_ascii=False),
        a.channel_ref,
    )


async def record_history(conn: asyncpg.Connection, person_id: str, reference: str, what: str,
                         detail: dict[str, Any], cause_id: str, cause_type: str) -> None:
    # A row about the person as a whole names the person as its reference: kept as the marker.
    await conn.execute(
        "INSERT INTO history (person_ref, person_key, reference, what, detail, cause_id,"
        " cause_type) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        HISTORY_OF.seal(person_id), resident_key(person_id),
        ABOUT_PERSON if reference == person_id else reference, what,
        json.dumps(detail, ensure_ascii=False, default=str), cause_id, cause_type,
    )


async def payment_exists(conn: asyncpg.Connection, payment_ref: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM payments WHERE payment_ref = $1", payment_ref))


async def save_payment(conn: asyncpg.Connection, ref: str, person_id: str,
                       application_id: str | None, period: tuple[Any, Any], amount_fen: int,
                       state: str, reason: str | None) -> None:
    await conn.execute(
        "INSERT INTO payments (payment_ref, person_ref, person_key, application_id,"
        " period_start, period_end, amount_fen, state, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        ref, PAYER.seal(person_id), resident_key(person_id), application_id, period[0],
        period[1], amount_fen, state, reason,
    )


async def parked_payments(conn: asyncpg.Connection, person_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM payments WHERE person_key = ANY($1::text[])"
                            " AND state = 'parked' ORDER BY recorded_at FOR UPDATE",
                            resident_keys(person_id))


async def mark_payment_applied(conn: asyncpg.Connection, payment_ref: str) -> None:
    await conn.execute("UPDATE payments SET state = 'applied', reason = NULL"
                       " WHERE payment_ref = $1", payment_ref)


async def save_employer(conn: asyncpg.Connection, code: str, name: str, email: str) -> bool:
    return (await conn.fetchval(
        "INSERT INTO employers (employer_code, name, contact_email) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING 1", code, name, email)) is not None


async def employer_exists(conn: asyncpg.Connection, code: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM employers WHERE employer_code = $1", code))


async def set_civil_servant_benefit(conn: asyncpg.Connection, code: str) -> None:
    await conn.execute("UPDATE employers SET civil_servant_benefit = true"
                       " WHERE employer_code = $1", code)


def _case(row: asyncpg.Record | None) -> dict[str, Any] | None:
    """A case row, its data opened (JSON text, as the column gives it) and its subject too."""
    if row is None:
        return None
    data = CASE_DATA.open_json(row["data"], row["case_id"])
    return ({k: v for k, v in row.items() if k not in ("subject_ref", "subject_key")}
            | {"subject": CASE_SUBJECT.open(row["subject_ref"]),
               "data": json.dumps(data, ensure_ascii=False)})


async def load_case(conn: asyncpg.Connection, case_id: str) -> dict[str, Any] | None:
    """The case by its own id."""
    return _case(await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1 FOR UPDATE",
                                     case_id))


async def case_for(conn: asyncpg.Connection, reference: str,
                   subject: str) -> dict[str, Any] | None:
    """The case a decision under `reference` about `subject` names: the subject's own case
    under that number (its id, or the channel's number it was sent under), else the case
    with that id (a decision about someone else's case, which the review rules refuse)."""
    return _case(await conn.fetchrow(
        "SELECT * FROM cases WHERE case_id = $1 OR channel_ref = $1"
        " ORDER BY subject_key = ANY($2::text[]) DESC, case_id = $1 DESC LIMIT 1 FOR UPDATE",
        reference, resident_keys(subject)))




async def _holder(conn: asyncpg.Connection, table: str, id_column: str, key_column: str,
                  reference: str, subject: str) -> str | None:
    row = await conn.fetchrow(
        f"SELECT coalesce(bool_or({key_column} = ANY($2::text[])), false) AS mine,"
        f" coalesce(bool_or({id_column} = $1), false) AS taken FROM {table}"
        f" WHERE {id_column} = $1 OR channel_ref = $1", reference, resident_keys(subject))
    return MINE if row["mine"] else OTHERS if row["taken"] else None


async def case_holder(conn: asyncpg.Connection, reference: str, subject: str) -> str | None:
    """MINE: the subject already has a case under this reference (the same request again);
    OTHERS: another subject's case has it as its id (this one needs an id of its own)."""
    return await _holder(conn, "cases", "case_id", "subject_key", reference, subject)


async def filing_holder(conn: asyncpg.Connection, reference: str, person: str) -> str | None:
    """As `case_holder`, for filings."""
    return await _holder(conn, "filings", "filing_id", "person_key", reference, person)


async def save_case(conn: asyncpg.Connection, case_id: str, kind: str, subject: str, state: str,
                    data: dict[str, Any], reasons: list[str],
                    channel_ref: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO cases (case_id, kind, subject_ref, subject_key, state, data, reasons,"
        " channel_ref) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (case_id) DO UPDATE"
        " SET state = $5, reasons = $7, updated_at = now()", case_id, kind,
        CASE_SUBJECT.seal(subject), resident_key(subject), state,
        CASE_DATA.seal_json(data, case_id), json.dumps(reasons, ensure_ascii=False),
        channel_ref)


async def filing_exists(conn: asyncpg.Connection, filing_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM filings WHERE filing_id = $1", filing_id))


async def save_filing(conn: asyncpg.Connection, f: Filing, category: str,
                      detail: dict[str, Any] | None = None,
                      channel_ref: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO filings (filing_id, person_ref, person_key, category, kind, source,"
        " treatment_area, start_date, end_date, detail, state, channel_ref)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (filing_id) DO UPDATE SET state = $11, end_date = $9, updated_at = now()",
        f.filing_id, FILER.seal(f.person_id), resident_key(f.person_id), category, f.kind,
        f.source, f.treatment_area, f.start_date, f.end_date,
        json.dumps(_sealed_detail(detail or {"chronic_diseases": f.chronic_diseases},
                                  f.filing_id), ensure_ascii=False, default=str),
        f.state, channel_ref)


def _sealed_detail(detail: dict[str, Any], filing_id: str) -> dict[str, Any]:
    if "chronic_diseases" not in detail:
        return detail
    diseases = json.dumps(detail["chronic_diseases"], ensure_ascii=False)
    return detail | {"chronic_diseases": FILING_DISEASES.seal(diseases, filing_id)}


def _opened_diseases(detail: str, filing_id: str) -> list[str]:
    value = json.loads(detail).get("chronic_diseases", [])
    opened = FILING_DISEASES.open(value, filing_id) if isinstance(value, str) else value
    return json.loads(opened) if isinstance(opened, str) else list(opened or [])


async def open_filings(conn: asyncpg.Connection, person_id: str,
                       filing_id: str | None = None) -> list[Filing]:
    rows = await conn.fetch(
        "SELECT * FROM filings WHERE person_key = ANY($1::text[]) AND state = 'active'"
        " AND category = 'remote' AND ($2::text IS NULL OR filing_id = $2 OR channel_ref = $2)"
        " ORDER BY created_at", resident_keys(person_id), filing_id)
    return [Filing(r["filing_id"], person_id, r["kind"], r["source"], r["treatment_area"],
                   r["start_date"], r["end_date"],
                   _opened_diseases(r["detail"], r["filing_id"]), r["state"])
            for r in rows]


async def recognition(conn: asyncpg.Connection, person_id: str, disease: str) -> str | None:
    # The disease is sealed: its keyed hash (under every valid hash key) finds the row.
    return await conn.fetchval("SELECT institution_code FROM chronic_recognitions"
                               " WHERE person_key = ANY($1::text[])"
                               " AND disease_key = ANY($2::text[])",
                               resident_keys(person_id), DISEASE.digests(disease, person_id))


async def save_recognition(conn: asyncpg.Connection, person_id: str, disease: str,
                           institution: str, effective_from: Any, automatic: bool) -> None:
    # Update by any valid hash, else insert: an ON CONFLICT on the hash would miss a row
    # still hashed under an older key. Handlers hold the person's row, so no race.
    updated = await conn.execute(
        "UPDATE chronic_recognitions SET institution_code = $3, effective_from = $4,"
        " updated_at = now() WHERE person_key = ANY($1::text[])"
        " AND disease_key = ANY($2::text[])",
        resident_keys(person_id), DISEASE.digests(disease, person_id), institution,
        effective_from)
    if updated != "UPDATE 0":
        return
    await conn.execute(
        "INSERT INTO chronic_recognitions (person_ref, person_key, disease, disease_key,"
        " institution_code, effective_from, without_application)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        PATIENT.seal(person_id), resident_key(person_id), DISEASE.seal(disease, person_id),
        DISEASE.digest(disease, person_id), institution, effective_from, automatic)


async def end_recognitions(conn: asyncpg.Connection, person_id: str, on: Any) -> list[str]:
    rows = await conn.fetch(
        "UPDATE chronic_recognitions SET ended_on = $2, updated_at = now()"
        " WHERE person_key = ANY($1::text[]) AND ended_on IS NULL RETURNING disease",
        resident_keys(person_id), on)
    return [str(DISEASE.open(r["disease"], person_id)) for r in rows]


async def save_family_aid(conn: asyncpg.Connection, auth_id: str, person_id: str,
                          relative_id: str, relationship: str, state: str) -> None:
    await conn.execute(
        "INSERT INTO family_aid (authorisation_id, person_ref, person_key, relative_ref,"
        " relative_key, relationship, state) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (authorisation_id) DO UPDATE SET state = $7, updated_at = now()",
        auth_id, AID_HOLDER.seal(person_id), resident_key(person_id),
        AID_RELATIVE.seal(relative_id), resident_key(relative_id), relationship, state)


async def active_family_aid(conn: asyncpg.Connection, person_id: str) -> list[str]:
    """Active authorisations the person granted or was granted."""
    return [r["authorisation_id"] for r in await conn.fetch(
        "SELECT authorisation_id FROM family_aid WHERE state = 'active'"
        " AND (person_key = ANY($1::text[]) OR relative_key = ANY($1::text[]))",
        resident_keys(person_id))]


async def held_family_aid(conn: asyncpg.Connection, holder_id: str) -> list[str]:
    """Active authorisations the person granted as account holder."""
    return [r["authorisation_id"] for r in await conn.fetch(
        "SELECT authorisation_id FROM family_aid WHERE state = 'active'"
        " AND person_key = ANY($1::text[])", resident_keys(holder_id))]


async def end_family_aid(conn: asyncpg.Connection, ids: list[str]) -> None:
    await conn.execute("UPDATE family_aid SET state = 'ended', updated_at = now()"
                       " WHERE authorisation_id = ANY($1)", ids)


async def holds_family_aid(conn: asyncpg.Connection, auth_id: str, holder_id: str) -> bool:
    """The authorisation is active and was granted by this person."""
    return bool(await conn.fetchval(
        "SELECT 1 FROM family_aid WHERE authorisation_id = $1 AND state = 'active'"
        " AND person_key = ANY($2::text[])", auth_id, resident_keys(holder_id)))


async def schedule_change(conn: asyncpg.Connection, person_id: str, to_status: str,
                          effective_on: Any, cause_id: str, correlation_id: str) -> None:
    await conn.execute(
        "INSERT INTO scheduled_changes (person_ref, person_key, to_status, effective_on,"
        " cause_id, correlation_id) VALUES ($1, $2, $3, $4, $5, $6)",
        SCHEDULED_FOR.seal(person_id), resident_key(person_id), to_status, effective_on,
        cause_id, correlation_id)


async def due_changes(conn: asyncpg.Connection, today: Any, limit: int) -> list[dict[str, Any]]:
    """Changes due by `today`, each naming its person (opened: the job emits about them)."""
    rows = await conn.fetch(
        "SELECT * FROM scheduled_changes WHERE applied_at IS NULL AND effective_on <= $1"
        " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", today, limit)
    return [dict(r) | {"person_id": SCHEDULED_FOR.open(r["person_ref"])} for r in rows]


async def mark_applied(conn: asyncpg.Connection, change_id: int) -> None:
    await conn.execute("UPDATE scheduled_changes SET applied_at = now() WHERE id = $1", change_id)


async def load_periods(conn: asyncpg.Connection, person_id: str) -> list[Period]:
    rows = await conn.fetch("SELECT * FROM coverage_periods WHERE person_key = ANY($1::text[])"
                            " ORDER BY seq", resident_keys(person_id))
    return [Period(r["insurance_type"], r["start_date"], r["end_date"], r["source"],
                   r["reference"]) for r in rows]


async def save_periods(conn: asyncpg.Connection, person_id: str, periods: list[Period]) -> None:
    """Replace the person's periods, oldest first (all under the current hash)."""
    await conn.execute("DELETE FROM coverage_periods WHERE person_key = ANY($1::text[])",
                       resident_keys(person_id))
    ordered = sorted(periods, key=lambda p: (p.start, p.reference))
    key = resident_key(person_id)
    await conn.executemany(
        "INSERT INTO coverage_periods (person_ref, person_key, seq, insurance_type, start_date,"
        " end_date, source, reference) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(COVERED.seal(person_id), key, i, p.insurance_type, p.start, p.end, p.source,
          p.reference) for i, p in enumerate(ordered)])


async def lapse_candidates(conn: asyncpg.Connection, today: Any, grace_days: int,
                           limit: int) -> list[str]:
    """Active people with coverage before, but none on, the day the grace period began.

    A pre-filter joined on the hash: during a key rotation a person's rows can carry two
    hashes and be missed until re-hashed, or be a candidate wrongly; the caller decides each
    on the periods found by every valid hash, so a wrong candidate changes nothing."""
    rows = await conn.fetch(
        "SELECT p.person_ref FROM persons p WHERE p.status = 'active'"
        " AND EXISTS (SELECT 1 FROM coverage_periods c WHERE c.person_key = p.person_key)"
        " AND NOT EXISTS (SELECT 1 FROM coverage_periods c WHERE c.person_key = p.person_key"
        "   AND c.start_date <= $1 AND (c.end_date IS NULL OR c.end_date >= $1 - $2::int))"
        " LIMIT $3", today, grace_days, limit)
    return [str(PERSONS_ID.open(r["person_ref"])) for r in rows]


async def save_transfer_credit(conn: asyncpg.Connection, transfer_id: str, person_id: str,
                               from_region: str, insurance_type: str | None, months: int,
                               balance_fen: int, accepted_on: Any, mode: str) -> bool:
    return (await conn.fetchval(
        "INSERT INTO transfer_credits (transfer_id, person_ref, person_key, from_region,"
        " insurance_type, credited_months, credited_balance_fen, accepted_on, mode)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1",
        transfer_id, CREDITED.seal(person_id), resident_key(person_id), from_region,
        insurance_type, months, balance_fen, accepted_on, mode)) is not None


async def schedule_institution_change(conn: asyncpg.Connection, person_id: str, disease: str,
                                      institution: str, effective_from: Any) -> None:
    """The current institution stays designated until `effective_from`."""
    await conn.execute(
        "UPDATE chronic_recognitions SET next_institution_code = $3, next_from = $4,"
        " updated_at = now() WHERE person_key = ANY($1::text[])"
        " AND disease_key = ANY($2::text[])",
        resident_keys(person_id), DISEASE.digests(disease, person_id), institution,
        effective_from)


async def apply_due_institution_changes(conn: asyncpg.Connection, today: Any) -> int:
    """Deferred institution changes whose day has come replace the current institution."""
    result = await conn.execute(
        "UPDATE chronic_recognitions SET institution_code = next_institution_code,"
        " effective_from = next_from, next_institution_code = NULL, next_from = NULL,"
        " updated_at = now() WHERE next_from IS NOT NULL AND next_from <= $1"
        " AND ended_on IS NULL", today)
    return int(result.split()[-1])


async def provisional_accident_filings(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Each naming its person (opened: the job records history about them)."""
    rows = await conn.fetch(
        "SELECT filing_id, person_ref, start_date, detail FROM filings WHERE category ="
        " 'accident' AND (detail->>'deadline_provisional')::boolean AND detail ? 'limit'"
        " FOR UPDATE SKIP LOCKED")
    return [{"filing_id": r["filing_id"], "person_id": FILER.open(r["person_ref"]),
             "start_date": r["start_date"], "detail": json.loads(r["detail"])} for r in rows]


async def set_filing_detail(conn: asyncpg.Connection, filing_id: str,
                            detail: dict[str, Any]) -> None:
    await conn.execute("UPDATE filings SET detail = $2, updated_at = now() WHERE filing_id = $1",
                       filing_id, json.dumps(detail, ensure_ascii=False, default=str))


async def save_awaiting_policy(conn: asyncpg.Connection, event_id: str, event_type: str,
                               person_id: str | None, reference: str, envelope: bytes,
                               received_at: Any, fact_date: Any, reason: str) -> None:
    await conn.execute(
        "INSERT INTO awaiting_policy (event_id, event_type, person_ref, person_key, reference,"
        " envelope, received_at, fact_date, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (event_id) DO UPDATE SET reason = $9, resumed_at = NULL",
        event_id, event_type, WAITING_FOR.seal(person_id), _key_or_none(person_id), reference,
        WAITING_EVENT.seal_bytes(envelope, event_id), received_at, fact_date, reason)


async def awaiting_policy(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM awaiting_policy WHERE resumed_at IS NULL"
                            " ORDER BY waiting_since LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
    return [dict(r) | {"envelope": WAITING_EVENT.open_bytes(r["envelope"], r["event_id"])}
            for r in rows]


async def mark_resumed(conn: asyncpg.Connection, event_id: str) -> None:
    await conn.execute("UPDATE awaiting_policy SET resumed_at = now() WHERE event_id = $1",
                       event_id)


async def save_early_decision(conn: asyncpg.Connection, event_id: str, event_type: str,
                              application_id: str, person_id: str | None, envelope: bytes,
                              received_at: Any, signed_by: str | None,
                              actor: str | None) -> bool:
    """False when this decision already waited once (its application came and was refused)."""
    inserted = await conn.fetchval(
        "INSERT INTO awaiting_application (event_id, event_type, application_id, person_ref,"
        " person_key, envelope, received_at, signed_by, actor)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING true", event_id, event_type,
        application_id, DECISION_FOR.seal(person_id), _key_or_none(person_id),
        EARLY_DECISION.seal_bytes(envelope, event_id), received_at, signed_by, actor)
    return bool(inserted)


async def take_early_decisions(conn: asyncpg.Connection, application_id: str,
                               person_id: str | None) -> list[dict[str, Any]]:
    """The decisions waiting for this person's application under this number (numbers are
    the person's: another person's decision under it keeps waiting for theirs) and those
    naming no person, marked resumed in the same transaction."""
    rows = await conn.fetch(
        "UPDATE awaiting_application SET resumed_at = now() WHERE application_id = $1"
        " AND resumed_at IS NULL AND (person_key IS NULL OR person_key = ANY($2::text[]))"
        " RETURNING *", application_id, resident_keys(person_id) if person_id else [])
    return [dict(r) | {"envelope": EARLY_DECISION.open_bytes(r["envelope"], r["event_id"])}
            for r in sorted(rows, key=lambda r: r["waiting_since"])]


async def record_refusal(conn: asyncpg.Connection, person_id: str, reference: str,
                         request_type: str, rule: str, reason: str, cause_id: str) -> None:
    await conn.execute(
        "INSERT INTO refused_requests (person_ref, person_key, reference, request_type, rule,"
        " reason, cause_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        REFUSED.seal(person_id), resident_key(person_id), reference, request_type, rule,
        REFUSAL.seal(reason, person_id, reference, cause_id), cause_id)


async def status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    """A person's (or an application's person's) status, applications, payments and history."""
    if conn.is_in_transaction():
        return await _status_of(conn, ref)
    # One snapshot: a change committed between two of the reads (a status and the family aid
    # it ended) would otherwise show half done.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _status_of(conn, ref)


async def _status_of(conn: asyncpg.Connection, ref: str) -> dict[str, Any] | None:
    person_id = ref
    person = await conn.fetchrow("SELECT * FROM persons WHERE person_key = ANY($1::text[])",
                                 resident_keys(ref))
    if person is None:
        applicant = await conn.fetchval(
            "SELECT person_ref FROM applications WHERE application_id = $1", ref)
        if applicant is None:
            return None
        person_id = str(APPLICANT.open(applicant))
        person = await conn.fetchrow("SELECT * FROM persons WHERE person_key = ANY($1::text[])",
                                     resident_keys(person_id))
    keys = resident_keys(person_id)
    shown: dict[str, Any] = {"person_id": person_id}
    if person is not None:
        shown |= ({k: v for k, v in person.items() if k not in ("person_ref", "person_key")}
                  | {c.column: c.open(person[c.column], person_id)
                     for c in (NAME, MOBILE, EMAIL)})
    apps = await conn.fetch("SELECT application_id, channel_ref, insurance_type, channel,"
                            " state, reasons, updated_at FROM applications"
                            " WHERE person_key = ANY($1::text[])"
                            " ORDER BY created_at", keys)
    payments = await conn.fetch("SELECT payment_ref, period_start, period_end, amount_fen, state,"
                                " reason FROM payments WHERE person_key = ANY($1::text[])"
                                " ORDER BY recorded_at", keys)
    history = await conn.fetch("SELECT recorded_at, reference, what, detail, cause_type"
                               " FROM history WHERE person_key = ANY($1::text[]) ORDER BY id",
                               keys)
    filings = await conn.fetch("SELECT filing_id, channel_ref, category, kind, source,"
                               " treatment_area, start_date, end_date, state FROM filings"
                               " WHERE person_key = ANY($1::text[]) ORDER BY created_at", keys)
    chronic = await conn.fetch("SELECT disease, institution_code, effective_from,"
                               " next_institution_code, next_from, without_application,"
                               " ended_on FROM chronic_recognitions"
                               " WHERE person_key = ANY($1::text[])", keys)
    periods = await conn.fetch("SELECT insurance_type, start_date, end_date, source, reference"
                               " FROM coverage_periods WHERE person_key = ANY($1::text[])"
                               " ORDER BY seq", keys)
    credits = await conn.fetch("SELECT transfer_id, from_region, insurance_type,"
                               " credited_months, credited_balance_fen, accepted_on, mode"
                               " FROM transfer_credits WHERE person_key = ANY($1::text[])"
                               " ORDER BY accepted_on", keys)
    aid = await conn.fetch("SELECT authorisation_id, relative_ref, relationship, state"
                           " FROM family_aid WHERE person_key = ANY($1::text[])", keys)
    waiting = await conn.fetch("SELECT reference, event_type, fact_date, reason, waiting_since,"
                               " resumed_at FROM awaiting_policy"
                               " WHERE person_key = ANY($1::text[]) ORDER BY waiting_since",
                               keys)
    scheduled = await conn.fetch("SELECT to_status, effective_on, applied_at FROM"
                                 " scheduled_changes WHERE person_key = ANY($1::text[])"
                                 " ORDER BY id", keys)
    return {
        "coverage": [dict(c) for c in periods],
        "awaiting_policy": [dict(w) for w in waiting],
        "transfer_credits": [dict(c) for c in credits],
        "filings": [dict(f) for f in filings],
        "chronic_diseases": [dict(c) | {"disease": DISEASE.open(c["disease"], person_id)}
                             for c in chronic],
        "family_aid": [{"authorisation_id": a["authorisation_id"],
                        "relative_id": AID_RELATIVE.open(a["relative_ref"]),
                        "relationship": a["relationship"], "state": a["state"]} for a in aid],
        "scheduled": [dict(c) for c in scheduled],
        "person": shown,
        "applications": [dict(a) | {"reasons": json.loads(a["reasons"])} for a in apps],
        "payments": [dict(p) for p in payments],
        "history": [dict(h) | {"reference": person_id if h["reference"] == ABOUT_PERSON
                               else h["reference"], "detail": json.loads(h["detail"])}
                    for h in history],
    }


# --- set-based: a batch's rows loaded with one query per table, written with one statement ---
# The caller maps each row to its person by the row's hash (`owner`: every valid hash of the
# batch's IDs -> the ID), so no sealed ID is opened for a person the batch names.

class BatchIds:
    """A batch's resident IDs as its rows store them: each ID's hash under the current key,
    and its sealed copy per column, computed once per batch. A resident-ID column's seal is
    bound to no row (the hash already shows which rows are the same person's), so one sealed
    copy serves every row of that table about the person."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._refs: dict[tuple[str, str], str] = {}

    def key(self, person_id: str) -> str:
        found = self._keys.get(person_id)
        if found is None:
            found = self._keys[person_id] = resident_key(person_id)
        return found

    def ref(self, column: Sealed, person_id: str) -> str:
        found = self._refs.get((column.name, person_id))
        if found is None:
            found = self._refs[(column.name, person_id)] = str(column.seal(person_id))
        return found


def _kept_or_sealed(column: Sealed, value: str | None, before: str | None, stored: Any,
                    person_id: str) -> str | None:
    """The stored sealed value when the plaintext did not change and it is sealed under the
    current key (as a new seal would be); else the value sealed anew."""
    if (value is not None and value == before and isinstance(stored, str)
            and stored.startswith(PREFIX)
            and data_keys().key_of(stored) == data_keys().current_seal.key_id):
        return stored
    return column.seal(value, person_id)


def person_of(row: asyncpg.Record, owner: dict[str, str]) -> Person:
    pid = owner[row["person_key"]]
    return Person(pid, str(NAME.open(row["name"], pid)), str(MOBILE.open(row["mobile"], pid)),
                  EMAIL.open(row["email"], pid), row["insurance_type"],
                  InsuredStatus(row["status"]), row["paid_until"], row["employer_code"],
                  row["retired"])


async def load_persons_of(conn: asyncpg.Connection, keys: list[str]) -> list[asyncpg.Record]:
    """The persons' rows found by any of `keys` (every valid hash of each ID), locked (in
    the order of their hashes, so two batches lock shared rows alike)."""
    return await conn.fetch("SELECT * FROM persons WHERE person_key = ANY($1::text[])"
                            " ORDER BY person_key FOR UPDATE", keys)


StoredPerson = tuple[Person, Mapping[str, Any]] | None


async def save_persons(conn: asyncpg.Connection, ids: BatchIds,
                       persons: list[tuple[Person, StoredPerson]]) -> None:
    """Each person with their row as loaded and opened (None: no row yet). A found row is
    updated where it is (it may carry an older key's hash); a new one is inserted under the
    current hash, onto a row another worker made meanwhile if there is one."""
    if not persons:
        return
    cols: list[list[Any]] = [[] for _ in range(11)]
    for p, stored in persons:
        pid = p.person_id
        before, row = stored if stored is not None else (None, None)
        for col, value in zip(cols, (
                None if row is None else row["person_key"],
                ids.key(pid) if row is None else None,
                ids.ref(PERSONS_ID, pid) if row is None else None,
                *(_kept_or_sealed(c, getattr(p, c.column), getattr(before, c.column, None),
                                  None if row is None else row[c.column], pid)
                  for c in (NAME, MOBILE, EMAIL)),
                p.insurance_type, p.status.value, p.paid_until, p.employer_code, p.retired),
                strict=True):
            col.append(value)
    await conn.execute(
        "WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
        " $5::text[], $6::text[], $7::text[], $8::text[], $9::date[], $10::text[],"
        " $11::bool[]) AS d(found, key, ref, name, mobile, email, itype, status, paid_until,"
        " employer, retired)),"
        " upd AS (UPDATE persons p SET name = d.name, mobile = d.mobile, email = d.email,"
        " insurance_type = d.itype, status = d.status, paid_until = d.paid_until,"
        " employer_code = d.employer, retired = d.retired, updated_at = now() FROM d"
        " WHERE d.found IS NOT NULL AND p.person_key = d.found RETURNING 1)"
        " INSERT INTO persons (person_ref, person_key, name, mobile, email, insurance_type,"
        " status, paid_until, employer_code, retired)"
        " SELECT ref, key, name, mobile, email, itype, status, paid_until, employer, retired"
        " FROM d WHERE found IS NULL"
        " ON CONFLICT (person_key) DO UPDATE SET name = EXCLUDED.name,"
        " mobile = EXCLUDED.mobile, email = EXCLUDED.email,"
        " insurance_type = EXCLUDED.insurance_type, status = EXCLUDED.status,"
        " paid_until = EXCLUDED.paid_until, employer_code = EXCLUDED.employer_code,"
        " retired = EXCLUDED.retired, updated_at = now()", *cols)


def application_of(row: asyncpg.Record, owner: dict[str, str]) -> Application:
    """An application row; its applicant's sealed ID is opened only for a person the batch
    does not name."""
    pid = owner.get(row["person_key"])
    return _application(row, pid)  # type: ignore[return-value]


async def load_applications_of(conn: asyncpg.Connection, application_ids: list[str],
                               keys: list[str]) -> list[asyncpg.Record]:
    """Applications by id and every application of the persons hashed as `keys`, locked,
    oldest first (a person's latest is their last)."""
    # Each lookup on its own, then the rows by id: with the two `= ANY` joined by OR the
    # planner scanned the table comparing each row with every element (232 ms a batch at
    # 10,000 rows and growing); alone, each is an index scan or a hashed filter.
    return await conn.fetch(
        "SELECT * FROM applications WHERE application_id IN ("
        " SELECT application_id FROM applications WHERE application_id = ANY($1::text[])"
        " UNION ALL SELECT application_id FROM applications WHERE person_key = ANY($2::text[]))"
        " ORDER BY created_at FOR UPDATE", application_ids, keys)


async def save_applications(conn: asyncpg.Connection, ids: BatchIds,
                            applications: list[tuple[Application, bool]]) -> None:
    """Each application with whether its row exists: existing ones take their new state and
    reasons, new ones are inserted (an application id is inserted once)."""
    if not applications:
        return
    cols: list[list[Any]] = [[] for _ in range(8)]
    for a, stored in applications:
        for col, value in zip(cols, (
                a.application_id, None if stored else ids.ref(APPLICANT, a.person_id),
                None if stored else ids.key(a.person_id), a.insurance_type, a.channel,
                a.state.value, json.dumps(a.reasons, ensure_ascii=False), a.channel_ref),
                strict=True):
            col.append(value)
    await conn.execute(
        "WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
        " $5::text[], $6::text[], $7::text[], $8::text[]) AS d(id, ref, key, itype, channel,"
        " state, reasons, channel_ref)),"
        " upd AS (UPDATE applications a SET state = d.state, reasons = d.reasons::jsonb,"
        " updated_at = now() FROM d WHERE d.ref IS NULL AND a.application_id = d.id"
        " RETURNING 1)"
        " INSERT INTO applications (application_id, person_ref, person_key, insurance_type,"
        " channel, state, reasons, channel_ref)"
        " SELECT id, ref, key, itype, channel, state, reasons::jsonb, channel_ref FROM d"
        " WHERE ref IS NOT NULL"
        " ON CONFLICT (application_id) DO UPDATE SET state = EXCLUDED.state,"
        " reasons = EXCLUDED.reasons, updated_at = now()", *cols)


HistoryRow = tuple[str, str, str, dict[str, Any], str, str]


async def record_histories(conn: asyncpg.Connection, ids: BatchIds,
                           rows: list[HistoryRow]) -> None:
    """History rows (person, reference, what, detail, cause id, cause type), in order."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO history (person_ref, person_key, reference, what, detail, cause_id,"
        " cause_type) SELECT r, k, ref, w, d::jsonb, c, t FROM unnest($1::text[],"
        " $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
        " WITH ORDINALITY AS u(r, k, ref, w, d, c, t, n) ORDER BY n",
        [ids.ref(HISTORY_OF, r[0]) for r in rows], [ids.key(r[0]) for r in rows],
        [ABOUT_PERSON if r[1] == r[0] else r[1] for r in rows], [r[2] for r in rows],
        [json.dumps(r[3], ensure_ascii=False, default=str) for r in rows],
        [r[4] for r in rows], [r[5] for r in rows])


RefusalRow = tuple[str, str, str, str, str, str]


async def record_refusals(conn: asyncpg.Connection, ids: BatchIds,
                          rows: list[RefusalRow]) -> None:
    """Refusals (person, reference, request type, rule, reason, cause id), in order."""
    await insert_refused_requests(
        conn, [ids.ref(REFUSED, r[0]) for r in rows], [ids.key(r[0]) for r in rows],
        [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
        [REFUSAL.seal(r[4], r[0], r[1], r[5]) for r in rows], [r[5] for r in rows])


async def load_payments_of(conn: asyncpg.Connection, payment_refs: list[str],
                           parked_keys: list[str]) -> list[asyncpg.Record]:
    """Payments by reference, and the parked payments of the persons hashed as
    `parked_keys`, oldest first, locked."""
    # Two lookups, not an OR of them (see load_applications_of).
    return await conn.fetch(
        "SELECT * FROM payments WHERE payment_ref IN ("
        " SELECT payment_ref FROM payments WHERE payment_ref = ANY($1::text[])"
        " UNION ALL SELECT payment_ref FROM payments WHERE person_key = ANY($2::text[])"
        " AND state = 'parked') ORDER BY recorded_at FOR UPDATE", payment_refs, parked_keys)


PaymentRow = tuple[str, str, str | None, Any, Any, int, str, str | None]


async def save_payments(conn: asyncpg.Connection, ids: BatchIds, new: list[PaymentRow],
                        applied: list[str]) -> None:
    """New payments (reference, person, application, period start and end, amount, state,
    reason), in order; and stored parked payments now applied."""
    if not new and not applied:
        return
    await conn.execute(
        "WITH upd AS (UPDATE payments SET state = 'applied', reason = NULL"
        " WHERE payment_ref = ANY($10::text[]) RETURNING 1)"
        " INSERT INTO payments (payment_ref, person_ref, person_key, application_id,"
        " period_start, period_end, amount_fen, state, reason)"
        " SELECT ref, r, k, a, s, e, amt, st, why FROM unnest($1::text[], $2::text[],"
        " $3::text[], $4::text[], $5::date[], $6::date[], $7::bigint[], $8::text[],"
        " $9::text[]) WITH ORDINALITY AS u(ref, r, k, a, s, e, amt, st, why, n) ORDER BY n",
        [p[0] for p in new], [ids.ref(PAYER, p[1]) for p in new],
        [ids.key(p[1]) for p in new], [p[2] for p in new], [p[3] for p in new],
        [p[4] for p in new], [p[5] for p in new], [p[6] for p in new], [p[7] for p in new],
        applied)


async def load_periods_of(conn: asyncpg.Connection, keys: list[str]) -> list[asyncpg.Record]:
    """The coverage periods of the persons hashed as `keys`, each person's in order."""
    return await conn.fetch("SELECT * FROM coverage_periods WHERE person_key = ANY($1::text[])"
                            " ORDER BY seq", keys)


def period_of(row: asyncpg.Record) -> Period:
    return Period(row["insurance_type"], row["start_date"], row["end_date"], row["source"],
                  row["reference"])


async def replace_periods(conn: asyncpg.Connection, ids: BatchIds,
                          periods: dict[str, list[Period]], keys: list[str]) -> None:
    """Each person's periods replaced, oldest first, under the current hash (`keys`: every
    valid hash of those persons, so rows under an older one go too)."""
    if not periods:
        return
    await conn.execute("DELETE FROM coverage_periods WHERE person_key = ANY($1::text[])", keys)
    rows = []
    for pid, kept in periods.items():
        ref, key = ids.ref(COVERED, pid), ids.key(pid)
        ordered = sorted(kept, key=lambda p: (p.start, p.reference))
        rows += [(ref, key, i, p.insurance_type, p.start, p.end, p.source, p.reference)
                 for i, p in enumerate(ordered)]
    if rows:
        await conn.execute(
            "INSERT INTO coverage_periods (person_ref, person_key, seq, insurance_type,"
            " start_date, end_date, source, reference) SELECT * FROM unnest($1::text[],"
            " $2::text[], $3::int[], $4::text[], $5::date[], $6::date[], $7::text[],"
            " $8::text[])", *(list(c) for c in zip(*rows, strict=True)))


ScheduledRow = tuple[str, str, Any, str, str]


async def schedule_changes(conn: asyncpg.Connection, ids: BatchIds,
                           rows: list[ScheduledRow]) -> None:
    """Scheduled changes (person, status, effective day, cause id, correlation id)."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO scheduled_changes (person_ref, person_key, to_status, effective_on,"
        " cause_id, correlation_id) SELECT r, k, s, d, c, corr FROM unnest($1::text[],"
        " $2::text[], $3::text[], $4::date[], $5::text[], $6::text[])"
        " WITH ORDINALITY AS u(r, k, s, d, c, corr, n) ORDER BY n",
        [ids.ref(SCHEDULED_FOR, r[0]) for r in rows], [ids.key(r[0]) for r in rows],
        [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])


async def take_early_decisions_of(conn: asyncpg.Connection,
                                  wanted: list[tuple[str, str | None]],
                                  owner: Mapping[str, str]
                                  ) -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    """As `take_early_decisions` for several (application, person) pairs at once, by pair
    (None: those naming no person), each pair's in the order they arrived. `owner`: every
    valid hash of each person's ID -> the ID."""
    hashes: dict[str, list[str]] = {}  # the ID -> its hashes: `owner` inverted once
    for key, pid in owner.items():
        hashes.setdefault(pid, []).append(key)
    keys = [(app, key) for app, person in wanted if person is not None
            for key in hashes.get(person, ())]
    rows = await conn.fetch(
        "UPDATE awaiting_application SET resumed_at = now() WHERE resumed_at IS NULL AND"
        " ((person_key IS NULL AND application_id = ANY($1::text[]))"
        "  OR (application_id, person_key) IN (SELECT * FROM unnest($2::text[], $3::text[])))"
        " RETURNING *", sorted({app for app, _ in wanted}), [a for a, _ in keys],
        [k for _, k in keys])
    taken: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["waiting_since"]):
        person = owner.get(r["person_key"]) if r["person_key"] is not None else None
        taken.setdefault((r["application_id"], person), []).append(
            dict(r) | {"envelope": EARLY_DECISION.open_bytes(r["envelope"], r["event_id"])})
    return taken
