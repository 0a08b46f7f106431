"""A claim from submission to payment, through review stages, policy and a bank that fails once."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts.bank import PaymentResultReported
from shared.contracts.channels import ClaimMaterialsMailed, ClaimStageDecided, ClaimSubmitted
from shared.contracts.topics import PAYMENT_INSTRUCTIONS, REIMBURSEMENT_EVENTS, physical
from shared.devstack.smsc import read_received
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.e2e.test_enrollment_stories import _value, enroll, send
from tests.helpers import data_of, poll, read_topic


async def enroll_for_claims(stack: TestStack) -> tuple[str, str]:
    """Enroll a person and wait until reimbursement has consumed their active status."""
    person, mobile = await enroll(stack)
    await poll(lambda: collect_status(stack.settings(), person),
               lambda f: (f.get("reimbursement", {}).get("insured_status") or {})
               .get("status") == "active")
    return person, mobile


async def claim_of(stack: TestStack, claim_id: str) -> dict[str, Any]:
    found = await collect_status(stack.settings(), claim_id)
    claims = found.get("reimbursement", {}).get("claims", [])
    return claims[0] if claims else {}


async def test_claim_is_reviewed_calculated_and_paid_once(stack: TestStack,
                                                          workers: dict[str, Any]) -> None:
    person, mobile = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    claim_id = f"CLM-{uuid.uuid4().hex[:8]}"
    await send(stack, ClaimSubmitted(
        claim_id=claim_id, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H21020003", expense_date=now.date() - timedelta(days=10),
        amount_fen=1_200_000, eligible_fen=1_000_000, hospital_level=3, channel="wechat",
        submitted_at=now))
    await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("stage") == "preliminary_review")

    def decided(stage: str) -> ClaimStageDecided:
        return ClaimStageDecided(claim_id=claim_id, person_id=person, stage=stage,  # type: ignore[arg-type]
                                 decision="approve", reviewer="s5", decided_at=now)

    # Verification before the originals arrived would skip a stage: refused, not applied.
    [skip] = await send(stack, decided("verification"))
    events_topic = physical(REIMBURSEMENT_EVENTS, region=REGION, namespace=stack.namespace)
    refused = await read_topic(stack.broker_url, events_topic, lambda rs: any(
        data_of(r)["causationid"] == skip for r in rs))
    assert any(data_of(r)["type"].endswith("request.refused.v1") for r in refused
               if data_of(r)["causationid"] == skip)
    await send(stack, decided("preliminary_review"),
               ClaimMaterialsMailed(claim_id=claim_id, person_id=person,
                                    tracking_no="XA123456789CN", mailed_at=now),
               decided("verification"))
    claim = await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("stage") == "approved")
    # Resident, level 3, in region (example policy): (10,000 - 1,000) x 0.60 = 5,400.00
    assert claim["payable_fen"] == 540_000 and claim["tracking_no"] == "XA123456789CN"
    assert claim["calculation"]["policy_version"] == "2026.1"
    assert "9000.00 x ratio 0.60 = 5400.00" in claim["calculation"]["working"][2]

    # The bank fails once, then pays; both instructions carry the same idempotency key.
    payments = physical(PAYMENT_INSTRUCTIONS, region=REGION, namespace=stack.namespace)

    def instructions(records: list[Any]) -> list[dict[str, Any]]:
        return [data_of(r)["data"] for r in records if data_of(r)["data"]["claim_id"] == claim_id]

    first = instructions(await read_topic(stack.broker_url, payments,
                                          lambda rs: len(instructions(rs)) >= 1))
    key = first[0]["idempotency_key"]
    await send(stack, PaymentResultReported(idempotency_key=key, claim_id=claim_id,
                                            person_id=person, succeeded=False,
                                            failure_reason="账户冻结", reported_at=now))
    both = instructions(await read_topic(stack.broker_url, payments,
                                         lambda rs: len(instructions(rs)) >= 2))
    assert [i["attempt"] for i in both] == [1, 2] and {i["idempotency_key"] for i in both} == {key}
    await send(stack, PaymentResultReported(idempotency_key=key, claim_id=claim_id,
                                            person_id=person, succeeded=True, reported_at=now))
    claim = await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("stage") == "paid")
    # Each stage in the history; the failed payment is recorded while the claim stays approved.
    assert [h["stage"] for h in claim["history"]] == [
        "preliminary_review", "materials_pending", "verification", "calculation", "approved",
        "approved", "paid"]
    await poll(lambda: _value(read_received(stack.sms_dir)),
               lambda s: any(m["to"] == mobile and "5400.00元" in m["text"] and "已支付" in
                             m["text"] for m in s))


async def test_proactive_batch_pays_each_good_record_once_and_reports_bad_ones(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from shared.contracts.hospital import OutageSettlementsUploaded, SettlementRecord
    from shared.contracts.reimbursement import SettlementOutageDeclared
    from shared.devstack import people

    insured = [(await enroll_for_claims(stack))[0] for _ in range(2)]
    now = datetime.now(UTC)
    today = now.date()
    institution, other = (f"H{uuid.uuid4().hex[:8].upper()}" for _ in range(2))
    pay_by = today + timedelta(days=60)

    def record(n: int, person: str, **kw: Any) -> SettlementRecord:
        base: dict[str, Any] = dict(record_id=f"000{n}", person_id=person,
                                    expense_date=today - timedelta(days=2), amount_fen=30_000,
                                    eligible_fen=25_000, hospital_level=1)
        return SettlementRecord(**(base | kw))

    # The institution claims a ten-day outage; the agency declared three days: that counts.
    batch = OutageSettlementsUploaded(
        batch_id=f"B-{uuid.uuid4().hex[:6]}", institution_code=institution,
        outage_from=today - timedelta(days=10), outage_to=today, records=[
            record(1, insured[0]), record(2, insured[0], amount_fen=12_000, eligible_fen=12_000),
            record(3, insured[1]),
            record(4, "210202198001011230"),  # bad check character
            record(5, people.resident_id()),  # not insured here
            record(6, insured[1], expense_date=today - timedelta(days=5)),  # not declared
            record(7, insured[1], care="inpatient"),  # not proactive [004]: manual
            record(8, insured[1], treatment_area="330300"),  # out of the city: manual
        ])
    # Sent before the declaration: its records wait for it, then go on by themselves.
    await send(stack, batch)
    found = await poll(lambda: collect_status(stack.settings(), institution),
                       lambda f: (f.get("reimbursement", {}).get("proactive_summary") or {})
                       .get("records") == 8)
    assert found["reimbursement"]["proactive_summary"]["awaiting_declaration"] == 5
    await send(stack, SettlementOutageDeclared(
        outage_id=f"OUT-{uuid.uuid4().hex[:6]}", outage_from=today - timedelta(days=3),
        outage_to=today - timedelta(days=1), pay_by=pay_by, reviewer="staff-9",
        institution_codes=[institution, other], declared_at=now))
    await send(stack, batch)  # sent again: pays once
    found = await poll(lambda: collect_status(stack.settings(), institution),
                       lambda f: (f.get("reimbursement", {}).get("proactive_summary") or {})
                       .get("accepted") == 3)
    summary = found["reimbursement"]["proactive_summary"]
    assert (summary["rejected"], summary["manual"], summary["awaiting_declaration"]) == (3, 2, 0)
    assert summary["unpaid"] == 3 and summary["next_pay_by"] == pay_by
    reasons = {r["record_id"][-1]: r["reason"] for r in summary["rejected_records"]}
    assert "check character" in reasons["4"] and "not insured" in reasons["5"]
    assert "outside the outage the agency declared" in reasons["6"]
    assert "住院费用不属于主动报范围" in reasons["7"] and "市外就医" in reasons["8"]
    # Resident, level 1 (example policy): deductible 200.00, ratio 0.80:
    # (250 - 200) x 0.8 = 40.00; then deductible met: 120 x 0.8 = 96.00; (250 - 200) x 0.8 = 40.00
    assert summary["total_approved_fen"] == 4_000 + 9_600 + 4_000
    claims = (await collect_status(stack.settings(), insured[0]))["reimbursement"]["claims"]
    assert sorted(c["claim_id"] for c in claims) == [f"PRO-{institution}-0001",
                                                     f"PRO-{institution}-0002"]
    payments = physical(PAYMENT_INSTRUCTIONS, region=REGION, namespace=stack.namespace)
    mine = await read_topic(stack.broker_url, payments, lambda rs: sum(
        data_of(r)["data"]["claim_id"].startswith(f"PRO-{institution}") for r in rs) >= 3)
    assert {data_of(r)["data"]["pay_by"] for r in mine
            if data_of(r)["data"]["claim_id"].startswith(f"PRO-{institution}")} == {
        pay_by.isoformat()}

    # Another institution's record 0001 is another record: paid too, and each institution's
    # status knows its own.
    await send(stack, OutageSettlementsUploaded(
        batch_id=f"B-{uuid.uuid4().hex[:6]}", institution_code=other,
        outage_from=today - timedelta(days=2), outage_to=today - timedelta(days=2),
        records=[record(1, insured[1])]))
    found = await poll(lambda: collect_status(stack.settings(), other),
                       lambda f: (f.get("reimbursement", {}).get("proactive_summary") or {})
                       .get("accepted") == 1)
    assert found["reimbursement"]["proactive_summary"]["records"] == 1
    claims = (await collect_status(stack.settings(), insured[1]))["reimbursement"]["claims"]
    assert {c["claim_id"] for c in claims} == {f"PRO-{institution}-0003", f"PRO-{other}-0001"}


async def test_a_receipt_claimed_or_settled_before_is_refused_naming_it(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from shared.contracts.hospital import DirectSettlementRecorded

    person, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    settled_invoice, claimed_invoice = f"S{uuid.uuid4().hex[:8]}", f"C{uuid.uuid4().hex[:8]}"

    def claim(claim_id: str, invoice: str) -> ClaimSubmitted:
        return ClaimSubmitted(claim_id=claim_id, person_id=person, invoice_no=invoice,
                              institution_code="H21020009",
                              expense_date=now.date() - timedelta(days=3), amount_fen=50_000,
                              channel="wechat", submitted_at=now)

    first = f"CLM-{uuid.uuid4().hex[:8]}"
    await send(stack, DirectSettlementRecorded(
        settlement_id="SET-77", person_id=person, invoice_no=settled_invoice,
        institution_code="H21020009", settled_on=now.date(), fund_paid_fen=30_000),
        claim(f"CLM-{uuid.uuid4().hex[:8]}", settled_invoice), claim(first, claimed_invoice),
        claim(f"CLM-{uuid.uuid4().hex[:8]}", claimed_invoice))
    found = await poll(lambda: collect_status(stack.settings(), person),
                       lambda f: len(f.get("reimbursement", {}).get("claims", [])) == 3)
    by_stage = sorted((c["stage"], " ".join(c["reasons"]))
                      for c in found["reimbursement"]["claims"])
    assert by_stage[0] == ("preliminary_review", "")
    assert by_stage[1][0] == by_stage[2][0] == "rejected"
    reasons = by_stage[1][1] + by_stage[2][1]
    assert "已在医院直接结算（结算号SET-77）" in reasons  # the person reads it: Chinese
    assert f"已在报销申请{first}中申报" in reasons


async def test_maternity_allowance_is_granted_without_application(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from stdnum.cn import uscc

    from shared.contracts.employer import (
        EmployerRegistered,
        EmployerRosterSubmitted,
        EmployerWageBaseReported,
        RosterRow,
    )
    from shared.contracts.hospital import BirthRecorded
    from shared.devstack import people

    now = datetime.now(UTC)
    body = f"91210200MA0Y{uuid.uuid4().hex[:5].upper()}"
    employer = body + uscc.calc_check_digit(body)
    mother, colleague = people.resident_id(), people.resident_id()
    await send(stack, EmployerRegistered(employer_code=employer, name="大连某科技公司",
                                         region_code=REGION, contact_email="hr@tech.example.cn",
                                         channel="window", submitted_at=now),
               EmployerRosterSubmitted(roster_id=f"R-{uuid.uuid4().hex[:6]}",
                                       employer_code=employer, submitted_at=now, rows=[
                                           RosterRow(row=1, action="increase", person_id=mother,
                                                     name="周敏", mobile=people.mobile(),
                                                     effective_on=now.date()),
                                           RosterRow(row=2, action="increase",
                                                     person_id=colleague, name="吴丽",
                                                     mobile=people.mobile(),
                                                     effective_on=now.date())]))
    for insured in (mother, colleague):
        await poll(lambda i=insured: collect_status(stack.settings(), i),
                   lambda f: f.get("reimbursement", {}).get("employer_code") == employer
                   and (f["reimbursement"].get("insured_status") or {}).get("status")
                   == "active")
    birth_id = f"BIRTH-{uuid.uuid4().hex[:6]}"
    # Another hospital's birth under the same number is another birth (its own allowance).
    await send(stack, BirthRecorded(birth_id=birth_id, person_id=mother,
                                    institution_code="H21020009",
                                    birth_date=now.date(), difficult_birth=True),
               BirthRecorded(birth_id=birth_id, person_id=colleague,
                             institution_code="H21020010", birth_date=now.date()))
    found = await poll(lambda: collect_status(stack.settings(), mother),
                       lambda f: bool(f.get("reimbursement", {}).get("births")))
    assert found["reimbursement"]["births"][0]["state"] == "waiting_for_wage_base"
    await send(stack, EmployerWageBaseReported(employer_code=employer, year=now.year - 1,
                                               average_monthly_wage_fen=750_000))
    claim = await poll(lambda: claim_of(stack, f"MAT-H21020009-{birth_id}"),
                       lambda c: c.get("stage") == "approved")
    # 7,500.00 / 30 x (98 + 15 difficult birth) days = 28,250.00
    assert claim["payable_fen"] == 2_825_000
    assert claim["calculation"]["working"] == ["7500.00 / 30 x 113 days = 28250.00"]
    assert claim["benefit_line"] == "maternity_allowance"
    other = await poll(lambda: claim_of(stack, f"MAT-H21020010-{birth_id}"),
                       lambda c: c.get("stage") == "approved")
    # 7,500.00 / 30 x 98 days = 24,500.00, to the colleague.
    assert other["payable_fen"] == 2_450_000 and other["person_id"] == colleague
    # Told as an allowance, not as a reimbursement of costs, once notify's template uses it.
    events = physical(REIMBURSEMENT_EVENTS, region=REGION, namespace=stack.namespace)
    records = await read_topic(stack.broker_url, events, lambda rs: any(
        data_of(r)["data"].get("claim_id") == f"MAT-H21020009-{birth_id}" for r in rs))
    [approved] = [data_of(r)["data"] for r in records
                  if data_of(r)["data"].get("claim_id") == f"MAT-H21020009-{birth_id}"]
    assert approved["benefit_line"] == "maternity_allowance"


async def test_a_backfilled_filing_pays_the_difference_on_an_unfiled_claim(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from shared.contracts.channels import RemoteTreatmentFilingApplied

    person, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    claim_id = f"CLM-{uuid.uuid4().hex[:8]}"
    expense = now.date() - timedelta(days=20)
    await send(stack, ClaimSubmitted(
        claim_id=claim_id, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
        institution_code="H44030001", expense_date=expense, amount_fen=1_000_000,
        hospital_level=3, treatment_area="440300", channel="wechat", submitted_at=now))
    for stage in ("preliminary_review", "verification"):
        if stage == "verification":
            await send(stack, ClaimMaterialsMailed(claim_id=claim_id, person_id=person,
                                                   tracking_no="XB123456789CN", mailed_at=now))
        await send(stack, ClaimStageDecided(claim_id=claim_id, person_id=person, stage=stage,  # type: ignore[arg-type]
                                            decision="approve", reviewer="s6", decided_at=now))
    claim = await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("stage") == "approved")
    # Remote without filing (example policy, resident level 3): (10,000 - 1,000) x 0.50
    assert claim["location"] == "remote_unfiled" and claim["payable_fen"] == 450_000
    # A temporary filing may be backfilled to any day: it now covers the expense.
    await send(stack, RemoteTreatmentFilingApplied(
        filing_id=f"F-{uuid.uuid4().hex[:6]}", person_id=person, kind="temporary",
        treatment_area="440300", start_date=expense - timedelta(days=1), channel="wechat",
        submitted_at=now))
    claim = await poll(lambda: claim_of(stack, claim_id),
                       lambda c: c.get("top_up_fen") == 45_000)
    # Filed, at the temporary filing's own level (example policy: 5 points below local 0.60):
    # (10,000 - 1,000) x 0.55 = 4,950.00, so 450.00 more is paid.
    assert claim["payable_fen"] == 495_000 and claim["location"] == "remote_filed"
    payments = physical(PAYMENT_INSTRUCTIONS, region=REGION, namespace=stack.namespace)
    records = await read_topic(stack.broker_url, payments, lambda rs: any(
        data_of(r)["data"]["claim_id"] == claim_id and ":filing-" in
        data_of(r)["data"]["idempotency_key"] for r in rs))
    top_up = [data_of(r)["data"] for r in records if data_of(r)["data"]["claim_id"] == claim_id
              and ":filing-" in data_of(r)["data"]["idempotency_key"]]
    assert [t["payable_fen"] for t in top_up] == [45_000]


async def test_epidemic_patients_are_covered_in_full_without_a_claim(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from datetime import date

    from shared.contracts.hospital import EpidemicPatientSettled

    person, mobile = await enroll(stack)
    # The agency declares the epidemic of the example of notice 001 (December 2026): only
    # that measure, so no other story's claims change.
    await add_measure(stack, "001-jinan-epidemic.toml", "example-001-epidemic-full-coverage")
    covered, refused = f"EP{uuid.uuid4().hex[:6]}", f"EP{uuid.uuid4().hex[:6]}"
    [_, refused_event] = await send(stack, EpidemicPatientSettled(
        settlement_id=covered, person_id=person, institution_code="H21020077",
        diagnosis="suspected", treated_from=date(2026, 12, 3), treated_to=date(2026, 12, 9),
        cost_fen=2_345_600), EpidemicPatientSettled(
        settlement_id=refused, person_id=person, institution_code="H21020077",
        diagnosis="confirmed", treated_from=date(2026, 11, 3), treated_to=date(2026, 11, 9),
        cost_fen=100_000))
    claim_id = f"EPI-H21020077-{covered}"
    claim = await poll(lambda: claim_of(stack, claim_id),
                       lambda c: c.get("stage") == "approved")
    assert claim["payable_fen"] == 2_345_600 and claim["benefit_line"] == "epidemic"
    assert claim["calculation"]["overrides"] == ["example-001-epidemic-full-coverage"]
    # Paid to the hospital that treated the patient, named as payee.
    payments = physical(PAYMENT_INSTRUCTIONS, region=REGION, namespace=stack.namespace)
    records = await read_topic(stack.broker_url, payments, lambda rs: any(
        data_of(r)["data"]["claim_id"] == claim_id for r in rs))
    [instruction] = [data_of(r)["data"] for r in records
                     if data_of(r)["data"]["claim_id"] == claim_id]
    assert (instruction["payee"], instruction["payee_code"]) == ("institution", "H21020077")
    # The bank pays the hospital: the patient, who paid nothing, is not told to check an
    # account; the payment is in the claim's history.
    [paid_event] = await send(stack, PaymentResultReported(
        idempotency_key=instruction["idempotency_key"], claim_id=claim_id, person_id=person,
        succeeded=True, reported_at=datetime.now(UTC)))
    claim = await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("stage") == "paid")
    events = physical(REIMBURSEMENT_EVENTS, region=REGION, namespace=stack.namespace)
    records = await read_topic(stack.broker_url, events, lambda rs: any(
        data_of(r)["causationid"] == refused_event for r in rs))
    answer = next(data_of(r) for r in records if data_of(r)["causationid"] == refused_event)
    assert answer["type"].endswith("epidemic.refused.v1")
    assert "no declared epidemic coverage on 2026-11-03" in answer["data"]["reason"]
    assert await claim_of(stack, f"EPI-H21020077-{refused}") == {}
    sms = await poll(lambda: _value(read_received(stack.sms_dir)),
                     lambda s: any(m["to"] == mobile and "23456.00元" in m["text"] and "全额承担"
                                   in m["text"] for m in s))
    assert not any(data_of(r)["type"].endswith("claim.paid.v1") and data_of(r)["causationid"]
                   == paid_event for r in await read_topic(stack.broker_url, events,
                                                           lambda rs: True))
    assert not any(m["to"] == mobile and "查收" in m["text"] for m in sms)

    # A payment to the hospital that fails for good is the agency's business with the
    # hospital: staff hear of it; the patient, who owes nothing, is not told to check a card.
    unpaid = f"EP{uuid.uuid4().hex[:6]}"
    await send(stack, EpidemicPatientSettled(
        settlement_id=unpaid, person_id=person, institution_code="H21020077",
        diagnosis="confirmed", treated_from=date(2026, 12, 4), treated_to=date(2026, 12, 8),
        cost_fen=300_000))
    unpaid_id = f"EPI-H21020077-{unpaid}"

    def tries(rs: list[Any]) -> list[dict[str, Any]]:
        return [data_of(r)["data"] for r in rs if data_of(r)["data"]["claim_id"] == unpaid_id]

    for attempt in (1, 2, 3):
        found = tries(await read_topic(stack.broker_url, payments,
                                       lambda rs, n=attempt: len(tries(rs)) >= n))
        assert found[-1]["attempt"] == attempt and found[-1]["payee"] == "institution"
        await send(stack, PaymentResultReported(
            idempotency_key=found[-1]["idempotency_key"], claim_id=unpaid_id,
            person_id=person, succeeded=False, failure_reason="对公账户信息有误",
            reported_at=datetime.now(UTC)))
    await poll(lambda: claim_of(stack, unpaid_id), lambda c: c.get("stage") == "payment_failed")
    about = [data_of(r) for r in await read_topic(stack.broker_url, events, lambda rs: any(
        data_of(r)["type"].endswith("institution-payment.failed.v1") for r in rs))
        if data_of(r)["data"].get("claim_id") == unpaid_id]
    [staff] = [e for e in about if e["type"].endswith("institution-payment.failed.v1")]
    assert staff["data"]["institution_code"] == "H21020077" and staff["data"]["attempts"] == 3
    assert not any(e["type"].endswith("claim.payment-failed.v1") for e in about)
    assert not any(m["to"] == mobile and "核实" in m["text"]
                   for m in await _value(read_received(stack.sms_dir)))
    # Their progress says the same: nothing for them to do.
    from shared.progress import progress_of

    [item] = [i for i in await progress_of(stack.settings(), person)
              if i.reference == unpaid_id]
    assert item.next_step == "无需本人操作" and "银行" not in item.stage_name


async def test_a_rejected_claim_is_resubmitted_as_a_new_version(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, _ = await enroll_for_claims(stack)
    now = datetime.now(UTC)
    claim_id, invoice = f"CLM-{uuid.uuid4().hex[:8]}", f"INV{uuid.uuid4().hex[:8]}"

    def submitted() -> ClaimSubmitted:
        return ClaimSubmitted(claim_id=claim_id, person_id=person, invoice_no=invoice,
                              institution_code="H21020005",
                              expense_date=now.date() - timedelta(days=4), amount_fen=80_000,
                              channel="alipay", submitted_at=now)

    await send(stack, submitted(), ClaimStageDecided(
        claim_id=claim_id, person_id=person, stage="preliminary_review", decision="reject",
        reasons=["发票照片不清晰"], reviewer="s7", decided_at=now))
    await poll(lambda: claim_of(stack, claim_id), lambda c: c.get("stage") == "rejected")
    await send(stack, submitted())  # photos uploaded again under the same claim id
    claim = await poll(lambda: claim_of(stack, claim_id),
                       lambda c: c.get("version") == 2)
    assert claim["stage"] == "preliminary_review" and claim["reasons"] == []
    assert [h["detail"]["version"] for h in claim["history"]] == [1, 1, 2]


async def add_measure(stack: TestStack, example: str, measure_id: str) -> None:
    """Copy one measure of the shipped examples into the folder the workers read, for this
    region, and wait until the reimbursement worker has re-read its book."""
    import tomllib

    from shared.policy import EXAMPLES_DIR

    [measure] = [m for m in tomllib.loads((EXAMPLES_DIR / example).read_text())["measure"]
                 if m["id"] == measure_id]
    lines = [f'region = "{REGION}"', "", "[[measure]]"]
    lines += [f"{key} = {value!r}".replace("'", '"') if isinstance(value, str)
              else f"{key} = {value}" for key, value in measure.items()]
    name = f"{measure_id}.toml"
    (stack.policy_dir / f"{name}.draft").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (stack.policy_dir / f"{name}.draft").rename(stack.policy_dir / name)
    log = stack.log_path("reimbursement")
    await poll(lambda: _value(log.read_text(encoding="utf-8")),
               lambda text: any("policy book re-read" in line and name in line
                                for line in text.splitlines()), timeout=30)
