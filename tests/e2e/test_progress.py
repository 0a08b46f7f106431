"""我的申办业务 through the real broker, PostgreSQL and workers: CLI and HTTP, masked, Chinese."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.notify.domain.reasons import RULE_REASONS
from shared.contracts.channels import (
    ChronicDiseaseApplied,
    ClaimSubmitted,
    EnrollmentReviewDecided,
    RemoteTreatmentFilingApplied,
)
from shared.progress import progress_of
from shared.status import collect_status
from tests.conftest import TestStack
from tests.e2e.test_enrollment_stories import enroll, send
from tests.helpers import poll


def _get(stack: TestStack, path: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.web_ports['enrollment']}{path}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


async def test_progress_lists_every_request_in_chinese_masked(
        stack: TestStack, workers: dict[str, Any], tmp_path: Path) -> None:
    person, mobile = await enroll(stack, "flexible")
    # The claim is judged by the coverage enrollment announced: wait until it is there.
    found = await poll(lambda: collect_status(stack.settings(), person),
                       lambda f: bool(f.get("reimbursement", {}).get("coverage")))
    # A second decision on the person's application, already decided: refused for the
    # reviewer. (A decision for an application not known yet waits for it instead.)
    stray = found["enrollment"]["applications"][0]["application_id"]
    now = datetime.now(UTC)
    chronic, filing, early = (f"CD-{uuid.uuid4().hex[:6]}", f"F-{uuid.uuid4().hex[:6]}",
                              f"F-{uuid.uuid4().hex[:6]}")
    claim = f"CLM-{uuid.uuid4().hex[:8]}"
    await send(stack, ChronicDiseaseApplied(
        application_id=chronic, person_id=person, action="recognise", disease="diabetes",
        institution_code="H21020003", channel="wechat", submitted_at=now),
        RemoteTreatmentFilingApplied(
            filing_id=filing, person_id=person, kind="temporary", treatment_area="440300",
            start_date=now.date(), channel="national_app", submitted_at=now),
        # Refused: a long-term filing may start at most 5 days back.
        RemoteTreatmentFilingApplied(
            filing_id=early, person_id=person, kind="long_term", long_term_reason="retiree",
            treatment_area="440300", start_date=now.date() - timedelta(days=9),
            channel="national_app", submitted_at=now),
        # Refused for the reviewer (not pending any more): never shown to the person.
        EnrollmentReviewDecided(application_id=stray, person_id=person, decision="approve",
                                reviewer="s9", decided_at=now),
        ClaimSubmitted(
            claim_id=claim, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
            institution_code="H21020003", expense_date=now.date() - timedelta(days=10),
            amount_fen=120_000, channel="wechat", submitted_at=now))
    refs = {chronic, filing, early, stray, claim}
    items = await poll(lambda: progress_of(stack.settings(), person),
                       lambda found: refs <= {i.reference for i in found}
                       and any(i.refusals for i in found if i.reference == stray))
    assert {i.kind for i in items} >= {"enrollment_application", "chronic_recognition",
                                       "remote_filing", "refused_request", "medical_claim"}

    # HTTP, the person's view: Chinese names and next steps, masked, the staff refusal left out.
    shown = _get(stack, f"/progress/{person}")
    text = json.dumps(shown, ensure_ascii=False)
    assert person not in text and mobile not in text
    assert shown["person_id"] == f"{person[:4]}**********{person[-4:]}"
    by_ref = {i["reference"]: i for i in shown["items"]}
    assert by_ref[stray]["kind"] == "参保登记申请"  # the refusal is not the person's
    assert [i["kind"] for i in shown["items"]].count("参保登记申请") == 1
    application = next(i for i in shown["items"] if i["kind"] == "参保登记申请")
    assert application["stage"] == "已缴费，参保生效"
    assert application["next_step"] == "无需操作，办结"
    assert by_ref[chronic]["kind"] == "门诊慢特病认定" and by_ref[chronic]["stage"] == "待审核"
    assert by_ref[chronic]["next_step"] == "等待审核，无需操作"
    assert "diabetes" not in text and "糖尿病" not in text  # no health data in a progress line
    assert by_ref[filing]["kind"] == "异地就医备案" and by_ref[filing]["stage"] == "已备案，有效"
    assert by_ref[filing]["due"] and "有效期至" in by_ref[filing]["next_step"]
    assert by_ref[early]["kind"] == "被拒绝的请求"
    assert by_ref[early]["detail"] == "异地就医备案申请" and by_ref[early]["stage"] == "未受理"
    assert by_ref[early]["reasons"] == [RULE_REASONS["backfill_too_early"]]
    assert by_ref[claim]["kind"] == "报销申请" and by_ref[claim]["stage"] == "初审中"
    for item in shown["items"]:
        assert item["submitted"] and item["last_change"] and item["next_step"]
    assert "start_date" not in text and "_code" not in text and "preliminary_review" not in text

    # HTTP, the staff view: the same items with codes, the reviewer's refusal included.
    staff = {i["reference"]: i for i in _get(stack, f"/progress/{person}?view=staff")["items"]}
    assert staff[stray]["refusals"] == ["review_not_pending"]
    assert staff[claim]["stage_code"] == "preliminary_review"
    assert staff[early]["rule"] == "backfill_too_early"
    assert person not in json.dumps(staff, ensure_ascii=False)

    # The claim's photos sent again while it is under review: refused, kept, and noted on
    # the claim for staff; the person's view still shows the claim once, at its stage.
    await send(stack, ClaimSubmitted(
        claim_id=claim, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H21020003", expense_date=now.date() - timedelta(days=10),
        amount_fen=120_000, channel="wechat", submitted_at=now))
    again = await poll(lambda: progress_of(stack.settings(), person),
                       lambda found: any(i.refusals for i in found if i.reference == claim))
    [noted] = [i for i in again if i.reference == claim]
    assert noted.refusals == ("claim_in_progress",) and noted.stage == "preliminary_review"
    staff = {i["reference"]: i for i in _get(stack, f"/progress/{person}?view=staff")["items"]}
    assert staff[claim]["refusals"] == ["claim_in_progress"]
    assert [i["reference"] for i in _get(stack, f"/progress/{person}")["items"]].count(
        claim) == 1

    with pytest.raises(urllib.error.HTTPError) as unknown:
        _get(stack, "/progress/110101199003070019")
    assert unknown.value.code == 404

    # The CLI: the same view as text, then as JSON for staff.
    env = stack.env()
    cli = [sys.executable, "-m", "shared.cli", "progress", person]
    plain = subprocess.run(cli, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "我的申办业务" in plain.stdout and "门诊慢特病认定" in plain.stdout
    assert "下一步：等待审核，无需操作" in plain.stdout and "被拒绝的请求" in plain.stdout
    assert person not in plain.stdout and "review_not_pending" not in plain.stdout
    as_staff = subprocess.run([*cli, "--staff", "--json"], env=env, capture_output=True,
                              text=True, cwd=tmp_path)
    assert as_staff.returncode == 0, as_staff.stderr
    assert person not in as_staff.stdout
    codes = {i["reference"]: i["kind_code"] for i in json.loads(as_staff.stdout)["items"]}
    assert codes[chronic] == "chronic_recognition" and codes[stray] == "enrollment_application"
