"""Enrollment keeps no resident ID in clear: after a story, and after upgrading a schema that
kept them, no table shows one, and the status and progress views still find the person."""
from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from services.enrollment import repository as repo
from services.enrollment import views
from services.enrollment.domain.model import InsuredStatus
from shared.clock import china_today
from shared.contracts.channels import (
    ChronicDiseaseApplied,
    EnrollmentReviewDecided,
    FamilyAidAuthorised,
    RemoteTreatmentFilingApplied,
    StopContributionRequested,
)
from shared.contracts.hospital import TreatmentRecorded
from shared.db import sealed
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack import people
from shared.settings import PlatformSettings
from tests.conftest import TestStack
from tests.e2e.test_enrollment_stories import enroll, enrollment, paid_up_to_yesterday, send
from tests.helpers import poll

# Bookkeeping of the messaging layer: events on their way out or kept by id, not the service's
# own records.
BOOKKEEPING = ("outbox", "outbox_set_aside", "processed_messages", "schema_migrations")


async def _tables(conn: asyncpg.Connection) -> list[str]:
    return [r["table_name"] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND NOT table_name = ANY($1) ORDER BY 1", list(BOOKKEEPING))]


async def _rows_naming(conn: asyncpg.Connection, *ids: str) -> dict[str, list[str]]:
    """Every row, as its values' text, of every table of the schema that shows one of `ids`."""
    found: dict[str, list[str]] = {}
    for table in await _tables(conn):
        for r in await conn.fetch(f'SELECT row_to_json(t)::text AS row FROM "{table}" t'):
            if any(i in r["row"] for i in ids):
                found.setdefault(table, []).append(r["row"])
    return found


async def test_a_story_leaves_no_resident_id_in_clear_and_the_views_find_the_person(
        stack: TestStack, workers: dict[str, Any], tmp_path: Path) -> None:
    person, _ = await enroll(stack, "flexible", paid_until=paid_up_to_yesterday())
    relative = people.resident_id()
    now, today = datetime.now(UTC), china_today()
    auth, chronic_app = f"FA-{uuid.uuid4().hex[:6]}", f"CD-{uuid.uuid4().hex[:6]}"
    early_app = f"APP-{uuid.uuid4().hex[:8]}"
    await send(stack,
               # Refused (backfilled too far): a refusal kept for the person.
               RemoteTreatmentFilingApplied(
                   filing_id=f"F-{uuid.uuid4().hex[:6]}", person_id=person, kind="long_term",
                   long_term_reason="retiree", treatment_area="440300",
                   start_date=today - timedelta(days=6), channel="national_app",
                   submitted_at=now),
               RemoteTreatmentFilingApplied(
                   filing_id=f"F-{uuid.uuid4().hex[:6]}", person_id=person, kind="long_term",
                   long_term_reason="retiree", treatment_area="440300",
                   start_date=today - timedelta(days=5), channel="national_app",
                   submitted_at=now),
               FamilyAidAuthorised(
                   authorisation_id=auth, person_id=person, relative_id=relative,
                   relative_name="张伟", relationship="child", relative_region="210200",
                   commitment_signed=True, id_photo_uploaded=True, channel="alipay",
                   submitted_at=now),
               TreatmentRecorded(treatment_id=f"T{uuid.uuid4().hex[:6]}", person_id=person,
                                 hospital_code="H21020005", treatment="tumour_chemotherapy",
                                 treated_on=today),
               # A case waiting for staff review.
               ChronicDiseaseApplied(application_id=chronic_app, person_id=person,
                                     action="recognise", disease="diabetes",
                                     institution_code="H1", channel="wechat", submitted_at=now),
               # A decision for an application not (yet) here: it waits.
               EnrollmentReviewDecided(application_id=early_app, person_id=person,
                                       decision="approve", reviewer="s7", decided_at=now))
    await poll(lambda: enrollment(stack, person),
               lambda e: bool(e.get("filings")) and bool(e.get("family_aid"))
               and bool(e.get("chronic_diseases")))
    # Paid up to yesterday: the stop is scheduled and applied at once (a status change).
    await send(stack, StopContributionRequested(request_id=f"STOP-{uuid.uuid4().hex[:6]}",
                                                person_id=person, channel="phone",
                                                requested_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: e["person"]["status"] == "suspended")

    # The views find everything by the ID asked about, and name the person and the relative.
    assert found["person"]["person_id"] == person and "person_key" not in found["person"]
    assert [a["relative_id"] for a in found["family_aid"]] == [relative]
    assert found["chronic_diseases"][0]["disease"] == "malignant_tumour_radiochemotherapy"
    assert found["applications"] and found["payments"] and found["coverage"]
    assert found["scheduled"][0]["applied_at"] is not None
    status_changes = [h for h in found["history"] if h["what"] == "status changed"]
    assert status_changes and all(h["reference"] == person for h in status_changes)
    conn = await stack.connect("enrollment")
    try:
        progress = await views.progress_of(conn, person)
        assert [c["case_id"] for c in progress["cases"]] == [chronic_app]
        assert [r["rule"] for r in progress["refused"]]
        assert [a["granted"] for a in progress["family_aid"]] == [True]
        seen_by_relative = await views.progress_of(conn, relative)
        assert [a["granted"] for a in seen_by_relative["family_aid"]] == [False]
        assert await conn.fetchval("SELECT count(*) FROM awaiting_application"
                                   " WHERE application_id = $1", early_app) == 1

        # No table of the schema shows either ID, wherever it was written.
        assert await _rows_naming(conn, person, relative) == {}
        keyed = {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"'
                                        " WHERE person_key = ANY($1::text[])",
                                        sealed.resident_keys(person))
                 for t in ("persons", "applications", "history", "payments", "filings",
                           "chronic_recognitions", "family_aid", "scheduled_changes",
                           "coverage_periods", "awaiting_application", "refused_requests")}
        assert all(keyed.values()), keyed
        assert await conn.fetchval("SELECT count(*) FROM cases WHERE subject_key ="
                                   " ANY($1::text[])", sealed.resident_keys(person)) == 1
        assert await conn.fetchval("SELECT count(*) FROM family_aid WHERE relative_key ="
                                   " ANY($1::text[])", sealed.resident_keys(relative)) == 1
    finally:
        await conn.close()

    shown = subprocess.run([sys.executable, "-m", "shared.cli", "status", person, "--json"],
                           env=stack.env(), capture_output=True, text=True, cwd=tmp_path,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert '"status": "suspended"' in shown.stdout and person not in shown.stdout
    progress_cli = subprocess.run([sys.executable, "-m", "shared.cli", "progress", person],
                                  env=stack.env(), capture_output=True, text=True, cwd=tmp_path,
                                  timeout=60)
    assert progress_cli.returncode == 0, progress_cli.stderr
    assert chronic_app in progress_cli.stdout


async def test_an_older_schema_is_upgraded_and_its_ids_sealed_at_the_worker_start(
        stack: TestStack) -> None:
    """Rows written while the tables kept IDs in clear: the migration moves them aside, the
    worker's start seals them and fills their hashes, and everything is found as before."""
    namespace = f"{stack.namespace}keyed{uuid.uuid4().hex[:4]}_"
    schema = PlatformSettings(MEDINS_DATABASE_URL=stack.database_url,
                              namespace=namespace).schema_for("enrollment")
    person, relative, mobile = people.resident_id(), people.resident_id(), people.mobile()
    today = china_today()
    admin = await connect(stack.database_url)
    migrations = service_migrations("enrollment")
    await migrate(admin, schema, [m for m in migrations
                                  if m.component != "enrollment" or m.version < "0009"])
    conn = await connect(stack.database_url, schema)
    try:
        # Sealed values of that time were bound to the clear ID: they must still open.
        await conn.execute(
            "INSERT INTO persons (person_id, name, mobile, email, insurance_type, status,"
            " paid_until) VALUES ($1, $2, $3, NULL, 'resident', 'active', $4)",
            person, repo.NAME.seal("李雷", person), repo.MOBILE.seal(mobile, person),
            today - timedelta(days=200))
        await conn.execute(
            "INSERT INTO applications (application_id, person_id, insurance_type, channel,"
            " state) VALUES ('A1', $1, 'resident', 'wechat', 'approved')", person)
        await conn.execute(
            "INSERT INTO payments (payment_ref, person_id, application_id, period_start,"
            " period_end, amount_fen, state) VALUES ('P1', $1, 'A1', $2, $3, 100, 'applied')",
            person, today - timedelta(days=400), today - timedelta(days=200))
        await conn.execute(
            "INSERT INTO coverage_periods (person_id, seq, insurance_type, start_date,"
            " end_date, source, reference) VALUES ($1, 0, 'resident', $2, $3, 'tax_payment',"
            " 'P1')", person, today - timedelta(days=400), today - timedelta(days=200))
        await conn.execute(
            "INSERT INTO history (person_id, reference, what, detail, cause_id, cause_type)"
            " VALUES ($1, $1, 'status changed', '{}', $2, 'timer'),"
            " ($1, 'A1', 'application approved', '{}', 'e1', 't')",
            person, f"lapse:{person}:{today.isoformat()}")
        await conn.execute(
            "INSERT INTO cases (case_id, kind, subject, state, data) VALUES ('C1',"
            " 'chronic_recognition', $1, 'submitted', $2)", person,
            repo.CASE_DATA.seal_json({"disease": "diabetes"}, "C1"))
        await conn.execute(
            "INSERT INTO filings (filing_id, person_id, category, kind, source, start_date,"
            " detail, state) VALUES ('F1', $1, 'remote', 'temporary', 'x', $2, '{}',"
            " 'active')", person, today)
        # Recognitions kept the ID sealed already, hashed for their own table only.
        old_patient = sealed.Sealed("chronic_recognitions", "person_ref", (),
                                    hash_column="person_key")
        await conn.execute(
            "INSERT INTO chronic_recognitions (person_ref, person_key, disease, disease_key,"
            " institution_code, effective_from, without_application)"
            " VALUES ($1, $2, $3, $4, 'H1', $5, true)",
            old_patient.seal(person), old_patient.digest(person),
            repo.DISEASE.seal("diabetes", person), repo.DISEASE.digest("diabetes", person),
            today)
        await conn.execute(
            "INSERT INTO family_aid (authorisation_id, person_id, relative_id, relationship,"
            " state) VALUES ('FA1', $1, $2, 'child', 'active')", person, relative)
        await conn.execute(
            "INSERT INTO scheduled_changes (person_id, to_status, effective_on, cause_id,"
            " correlation_id) VALUES ($1, 'suspended', $2, 'e2', 'c2')",
            person, today + timedelta(days=30))
        await conn.execute(
            "INSERT INTO transfer_credits (transfer_id, person_id, from_region,"
            " credited_months, credited_balance_fen, accepted_on, mode)"
            " VALUES ('T1', $1, '370100', 12, 500, $2, 'electronic')", person, today)
        await conn.execute(
            "INSERT INTO awaiting_policy (event_id, event_type, person_id, reference, envelope,"
            " received_at, fact_date, reason) VALUES ('E1', 't', $1, 'R1', $2, now(), $3,"
            " 'no policy')", person, repo.WAITING_EVENT.seal_bytes(b"{}", "E1"), today)
        await conn.execute(
            "INSERT INTO awaiting_application (event_id, event_type, application_id, person_id,"
            " envelope, received_at) VALUES ('E2', 't', 'A2', $1, $2, now())",
            person, repo.EARLY_DECISION.seal_bytes(b"{}", "E2"))
        await conn.execute(
            "INSERT INTO refused_requests (person_id, reference, request_type, rule, reason,"
            " cause_id) VALUES ($1, 'R2', 't', 'some_rule', $2, 'e3')",
            person, repo.REFUSAL.seal("理由", person, "R2", "e3"))

        await migrate(admin, schema, migrations)
        # What the worker does at its start, before consuming; a second pass finds nothing.
        for col in repo.SEALED:
            await sealed.reseal(conn, col, plaintext_only=True)
        assert [await sealed.reseal(conn, col, plaintext_only=True)
                for col in repo.SEALED] == [0] * len(repo.SEALED)

        assert await _rows_naming(conn, person, relative) == {}
        for table in ("persons", "applications", "history", "payments", "filings",
                      "chronic_recognitions", "family_aid", "scheduled_changes",
                      "coverage_periods", "transfer_credits", "awaiting_policy",
                      "awaiting_application", "refused_requests"):
            assert not await conn.fetchval(f'SELECT count(*) FROM "{table}"'
                                           " WHERE person_key IS NULL"), table

        loaded = await repo.load_person(conn, person)
        assert loaded is not None and (loaded.name, loaded.mobile) == ("李雷", mobile)
        assert loaded.status == InsuredStatus.ACTIVE
        application = await repo.load_application(conn, "A1")
        assert application is not None and application.person_id == person
        assert await repo.recognition(conn, person, "diabetes") == "H1"
        case = await repo.load_case(conn, "C1")
        assert case is not None and case["subject"] == person
        [filing] = await repo.open_filings(conn, person)
        assert filing.person_id == person
        assert await repo.active_family_aid(conn, relative) == ["FA1"]
        assert await repo.holds_family_aid(conn, "FA1", person)
        assert not await repo.holds_family_aid(conn, "FA1", relative)
        [due] = await repo.due_changes(conn, today + timedelta(days=30), 10)
        assert due["person_id"] == person
        # Paid until 200 days ago: a lapse candidate, named by the opened ID.
        assert await repo.lapse_candidates(conn, today, 30, 10) == [person]

        shown = await repo.status_of(conn, person)
        assert shown is not None and shown["person"]["person_id"] == person
        assert shown["person"]["name"] == "李雷"
        assert [h["reference"] for h in shown["history"]] == [person, "A1"]
        assert [a["relative_id"] for a in shown["family_aid"]] == [relative]
        assert [c["transfer_id"] for c in shown["transfer_credits"]] == ["T1"]
        assert [w["reference"] for w in shown["awaiting_policy"]] == ["R1"]
        assert (await repo.status_of(conn, "A1") or {})["person"]["person_id"] == person
        progress = await views.progress_of(conn, person)
        assert [r["reason"] for r in progress["refused"]] == ["理由"]
        assert [c["case_id"] for c in progress["cases"]] == ["C1"]
        # The lapse's cause id no longer names the person.
        causes = [r["cause_id"] for r in await conn.fetch("SELECT cause_id FROM history")]
        assert f"lapse:{today.isoformat()}" in causes
        # A write for the person updates their row, never adds a second one.
        loaded.paid_until = date(today.year, 12, 31)
        await repo.save_person(conn, loaded)
        assert await conn.fetchval("SELECT count(*) FROM persons") == 1
    finally:
        await conn.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
