"""Enrollment stories through the real broker, PostgreSQL, workers and mail/SMS servers."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.clock import china_today
from shared.contracts.base import Payload
from shared.contracts.channels import (
    AccidentInjuryFiled,
    DeathCancellationApplied,
    DeathCancellationReviewed,
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    FamilyAidAuthorised,
    RemoteTreatmentFilingApplied,
    StopContributionRequested,
)
from shared.contracts.civil_affairs import DeathRecorded
from shared.contracts.employer import EmployerRegistered, EmployerRosterSubmitted, RosterRow
from shared.contracts.hospital import EmergencyAdmissionFlagged, TreatmentRecorded
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import ENROLLMENT_EVENTS, physical
from shared.db.sealed import resident_keys
from shared.devstack import people
from shared.devstack.mailserver import read_mailbox
from shared.devstack.smsc import read_received
from shared.messaging.publisher import publish
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.helpers import data_of, envelope, poll, read_topic

EMPLOYER = "91210200MA0Y6G2K14"


async def send(stack: TestStack, *payloads: Payload, region: str = REGION) -> list[str]:
    envs = [envelope(p, region=region) for p in payloads]
    for env, payload in zip(envs, payloads, strict=True):
        await publish(stack.broker_url, physical(payload.topic, region=region,
                                                 namespace=stack.namespace), [env])
    return [e.id for e in envs]


async def enrollment(stack: TestStack, person: str, region: str = REGION) -> dict[str, Any]:
    return (await collect_status(stack.settings(region=region), person)).get("enrollment", {})


def this_year_end() -> date:
    return date(china_today().year, 12, 31)


def paid_up_to_yesterday() -> date:
    """A flexible worker's period that just ended: still active (the grace period), and a stop
    takes effect at once."""
    return china_today() - timedelta(days=1)


async def enroll(stack: TestStack, kind: str = "resident", paid_until: date | None = None,
                 email: str | None = None, region: str = REGION, person: str | None = None,
                 mobile: str | None = None) -> tuple[str, str]:
    """Apply, approve and pay in `region`; returns once enrollment there has the person active."""
    paid_until = paid_until or this_year_end()
    person, mobile = person or people.resident_id(), mobile or people.mobile()
    app_id, now = f"APP-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    await send(stack, EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=person, name="张静", insurance_type=kind,  # type: ignore[arg-type]
        mobile=mobile, email=email, channel="wechat", region_code=region, submitted_at=now),
        EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                reviewer="s1", decided_at=now),
        ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id=app_id,
            # The period starts this year even when it runs into the next (paid in December).
            insurance_type=kind,  # type: ignore[arg-type]
            period_start=date(min(paid_until.year, china_today().year), 1, 1),
            period_end=paid_until, amount_fen=40_000, paid_at=now), region=region)
    await poll(lambda: enrollment(stack, person, region),
               lambda e: e.get("person", {}).get("status") == "active")
    return person, mobile


async def events_caused_by(stack: TestStack, cause_id: str, count: int) -> list[dict[str, Any]]:
    topic = physical(ENROLLMENT_EVENTS, region=REGION, namespace=stack.namespace)
    records = await read_topic(stack.broker_url, topic, lambda rs: sum(
        data_of(r).get("causationid") == cause_id for r in rs) >= count)
    return [data_of(r) for r in records if data_of(r).get("causationid") == cause_id]


async def test_filing_then_stop_contributions_suspends_and_ends_the_filing(
        stack: TestStack, workers: dict[str, Any]) -> None:
    # Paid up to yesterday: the stop takes effect at once.
    person, mobile = await enroll(stack, "flexible", paid_until=paid_up_to_yesterday())
    now = datetime.now(UTC)
    today = china_today()  # the platform's date (China), which the 5-day backfill counts from
    too_early = today - timedelta(days=6)
    await send(stack, RemoteTreatmentFilingApplied(
        filing_id="F-EARLY", person_id=person, kind="long_term", long_term_reason="retiree",
        treatment_area="440300", start_date=too_early, channel="national_app",
        submitted_at=now), RemoteTreatmentFilingApplied(
        filing_id=f"F-{uuid.uuid4().hex[:6]}", person_id=person, kind="long_term",
        long_term_reason="retiree", treatment_area="440300",
        start_date=today - timedelta(days=5), channel="national_app", submitted_at=now))
    found = await poll(lambda: enrollment(stack, person), lambda e: bool(e.get("filings")))
    assert [f["state"] for f in found["filings"]] == ["active"]  # the early one was refused
    await send(stack, StopContributionRequested(request_id=f"STOP-{uuid.uuid4().hex[:6]}",
                                                person_id=person, channel="phone",
                                                requested_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: e["person"]["status"] == "suspended")
    assert found["filings"][0]["state"] == "ended"
    assert found["scheduled"][0]["applied_at"] is not None
    # The enrollment worker's HTTP read endpoint shows the same, masked.
    import json as _json
    import urllib.request

    url = f"http://127.0.0.1:{stack.web_ports['enrollment']}/status/{person}"
    shown = _json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert shown["person"]["status"] == "suspended" and shown["filings"][0]["state"] == "ended"
    assert person not in _json.dumps(shown)
    assert shown["person"]["person_id"] == f"{person[:4]}**********{person[-4:]}"
    assert mobile not in _json.dumps(shown) and shown["person"]["name"] == "张*"
    sms = await poll(lambda: _value(read_received(stack.sms_dir)),
                     lambda s: any(m["to"] == mobile and "暂停" in m["text"] for m in s)
                     and any(m["to"] == mobile and "已终止" in m["text"] for m in s)
                     and any(m["to"] == mobile and "未能办理" in m["text"] for m in s))
    refused = next(m for m in sms if m["to"] == mobile and "未能办理" in m["text"])
    # The person reads the rule in Chinese, never the field names meant for staff.
    assert "F-EARLY" in refused["text"] and "备案前5天" in refused["text"]
    assert "start_date" not in refused["text"] and "days" not in refused["text"]


async def test_employer_roster_reports_each_row_and_applies_the_good_ones(
        stack: TestStack, workers: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    good, other = people.resident_id(), people.resident_id()
    roster_id = f"R-{uuid.uuid4().hex[:6]}"
    await send(stack, EmployerRegistered(employer_code=EMPLOYER, name="大连港口公司",
                                         region_code=REGION, contact_email="hr@port.example.cn",
                                         channel="window", submitted_at=now))
    [roster_event] = await send(stack, EmployerRosterSubmitted(
        roster_id=roster_id, employer_code=EMPLOYER, submitted_at=now, rows=[
            RosterRow(row=1, action="increase", person_id=good, name="李强",
                      mobile=people.mobile(), effective_on=now.date()),
            RosterRow(row=2, action="increase", person_id=good[:-1] + "0"
                      if good[-1] != "0" else good[:-1] + "1", name="坏行",
                      mobile=people.mobile(), effective_on=now.date()),
            RosterRow(row=3, action="increase", person_id=other, name="赵敏", mobile="12345",
                      effective_on=now.date()),
        ]))
    events = await events_caused_by(stack, roster_event, 6)
    rows = sorted((e["data"]["row"], e["data"]["accepted"], e["data"]["reason"])
                  for e in events if e["type"].endswith("roster.row-processed.v1"))
    assert [(r, ok) for r, ok, _ in rows] == [(1, True), (2, False), (3, False)]
    assert "row 2 person_id" in rows[1][2] and "row 3 mobile" in rows[2][2]
    summary = next(e for e in events if e["type"].endswith("roster.processed.v1"))
    assert (summary["data"]["accepted"], summary["data"]["rejected"]) == (1, 2)
    found = await enrollment(stack, good)
    assert found["person"]["status"] == "active" and found["person"]["employer_code"] == EMPLOYER
    assert await enrollment(stack, other) == {}


async def test_death_record_ends_filings_and_aid_and_agent_result_is_emailed(
        stack: TestStack, workers: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    person, _ = await enroll(stack, kind="flexible")
    await send(stack, RemoteTreatmentFilingApplied(
        filing_id=f"F-{uuid.uuid4().hex[:6]}", person_id=person, kind="temporary",
        treatment_area="110105", start_date=now.date(), channel="wechat", submitted_at=now),
        FamilyAidAuthorised(authorisation_id=f"FA-{uuid.uuid4().hex[:6]}", person_id=person,
                            relative_id=people.resident_id(), relative_name="张伟",
                            relationship="child", relative_region="210200",
                            commitment_signed=True, id_photo_uploaded=True, channel="alipay",
                            submitted_at=now),
        TreatmentRecorded(treatment_id=f"T{uuid.uuid4().hex[:6]}", person_id=person,
                          hospital_code="H210200", treatment="organ_transplant_anti_rejection",
                          treated_on=now.date()))
    await poll(lambda: enrollment(stack, person),
               lambda e: bool(e.get("filings")) and bool(e.get("family_aid"))
               and bool(e.get("chronic_diseases")))
    [death_event] = await send(stack, DeathRecorded(record_ref="MZ-1", person_id=person,
                                                    date_of_death=now.date()))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: e["person"]["status"] == "terminated")
    assert found["filings"][0]["state"] == "ended" and found["family_aid"][0]["state"] == "ended"
    events = await events_caused_by(stack, death_event, 1)
    deceased = next(e for e in events if e["type"].endswith("person.deceased.v1"))
    assert deceased["data"]["ended_filings"] and deceased["data"]["ended_authorisations"]
    assert deceased["data"]["ended_chronic_bindings"] == ["organ_transplant_anti_rejection"]

    # An agent's death cancellation for another flexible worker: the result is emailed.
    other, _ = await enroll(stack, kind="flexible")
    applicant = f"agent{uuid.uuid4().hex[:6]}@example.cn"
    await send(stack, DeathCancellationApplied(
        application_id=f"D-{uuid.uuid4().hex[:6]}", person_id=other, date_of_death=now.date(),
        certificate_ref="CERT-9", applicant="agent", agent_id=people.resident_id(),
        agent_mobile=people.mobile(), applicant_email=applicant, channel="window",
        submitted_at=now))
    case = await poll(lambda: _case(stack, other), lambda c: c is not None)
    await send(stack, DeathCancellationReviewed(application_id=case, person_id=other,
                                                decision="approve", reviewer="s2",
                                                decided_at=now))
    mails = await poll(lambda: _value(read_mailbox(stack.mail.folder)),
                       lambda ms: any(applicant in m.recipients for m in ms))
    result = next(m for m in mails if applicant in m.recipients)
    assert result.subject == "死亡注销办理结果" and "已办结" in result.body
    assert other not in result.body
    assert (await enrollment(stack, other))["person"]["status"] == "terminated"


async def test_hospital_events_file_emergencies_and_recognise_without_application(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, mobile = await enroll(stack)
    today = datetime.now(UTC).date()
    await send(stack, EmergencyAdmissionFlagged(
        admission_id=f"ADM{uuid.uuid4().hex[:6]}", person_id=person, hospital_code="H440300",
        treatment_area="440300", admitted_on=today, emergency=True),
        TreatmentRecorded(treatment_id=f"T{uuid.uuid4().hex[:6]}", person_id=person,
                          # A designated hospital of the reference data: the text names it.
                          hospital_code="H21020005", treatment="tumour_chemotherapy",
                          treated_on=today),
        AccidentInjuryFiled(filing_id=f"A{uuid.uuid4().hex[:6]}", person_id=person,
                            hospital_code="H1", in_city=False,
                            admitted_on=today - timedelta(days=40), injury_description="摔伤",
                            no_third_party_declared=True, channel="phone",
                            submitted_at=datetime.now(UTC)))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: bool(e.get("filings")) and bool(e.get("chronic_diseases")))
    assert found["filings"][0]["source"] == "emergency_admission"
    assert found["filings"][0]["kind"] == "temporary"
    assert found["chronic_diseases"][0]["without_application"] is True
    # The late accident filing is refused with its deadline; the recognition is announced.
    await poll(lambda: _value(read_received(stack.sms_dir)),
               lambda s: any(m["to"] == mobile and "已超过意外伤害住院备案的时限" in m["text"]
                             for m in s)
               and any(m["to"] == mobile and "门诊慢特病" in m["text"] for m in s))


async def _case(stack: TestStack, person: str) -> str | None:
    conn = await stack.connect("enrollment")
    try:
        # The subject is found by the keyed hash of the ID, as enrollment finds it.
        return await conn.fetchval("SELECT case_id FROM cases"
                                   " WHERE subject_key = ANY($1::text[])",
                                   resident_keys(person))
    finally:
        await conn.close()


async def _value(value: Any) -> Any:
    return value




async def test_reviews_and_changes_civil_servant_chronic_disease_and_family_aid(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from shared.contracts.channels import (
        ChronicDiseaseApplied,
        ChronicDiseaseReviewed,
        FamilyAidRevoked,
    )
    from shared.contracts.employer import CivilServantBenefitApplied, CivilServantBenefitReviewed

    now = datetime.now(UTC)
    employer = "91210200MA0Y6G3K1" + "0"
    from stdnum.cn import uscc

    employer = employer[:17] + uscc.calc_check_digit(employer[:17])
    cs_app = f"CS-{uuid.uuid4().hex[:6]}"
    await send(stack, EmployerRegistered(employer_code=employer, name="大连市某局",
                                         region_code=REGION, contact_email="hr@gov.example.cn",
                                         channel="window", submitted_at=now),
               CivilServantBenefitApplied(application_id=cs_app, employer_code=employer,
                                          materials=["批准文件.pdf"], submitted_at=now))
    [review_event] = await send(stack, CivilServantBenefitReviewed(
        application_id=cs_app, employer_code=employer, decision="approve", reviewer="s3",
        decided_at=now))
    decided = await events_caused_by(stack, review_event, 1)
    assert decided[0]["type"].endswith("civil-servant-benefit.decided.v1")
    assert decided[0]["data"]["approved"] is True

    person, _ = await enroll(stack, kind="flexible")
    chronic_app = f"CD-{uuid.uuid4().hex[:6]}"
    await send(stack, ChronicDiseaseApplied(
        application_id=chronic_app, person_id=person, action="recognise", disease="diabetes",
        institution_code="H1", channel="wechat", submitted_at=now),
        ChronicDiseaseReviewed(application_id=chronic_app, person_id=person, decision="approve",
                               reviewer="s4", decided_at=now),
        ChronicDiseaseApplied(
            application_id=f"CD-{uuid.uuid4().hex[:6]}", person_id=person,
            action="change_institution", disease="diabetes", institution_code="H2",
            reimbursed_this_month=True, channel="wechat", submitted_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: [c["next_institution_code"]
                                  for c in e.get("chronic_diseases", [])] == ["H2"])
    change = found["chronic_diseases"][0]
    today = china_today()
    first_next = (date(today.year + 1, 1, 1) if today.month == 12
                  else date(today.year, today.month + 1, 1))
    # Reimbursed this month: the change waits for the 1st, and until then the present
    # institution stays designated, so the person is never without one.
    assert change["next_from"] == first_next and change["institution_code"] == "H1"

    auth = f"FA-{uuid.uuid4().hex[:6]}"
    await send(stack, FamilyAidAuthorised(
        authorisation_id=auth, person_id=person, relative_id=people.resident_id(),
        relative_name="张伟", relationship="parent", relative_region="210200",
        commitment_signed=True, id_photo_uploaded=True, channel="alipay", submitted_at=now),
        FamilyAidRevoked(authorisation_id=auth, person_id=person, revoked_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: [a["state"] for a in e.get("family_aid", [])] == ["ended"])


async def decision_waits(stack: TestStack, application_id: str) -> None:
    """Until a staff decision that came before its application is kept waiting for it."""
    conn = await stack.connect("enrollment")
    try:
        await poll(lambda: conn.fetchval("SELECT count(*) FROM awaiting_application"
                                         " WHERE application_id = $1", application_id),
                   lambda n: n == 1)
    finally:
        await conn.close()


async def test_a_decision_that_arrives_before_its_application_waits_for_it(
        stack: TestStack, workers: dict[str, Any]) -> None:
    """The review desk and the channels write different topics: a decision may overtake the
    application it decides. It waits and is applied, with who decided, when it arrives."""
    person, mobile = people.resident_id(), people.mobile()
    app_id, now = f"APP-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    await send(stack, EnrollmentReviewDecided(application_id=app_id, person_id=person,
                                              decision="approve", reviewer="s7", decided_at=now))
    await decision_waits(stack, app_id)
    await send(stack, EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=person, name="张静", insurance_type="resident",
        mobile=mobile, channel="wechat", region_code=REGION, submitted_at=now))
    found = await poll(lambda: enrollment(stack, person),
                       lambda e: e.get("person", {}).get("status") == "pending")
    approved = [h for h in found["history"] if h["what"] == "application approved"]
    assert approved and approved[0]["detail"]["decided_by"]["staff"] == "s7"
