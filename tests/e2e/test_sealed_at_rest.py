"""Health and contact data at rest: sealed in the tables, opened and masked by `medins status`,
old rows and plaintext sealed again by `medins data-keys` rotation."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.enrollment import repository as enrollment_repo
from services.enrollment.domain.model import InsuredStatus, Person
from services.notify import repository as notify_repo
from services.notify.domain.catalogue import Message
from shared.contracts.channels import ChronicDiseaseApplied
from shared.contracts.hospital import TreatmentRecorded
from shared.db import sealed
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack import people
from shared.settings import PlatformSettings
from tests.conftest import TestStack
from tests.e2e.test_enrollment_stories import enroll, enrollment, send
from tests.helpers import poll

DISEASE = "malignant_tumour_radiochemotherapy"


async def _raw(stack: TestStack, service: str, sql: str, *args: Any) -> str:
    """Every value of the rows, as text: what a copy of the database would show."""
    conn = await stack.connect(service)
    try:
        return json.dumps([dict(r) for r in await conn.fetch(sql, *args)], default=str,
                          ensure_ascii=False)
    finally:
        await conn.close()


async def test_story_leaves_no_plaintext_and_status_opens_it_masked(
        stack: TestStack, workers: dict[str, Any], tmp_path: Path) -> None:
    email = f"sealed{uuid.uuid4().hex[:6]}@example.cn"
    person, mobile = await enroll(stack, "flexible", email=email)
    now = datetime.now(UTC)
    application = f"CD-{uuid.uuid4().hex[:6]}"
    await send(stack,
               TreatmentRecorded(treatment_id=f"T{uuid.uuid4().hex[:6]}", person_id=person,
                                 hospital_code="H21020005", treatment="tumour_chemotherapy",
                                 treated_on=now.date()),
               ChronicDiseaseApplied(application_id=application, person_id=person,
                                     action="recognise", disease="diabetes",
                                     institution_code="H21020003", channel="wechat",
                                     submitted_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: bool(e.get("chronic_diseases")), timeout=60)
    assert found["chronic_diseases"][0]["disease"] == DISEASE
    assert found["person"]["mobile"] == mobile and found["person"]["email"] == email

    async def messages() -> str:
        return await _raw(stack, "notify", "SELECT * FROM deliveries"
                          " WHERE person_key = ANY($1::text[])", sealed.resident_keys(person))
    await poll(messages, lambda text: text.count("enc:") >= 3, timeout=60)

    # The raw tables: no mobile, email, name or disease in clear, wherever it was written.
    persons = await _raw(stack, "enrollment", "SELECT * FROM persons"
                         " WHERE person_key = ANY($1::text[])", sealed.resident_keys(person))
    # These tables keep no ID number in clear: a keyed hash of it finds the rows.
    chronic = await _raw(stack, "enrollment", "SELECT * FROM chronic_recognitions"
                         " WHERE person_key = ANY($1::text[])",
                         enrollment_repo.PATIENT.digests(person))
    cases = await _raw(stack, "enrollment", "SELECT * FROM cases WHERE case_id = $1",
                       application)
    contacts = await _raw(stack, "notify", "SELECT * FROM contacts"
                          " WHERE person_key = ANY($1::text[])", notify_repo.PERSON.digests(person))
    deliveries = await messages()
    for text in (persons, chronic, cases, contacts, deliveries):
        assert "enc:" in text
        for secret in (mobile, email, "张静", DISEASE, "diabetes"):
            assert secret not in text, (secret, text)
    assert '"disease_key": null' not in chronic
    assert person not in chronic and person not in contacts and '"person_key": null' not in contacts
    assert person not in deliveries and '"person_key": null' not in deliveries

    # `medins status`: opened, then masked as before.
    shown = subprocess.run([sys.executable, "-m", "shared.cli", "status", person, "--json"],
                           env=stack.env(), capture_output=True, text=True, cwd=tmp_path,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert mobile not in shown.stdout and email not in shown.stdout
    assert f"{mobile[:3]}****{mobile[-4:]}" in shown.stdout
    assert DISEASE in shown.stdout and "enc:" not in shown.stdout
    progress = subprocess.run([sys.executable, "-m", "shared.cli", "progress", person],
                              env=stack.env(), capture_output=True, text=True, cwd=tmp_path,
                              timeout=60)
    assert progress.returncode == 0, progress.stderr
    assert "enc:" not in progress.stdout


async def test_rotation_seals_again_and_retires_the_old_key(
        stack: TestStack, tmp_path: Path) -> None:
    # A namespace and key file of its own: the session's workers keep their keys.
    namespace = f"{stack.namespace}seal{uuid.uuid4().hex[:4]}_"
    keys_file = tmp_path / "data-keys"
    shutil.copy(os.environ["MEDINS_DATA_KEYS_FILE"], keys_file)
    settings = PlatformSettings(MEDINS_DATABASE_URL=stack.database_url, namespace=namespace)
    env = stack.env(namespace, MEDINS_DATA_KEYS_FILE=str(keys_file))
    person, mobile = people.resident_id(), people.mobile()
    conn = await connect(stack.database_url)
    try:
        for service in ("enrollment", "notify"):
            await migrate(conn, settings.schema_for(service), service_migrations(service))
    finally:
        await conn.close()

    sealed.configure(None, keys_file)
    old = sealed.keys().current_seal.key_id
    enrollment_db = await connect(stack.database_url, settings.schema_for("enrollment"))
    notify_db = await connect(stack.database_url, settings.schema_for("notify"))
    try:
        await enrollment_repo.save_person(enrollment_db, Person(
            person, "王芳", mobile, None, "resident", InsuredStatus.ACTIVE, None))
        await enrollment_repo.save_recognition(enrollment_db, person, "diabetes", "H1",
                                               datetime.now(UTC).date(), True)
        # A row from before sealing: plaintext, no hash.
        await notify_db.execute(
            "INSERT INTO deliveries (source_event_id, person_ref, channel, recipient, template,"
            " body) VALUES ('e0', $1, 'sms', $2, 'manual', '【医保服务】王芳您好')",
            person, mobile)
        await notify_repo.claim_deliveries(notify_db, "e1", person, [Message(
            "sms", mobile, "t", None, "【医保服务】王芳您好")])

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([sys.executable, "-m", "shared.cli", "data-keys", *args],
                                  env=env, capture_output=True, text=True, cwd=tmp_path,
                                  timeout=60)
            assert done.returncode in (0, 1), done.stderr
            return done

        status = cli("status").stdout
        # The person's ID, name and mobile, the patient's ID and disease, the new message's
        # person, recipient and body; the old row's three.
        assert f"key {old} (current): 8 row(s)" in status
        assert "3 value(s) not sealed yet" in status
        assert cli("rotate", "--hash").returncode == 0
        refused = cli("retire", old)
        assert refused.returncode == 1 and "row(s) still use" in refused.stdout
        assert "sealed again under the current keys" in cli("reseal", "--batch", "2").stdout
        after = cli("status").stdout
        assert f"key {old}: 0 row(s)" in after and "not sealed yet" not in after
        assert cli("retire", old).returncode == 0
        ring = sealed._source.get(force=True)
        assert old not in ring.seal_keys

        raw = json.dumps([dict(r) for r in await notify_db.fetch(
            "SELECT * FROM deliveries WHERE person_key = ANY($1::text[])",
            sealed.resident_keys(person))], default=str, ensure_ascii=False)
        assert mobile not in raw and "王芳" not in raw and person not in raw
        loaded = await enrollment_repo.load_person(enrollment_db, person)
        assert loaded is not None and loaded.mobile == mobile and loaded.name == "王芳"
        assert await enrollment_repo.recognition(enrollment_db, person, "diabetes") == "H1"
        shown = await notify_repo.status_of(notify_db, person)
        assert shown is not None
        assert [m["recipient"] for m in shown["messages"]] == [mobile, mobile]
    finally:
        await enrollment_db.close()
        await notify_db.close()
        sealed.use_keys(None)
        admin = await connect(stack.database_url)
        try:
            for service in ("enrollment", "notify"):
                await admin.execute(f'DROP SCHEMA IF EXISTS "{settings.schema_for(service)}"'
                                    " CASCADE")
        finally:
            await admin.close()


async def test_plaintext_rows_of_every_shape_are_sealed_once_and_still_read(
        stack: TestStack) -> None:
    """What a worker does at start on a schema from before sealing: text, bytea, a whole
    jsonb value and one field of one, and a hash filled in; a second pass changes nothing."""
    namespace = f"{stack.namespace}plain{uuid.uuid4().hex[:4]}_"
    settings = PlatformSettings(MEDINS_DATABASE_URL=stack.database_url, namespace=namespace)
    schema = settings.schema_for("enrollment")
    person, mobile = people.resident_id(), people.mobile()
    envelope = json.dumps({"data": {"mobile": mobile, "disease": "diabetes"}}).encode()
    admin = await connect(stack.database_url)
    await migrate(admin, schema, service_migrations("enrollment"))
    conn = await connect(stack.database_url, schema)
    try:
        await conn.execute(
            "INSERT INTO persons (person_ref, name, mobile, email, insurance_type, status)"
            " VALUES ($1, '李雷', $2, NULL, 'resident', 'active')", person, mobile)
        await conn.execute(
            "INSERT INTO chronic_recognitions (person_ref, disease, institution_code,"
            " effective_from, without_application) VALUES ($1, 'diabetes', 'H1', now(), true)",
            person)
        await conn.execute(
            "INSERT INTO cases (case_id, kind, subject_ref, state, data) VALUES ('C1',"
            " 'chronic_recognition', $1, 'submitted', $2)", person,
            json.dumps({"disease": "diabetes", "review_from": "2027-01-01"}))
        await conn.execute(
            "INSERT INTO filings (filing_id, person_ref, category, kind, source, start_date,"
            " detail, state) VALUES ('F1', $1, 'remote', 'temporary', 'x', now(), $2,"
            " 'active')", person, json.dumps({"chronic_diseases": ["diabetes"], "n": 1}))
        await conn.execute(
            "INSERT INTO awaiting_policy (event_id, event_type, person_ref, reference, envelope,"
            " received_at, fact_date, reason) VALUES ('E1', 't', $1, 'r', $2, now(), now(),"
            " 'no policy')", person, envelope)

        changed = [await sealed.reseal(conn, col, plaintext_only=True)
                   for col in enrollment_repo.SEALED]
        # Name, mobile, disease, case, filing, event; the ID of the person, patient, case,
        # filing and event.
        assert sum(changed) == 11
        again = [await sealed.reseal(conn, col, plaintext_only=True)
                 for col in enrollment_repo.SEALED]
        assert sum(again) == 0

        raw = json.dumps([[dict(r) for r in await conn.fetch(f"SELECT * FROM {table}")]
                          for table in ("persons", "chronic_recognitions", "cases", "filings",
                                        "awaiting_policy")], default=str, ensure_ascii=False)
        for secret in (mobile, "李雷", "diabetes"):
            assert secret not in raw
        assert person not in raw and '"person_key": null' not in raw
        loaded = await enrollment_repo.load_person(conn, person)
        assert loaded is not None and (loaded.name, loaded.mobile) == ("李雷", mobile)
        assert await enrollment_repo.recognition(conn, person, "diabetes") == "H1"
        case = await enrollment_repo.load_case(conn, "C1")
        assert case is not None and json.loads(case["data"])["disease"] == "diabetes"
        [filing] = await enrollment_repo.open_filings(conn, person)
        assert filing.chronic_diseases == ["diabetes"]
        [waiting] = await enrollment_repo.awaiting_policy(conn, 10)
        assert waiting["envelope"] == envelope
    finally:
        await conn.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
