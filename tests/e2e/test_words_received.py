"""What a person receives, read from the local SMSC and mail server: names, never codes or gaps."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stdnum.cn import uscc

from shared.contracts.channels import (
    ChronicDiseaseApplied,
    ChronicDiseaseReviewed,
    ClaimMaterialsMailed,
    ClaimStageDecided,
    ClaimSubmitted,
)
from shared.contracts.employer import (
    EmployerRegistered,
    EmployerRosterSubmitted,
    EmployerWageBaseReported,
    RosterRow,
)
from shared.contracts.hospital import BirthRecorded
from shared.db.sealed import resident_keys
from shared.devstack import people
from shared.devstack.mailserver import read_mailbox
from shared.devstack.smsc import read_received
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.e2e.test_enrollment_stories import _value, send
from tests.e2e.test_reimbursement_story import claim_of
from tests.helpers import poll

# Allowed Latin in a received text: the references the person quotes back.
REFERENCE = re.compile(r"[A-Z]{2,5}-[A-Za-z0-9-]+")


def _latin(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", REFERENCE.sub("", text))


async def test_a_mother_reads_her_allowance_and_her_hospital_by_name(
        tmp_path: Path, stack: TestStack, workers: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    body = f"91210200MA0W{uuid.uuid4().hex[:5].upper()}"
    employer = body + uscc.calc_check_digit(body)
    mother, mobile = people.resident_id(), people.mobile()
    email = f"m{uuid.uuid4().hex[:6]}@example.cn"
    await send(stack, EmployerRegistered(employer_code=employer, name="大连某物流公司",
                                         region_code=REGION, contact_email="hr@wl.example.cn",
                                         channel="window", submitted_at=now),
               EmployerRosterSubmitted(roster_id=f"R-{uuid.uuid4().hex[:6]}",
                                       employer_code=employer, submitted_at=now, rows=[
                                           RosterRow(row=1, action="increase", person_id=mother,
                                                     name="周敏", mobile=mobile, email=email,
                                                     effective_on=now.date())]))
    # Added by the roster: the employer pays monthly, so no "有效期至" without a date.
    sms = await poll(lambda: _value(read_received(stack.sms_dir)), lambda s: any(
        m["to"] == mobile and "由单位办理参保" in m["text"] for m in s))
    joined = next(m["text"] for m in sms if m["to"] == mobile and "由单位办理参保" in m["text"])
    assert "有效期至" not in joined and now.date().isoformat() in joined
    await poll(lambda: collect_status(stack.settings(), mother),
               lambda f: f.get("reimbursement", {}).get("employer_code") == employer
               and (f["reimbursement"].get("insured_status") or {}).get("status") == "active")

    birth_id = f"BIRTH-{uuid.uuid4().hex[:6]}"
    await send(stack, BirthRecorded(birth_id=birth_id, person_id=mother,
                                    institution_code="H21020009",
                                    birth_date=now.date(), difficult_birth=False),
               EmployerWageBaseReported(employer_code=employer, year=now.year - 1,
                                        average_monthly_wage_fen=600_000))
    await poll(lambda: claim_of(stack, f"MAT-H21020009-{birth_id}"),
               lambda c: c.get("stage") == "approved")
    # 6,000.00 / 30 x 98 days = 19,600.00, told as an allowance, never as a reimbursement.
    sms = await poll(lambda: _value(read_received(stack.sms_dir)), lambda s: any(
        m["to"] == mobile and "生育津贴" in m["text"] for m in s))
    allowance = next(m["text"] for m in sms if m["to"] == mobile and "生育津贴" in m["text"])
    assert "19600.00元" in allowance and "报销" not in allowance
    assert _latin(allowance) == [], allowance
    mails = await poll(lambda: _value(read_mailbox(stack.mail.folder)), lambda ms: any(
        email in m.recipients and m.subject == "生育津贴核定通知" for m in ms))
    mail = next(m for m in mails if email in m.recipients and m.subject == "生育津贴核定通知")
    assert "19600.00元" in mail.body and "报销" not in mail.body and "周敏" in mail.body
    assert _latin(mail.body) == [], mail.body

    # A claim's amount comes with its calculation in Chinese (the staff's working stays
    # theirs), and the originals go to a postal address.
    claim_id = f"CLM-{uuid.uuid4().hex[:8]}"
    await send(stack, ClaimSubmitted(
        claim_id=claim_id, person_id=mother, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H21020003", expense_date=now.date(),  # insured from today
        amount_fen=500_000, hospital_level=3, channel="wechat", submitted_at=now),
        ClaimStageDecided(claim_id=claim_id, person_id=mother, stage="preliminary_review",
                          decision="approve", reviewer="s8", decided_at=now),
        ClaimMaterialsMailed(claim_id=claim_id, person_id=mother, tracking_no="XW123456789CN",
                             mailed_at=now),
        ClaimStageDecided(claim_id=claim_id, person_id=mother, stage="verification",
                          decision="approve", reviewer="s8", decided_at=now))
    # The two mails are separate deliveries: either may land first, so wait for both.
    mails = await poll(lambda: _value(read_mailbox(stack.mail.folder)), lambda ms: any(
        email in m.recipients and m.subject == "报销金额核定通知" for m in ms) and any(
        email in m.recipients and "邮寄原件" in m.subject for m in ms))
    figures = next(m for m in mails if email in m.recipients and m.subject == "报销金额核定通知")
    assert "计算方法" in figures.body and "符合医保支付范围的费用5000.00元" in figures.body
    assert _latin(figures.body) == [], figures.body
    mailed = next(m for m in mails if email in m.recipients and "邮寄原件" in m.subject)
    assert re.search(r"邮寄至\d{6} 辽宁省大连市", mailed.body), mailed.body

    # Her hospital is named from the policy book's reference data, never by its code.
    chronic = f"CD-{uuid.uuid4().hex[:6]}"
    await send(stack, ChronicDiseaseApplied(
        application_id=chronic, person_id=mother, action="recognise", disease="hypertension",
        institution_code="H21020001", channel="wechat", submitted_at=now),
        ChronicDiseaseReviewed(application_id=chronic, person_id=mother, decision="approve",
                               reviewer="s4", decided_at=now))
    sms = await poll(lambda: _value(read_received(stack.sms_dir)), lambda s: any(
        m["to"] == mobile and "门诊慢特病" in m["text"] for m in s))
    recognised = next(m["text"] for m in sms if m["to"] == mobile and "门诊慢特病" in m["text"])
    assert "大连市中心医院" in recognised and "高血压" in recognised
    assert "H21020001" not in recognised and _latin(recognised) == [], recognised

    # An institution the reference data does not know: not sent with a code or a gap, but
    # parked for an operator with the reason, listed by `medins notify parked`, counted.
    await send(stack, ChronicDiseaseApplied(
        application_id=f"CD-{uuid.uuid4().hex[:6]}", person_id=mother,
        action="change_institution", disease="hypertension", institution_code="H21029999",
        channel="wechat", submitted_at=now))
    conn = await stack.connect("notify")
    try:
        row = await poll(lambda: conn.fetchrow(
            "SELECT id, status, attempts, last_error FROM deliveries"
            " WHERE person_key = ANY($1::text[])"
            " AND template = 'enrollment.chronic.institution-changed'", resident_keys(mother)),
            lambda r: r is not None)
    finally:
        await conn.close()
    assert row["status"] == "parked" and row["attempts"] == 0
    assert "缺少内容" in row["last_error"] and "institution_name" in row["last_error"]
    listed = subprocess.run([sys.executable, "-m", "shared.cli", "notify", "parked", "--json"],
                            env=stack.env(), capture_output=True, text=True, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    ours = next(r for r in json.loads(listed.stdout) if r["id"] == row["id"])
    assert "institution_name" in ours["last_error"]
    retried = subprocess.run([sys.executable, "-m", "shared.cli", "notify", "retry",
                              str(row["id"])], env=stack.env(), capture_output=True, text=True,
                             cwd=tmp_path)
    # Resending would send the gap: the operator is told to contact the person instead.
    assert "requeued 0" in retried.stdout and "a value is missing" in retried.stdout
    assert not any("H21029999" in m["text"] for m in read_received(stack.sms_dir))
    url = f"http://127.0.0.1:{stack.web_ports['notify']}/metrics"
    metrics = urllib.request.urlopen(url, timeout=5).read().decode()
    assert ('medins_notify_not_sent_total{template="enrollment.chronic.institution-changed"}'
            in metrics)
    for text in (joined, allowance, recognised):
        print("\nSMS received:", text)
    for received in (mail, figures):
        print(f"email received: {received.subject}\n{received.body}")
