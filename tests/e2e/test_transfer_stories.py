"""Transfer stories between separately deployed regions on one broker and one database server."""
from __future__ import annotations

import json
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.clock import china_today
from shared.contracts.base import Payload
from shared.contracts.channels import (
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    StopContributionRequested,
    TransferOutRequested,
)
from shared.contracts.civil_affairs import DeathRecorded
from shared.contracts.partner import PartnerTransferAcknowledged, PartnerTransferOut
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import DEAD_LETTER, TRANSFER_EVENTS, physical
from shared.contracts.transfer_office import (
    PaperTransferInRecorded,
    TransferFundsReceived,
    TransferInfoSheetIssued,
    TransferLetterTracked,
    TransferMaterialsRequested,
    TransferMaterialsSupplied,
    TransferPaperReplyRecorded,
)
from shared.devstack import people
from shared.devstack.smsc import read_received
from shared.messaging.admin import bootstrap_servers
from shared.messaging.publisher import publish
from shared.messaging.runtime import to_jsonable
from shared.status import collect_status
from tests.conftest import TestStack
from tests.e2e.foreign_partner import ForeignPartner
from tests.e2e.test_enrollment_stories import _value, enroll, paid_up_to_yesterday, send
from tests.helpers import data_of, envelope, header, poll, read_dead_letters, read_topic

DALIAN, JINAN, WEIHAI, BAOTOU, WENZHOU = "210200", "370100", "371000", "150200", "330300"
SHENZHEN = "440300"  # neither served nor connected: reached by paper letter only

pytestmark = pytest.mark.usefixtures("partner_regions")


async def status_in(stack: TestStack, region: str, service: str, ref: str) -> dict[str, Any]:
    """What `medins status` shows, dates as ISO strings the way the HTTP endpoint gives them."""
    found: dict[str, Any] = to_jsonable(
        (await collect_status(stack.settings(region=region), ref)).get(service, {}))
    return found


async def send_in(stack: TestStack, region: str, *payloads: Payload) -> list[str]:
    return await send(stack, *payloads, region=region)


async def enroll_in(stack: TestStack, region: str, person: str, kind: str = "flexible",
                    paid_until: date | None = None) -> str:
    _, mobile = await enroll(stack, kind, paid_until, region=region, person=person)
    await insured_in(stack, region, person, "active")
    return mobile


async def insured_in(stack: TestStack, region: str, person: str, status: str) -> None:
    """Both enrollment and the region's transfer service know the person's status."""
    await poll(lambda: status_in(stack, region, "enrollment", person),
               lambda e: e.get("person", {}).get("status") == status)
    await poll(lambda: status_in(stack, region, "transfer", person),
               lambda t: (t.get("insured_status") or {}).get("status") == status)


async def suspend_in(stack: TestStack, region: str, person: str) -> None:
    await send_in(stack, region, StopContributionRequested(
        request_id=f"STOP-{uuid.uuid4().hex[:6]}", person_id=person, channel="phone",
        requested_at=datetime.now(UTC)))
    await insured_in(stack, region, person, "suspended")


async def suspended_person(stack: TestStack, region: str = DALIAN) -> tuple[str, str]:
    """Someone whose paid period just ended in `region` and who stopped contributing there."""
    person = people.resident_id()
    mobile = await enroll_in(stack, region, person, paid_until=paid_up_to_yesterday())
    await suspend_in(stack, region, person)
    return person, mobile


async def transfer_in(stack: TestStack, region: str, ref: str, done: Any,
                      timeout: float = 30.0) -> dict[str, Any]:
    status = await poll(lambda: status_in(stack, region, "transfer", ref),
                        lambda s: any(done(t) for t in s.get("transfers", [])), timeout)
    return next(t for t in status["transfers"] if done(t))


def stage_is(stage: str, direction: str | None = None) -> Any:
    return lambda t: t["stage"] == stage and direction in (None, t["direction"])


def request(person: str, to_region: str, requested_at: datetime | None = None
            ) -> TransferOutRequested:
    return TransferOutRequested(transfer_id=f"TR-{uuid.uuid4().hex[:10]}", person_id=person,
                                to_region=to_region, channel="national_app",
                                requested_at=requested_at or datetime.now(UTC))


def info_sheet(cmd: TransferOutRequested | str, person: str, months: int = 126,
               balance: int = 345_678) -> TransferInfoSheetIssued:
    transfer_id = cmd if isinstance(cmd, str) else cmd.transfer_id
    return TransferInfoSheetIssued(transfer_id=transfer_id, person_id=person, name="李娜",
                                   contribution_months=months, account_balance_fen=balance,
                                   issued_at=datetime.now(UTC))


async def transfer_events(stack: TestStack, region: str, transfer_id: str, event_type: str,
                          ) -> list[dict[str, Any]]:
    topic = physical(TRANSFER_EVENTS, region=region, namespace=stack.namespace)

    def matching(records: list[Any]) -> list[dict[str, Any]]:
        return [d for d in map(data_of, records) if d["type"] == event_type
                and d["data"].get("transfer_id") == transfer_id]

    return matching(await read_topic(stack.broker_url, topic, lambda rs: bool(matching(rs))))


def http_status(stack: TestStack, key: str, ref: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.web_ports[key]}/status/{ref}"
    shown: dict[str, Any] = json.loads(urllib.request.urlopen(url, timeout=5).read())
    return shown


async def test_dalian_to_jinan_cross_province_electronic(stack: TestStack) -> None:
    person, mobile = await suspended_person(stack, DALIAN)
    await enroll_in(stack, JINAN, person)
    cmd = request(person, JINAN)
    await send_in(stack, DALIAN, cmd)
    accepted = await transfer_in(stack, DALIAN, cmd.transfer_id,
                                 stage_is("awaiting_info_sheet"))
    received_event = (await transfer_events(stack, DALIAN, cmd.transfer_id,
                                            "cn.medins.transfer.request.received.v1"))[0]
    assert accepted["due_on"] == received_event["data"]["due_on"]
    assert accepted["working_days_left"] == 15  # cross-province, started today
    # The 15 working days are the policy book's (notice 003), recorded with the transfer.
    assert accepted["clock_source"] == "policy 2026.1, measure 210200-2026.1-transfer-deadlines"
    await send_in(stack, DALIAN, info_sheet(cmd, person))
    # Jinan took the person in and waits for the balance (its own 5-day leg).
    incoming = await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("received", "in"))
    assert (incoming["contribution_months"], incoming["account_balance_fen"]) == (126, 345_678)
    await send_in(stack, JINAN, TransferFundsReceived(
        transfer_id=cmd.transfer_id, person_id=person, from_region=DALIAN,
        amount_fen=345_678, received_at=datetime.now(UTC)))
    done = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("completed"))
    merged = await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("completed", "in"))
    # What left Dalian arrived in Jinan, exactly.
    assert (done["credited_months"], done["credited_balance_fen"]) == (
        merged["credited_months"], merged["credited_balance_fen"]) == (126, 345_678)
    assert [s["stage"] for s in done["stages"]] == ["awaiting_info_sheet", "sent", "completed"]
    await insured_in(stack, DALIAN, person, "transferred_out")
    sms = await poll(lambda: _value(read_received(stack.sms_dir)),
                     lambda s: any(m["to"] == mobile and "已转入济南" in m["text"] for m in s))
    assert any("3456.78元" in m["text"] for m in sms if m["to"] == mobile)
    # The HTTP read endpoint shows the same progress, masked.
    shown = http_status(stack, "transfer", cmd.transfer_id)
    assert person not in json.dumps(shown)
    assert shown["transfers"][0]["stage"] == "completed"
    assert shown["transfers"][0]["due_on"] == accepted["due_on"]


async def enroll_from_today(stack: TestStack, region: str, person: str) -> None:
    """A flexible worker whose first paid period starts today in `region`."""
    app_id, now, today = f"APP-{uuid.uuid4().hex[:8]}", datetime.now(UTC), china_today()
    await send_in(stack, region, EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=person, name="张静", insurance_type="flexible",
        mobile=people.mobile(), channel="wechat", region_code=region, submitted_at=now),
        EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                reviewer="s1", decided_at=now),
        ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id=app_id,
            insurance_type="flexible", period_start=today,
            period_end=date(today.year, 12, 31), amount_fen=40_000, paid_at=now))
    await insured_in(stack, region, person, "active")


async def test_weihai_to_jinan_intra_province_ends_weihai_the_day_before(
        stack: TestStack) -> None:
    """免申即享: enrolling in Jinan while insured in Weihai ends Weihai's coverage the day before
    Jinan's starts (no gap, no overlap), suspends the person there and starts the transfer."""
    person = people.resident_id()
    await enroll_in(stack, WEIHAI, person, paid_until=paid_up_to_yesterday() + timedelta(30))
    await enroll_from_today(stack, JINAN, person)
    started = await transfer_in(stack, WEIHAI, person, stage_is("awaiting_info_sheet"))
    assert started["trigger"] == "automatic"
    assert [s["stage"] for s in started["stages"]] == ["awaiting_suspension",
                                                       "awaiting_info_sheet"]
    since = date.fromisoformat(started["partner_active_since"])
    assert since == china_today()
    last_day = (since - timedelta(days=1)).isoformat()
    ended = await transfer_events(stack, WEIHAI, started["transfer_id"],
                                  "cn.medins.transfer.coverage-end.requested.v1")
    assert ended[0]["data"]["last_day"] == last_day
    await insured_in(stack, WEIHAI, person, "suspended")
    weihai = await status_in(stack, WEIHAI, "enrollment", person)
    assert max(c["end_date"] for c in weihai["coverage"]) == last_day
    jinan = await status_in(stack, JINAN, "enrollment", person)
    assert min(c["start_date"] for c in jinan["coverage"]) == since.isoformat()
    assert started["working_days_left"] == 9  # intra-province
    transfer_id = started["transfer_id"]
    # Resident insurance has no personal account: Jinan merges the record at once.
    await send_in(stack, WEIHAI, info_sheet(transfer_id, person, months=36, balance=0))
    done = await transfer_in(stack, WEIHAI, transfer_id, stage_is("completed"))
    assert (done["credited_months"], done["credited_balance_fen"]) == (36, 0)
    merged = await transfer_in(stack, JINAN, transfer_id, stage_is("completed", "in"))
    assert merged["trigger"] == "automatic" and merged["credited_months"] == 36
    assert merged["reconciled"] is True
    await insured_in(stack, WEIHAI, person, "transferred_out")
    assert (await status_in(stack, JINAN, "enrollment", person))["person"]["status"] == "active"
    assert len((await status_in(stack, WEIHAI, "transfer", person))["transfers"]) == 1


async def test_paper_transfer_in_keyed_in_by_the_office_credits_the_person(
        stack: TestStack) -> None:
    """A contact letter from Shenzhen (not served, not connected) with a balance: Dalian's
    office keys it in, finance confirms the money, the person is credited."""
    person = people.resident_id()
    await enroll_in(stack, DALIAN, person)
    letter = PaperTransferInRecorded(
        transfer_id=f"SZ-{uuid.uuid4().hex[:8]}", person_id=person, from_region=SHENZHEN,
        name="李娜", insurance_type="flexible", contribution_months=60,
        account_balance_fen=12_345, tracking_number="EMS1234567890",
        received_at=datetime.now(UTC), recorded_by="clerk7")
    await send_in(stack, DALIAN, letter)
    waiting = await transfer_in(stack, DALIAN, letter.transfer_id, stage_is("received", "in"))
    assert (waiting["mode"], waiting["from_region"], waiting["tracking_number"]) == (
        "paper", SHENZHEN, "EMS1234567890")
    assert waiting["reconciled"] is None and waiting["leg_due_on"] is not None
    await send_in(stack, DALIAN, letter)  # keyed in twice: one transfer
    await send_in(stack, DALIAN, TransferFundsReceived(
        transfer_id=letter.transfer_id, person_id=person, from_region=SHENZHEN,
        amount_fen=12_345, received_at=datetime.now(UTC)))
    done = await transfer_in(stack, DALIAN, letter.transfer_id, stage_is("completed", "in"))
    assert (done["credited_months"], done["credited_balance_fen"], done["reconciled"]) == (
        60, 12_345, True)
    completed = (await transfer_events(stack, DALIAN, letter.transfer_id,
                                       "cn.medins.transfer.transfer-in.completed.v1"))[0]
    expected = {"credited_months": 60, "credited_balance_fen": 12_345, "mode": "paper",
                "insurance_type": "flexible", "sent_months": 60, "sent_balance_fen": 12_345,
                "tracking_number": "EMS1234567890", "accepted_on": done["completed_on"]}
    assert {k: completed["data"][k] for k in expected} == expected
    credited = await poll(lambda: status_in(stack, DALIAN, "enrollment", person),
                          lambda e: bool(e.get("transfer_credits")))
    assert [(c["from_region"], c["credited_months"], c["credited_balance_fen"], c["mode"])
            for c in credited["transfer_credits"]] == [(SHENZHEN, 60, 12_345, "paper")]
    assert len((await status_in(stack, DALIAN, "transfer", person))["transfers"]) == 1


async def test_a_transfer_to_any_region_of_china_goes_by_letter(stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    cmd = request(person, SHENZHEN)
    await send_in(stack, DALIAN, cmd, info_sheet(cmd, person, months=24, balance=5_000))
    pending = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("letter_pending"))
    assert pending["mode"] == "paper" and pending["due_on"] is not None


async def test_foreign_partner_written_with_aiokafka_only(stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    cmd = request(person, BAOTOU)
    await send_in(stack, DALIAN, cmd, info_sheet(cmd, person, months=60, balance=12_345))
    partner = ForeignPartner(bootstrap_servers(stack.broker_url), stack.namespace, BAOTOU)
    received = await partner.receive_transfer(cmd.transfer_id)
    assert received["_key"] == person and received["regioncode"] == DALIAN
    assert received["data"]["account_balance_fen"] == 12_345
    assert received["data"]["in_leg_days"] == 5
    await partner.answer(received, accept=True)
    done = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("completed"))
    assert (done["credited_months"], done["credited_balance_fen"]) == (60, 12_345)


async def test_partner_refusal_is_passed_back_and_the_insurance_stays(stack: TestStack) -> None:
    person, mobile = await suspended_person(stack, DALIAN)  # never enrolled in Jinan
    cmd = request(person, JINAN)
    await send_in(stack, DALIAN, cmd, info_sheet(cmd, person))
    failed = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("failed"))
    assert "济南市未查到您的正常参保记录" in failed["reason"]
    refused = await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("refused", "in"))
    assert refused["credited_months"] is None
    assert (await status_in(stack, DALIAN, "enrollment", person))["person"]["status"] == (
        "suspended")
    await poll(lambda: _value(read_received(stack.sms_dir)),
               lambda s: any(m["to"] == mobile and "未能转入" in m["text"] for m in s))


async def test_paper_letter_to_a_partner_that_is_not_interconnected(stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    cmd = request(person, WENZHOU)
    await send_in(stack, DALIAN, cmd, info_sheet(cmd, person, months=24, balance=5_000))
    pending = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("letter_pending"))
    assert pending["mode"] == "paper"
    tracking, now = "XA120045678CN", datetime.now(UTC)
    await send_in(stack, DALIAN, *(
        TransferLetterTracked(transfer_id=cmd.transfer_id, person_id=person,
                              tracking_number=tracking, mail_event=event, occurred_at=now)
        for event in ("sent", "received")))
    delivered = await transfer_in(stack, DALIAN, tracking, stage_is("letter_received"))
    assert delivered["tracking_number"] == tracking
    assert delivered["estimated_completion"] is not None
    await send_in(stack, DALIAN, TransferPaperReplyRecorded(
        transfer_id=cmd.transfer_id, person_id=person, accepted=True, credited_months=24,
        credited_balance_fen=5_000, recorded_by="clerk7"))
    done = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("completed"))
    assert [s["stage"] for s in done["stages"]] == [
        "awaiting_info_sheet", "letter_pending", "letter_sent", "letter_received", "completed"]
    await insured_in(stack, DALIAN, person, "transferred_out")


async def test_death_in_the_destination_cancels_both_sides(stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    await enroll_in(stack, JINAN, person)
    cmd = request(person, JINAN)
    await send_in(stack, DALIAN, cmd, info_sheet(cmd, person))
    await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("received", "in"))
    await send_in(stack, JINAN, DeathRecorded(record_ref=f"MZ-{uuid.uuid4().hex[:6]}",
                                              person_id=person, date_of_death=date.today()))
    here = await transfer_in(stack, JINAN, cmd.transfer_id, stage_is("cancelled", "in"))
    there = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("cancelled"))
    assert "died" in here["reason"] and "cancelled by 370100" in there["reason"]
    # The balance arriving afterwards changes nothing.
    await send_in(stack, JINAN, TransferFundsReceived(
        transfer_id=cmd.transfer_id, person_id=person, from_region=DALIAN, amount_fen=345_678,
        received_at=datetime.now(UTC)))
    refused = await transfer_events(stack, JINAN, cmd.transfer_id,
                                    "cn.medins.transfer.command.refused.v1")
    assert refused[0]["data"]["rule"] == "out_of_order"
    # Nor does an acknowledgement that arrives late at Dalian.
    late = PartnerTransferAcknowledged(
        transfer_id=cmd.transfer_id, person_id=person, from_region=DALIAN, to_region=JINAN,
        credited_months=126, credited_balance_fen=345_678, accepted_on=date.today())
    await publish(stack.broker_url, physical("transfer.partner", region=DALIAN,
                                             namespace=stack.namespace),
                  [envelope(late, region=JINAN)])
    there = await transfer_in(stack, DALIAN, cmd.transfer_id,
                              lambda t: bool(t["ignored_answers"]))
    assert there["stage"] == "cancelled" and there["ignored_answers"][0]["reason"] == "late"


async def test_stray_answers_change_nothing_and_are_counted(stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    cmd = request(person, BAOTOU)
    await send_in(stack, DALIAN, cmd)
    await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("awaiting_info_sheet"))

    def ack(transfer_id: str, months: int = 60) -> PartnerTransferAcknowledged:
        return PartnerTransferAcknowledged(
            transfer_id=transfer_id, person_id=person, from_region=DALIAN, to_region=BAOTOU,
            credited_months=months, credited_balance_fen=100, accepted_on=date.today())

    # Out of order (nothing sent yet) and an unknown transfer, from the partner.
    inbox = physical("transfer.partner", region=DALIAN, namespace=stack.namespace)
    await publish(stack.broker_url, inbox, [envelope(ack(cmd.transfer_id), region=BAOTOU),
                                            envelope(ack("TR-NEVER-SENT"), region=BAOTOU)])
    # The inbox and the office's commands are different topics: wait before moving on.
    await transfer_in(stack, DALIAN, cmd.transfer_id, lambda t: len(t["ignored_answers"]) == 1)
    await send_in(stack, DALIAN, info_sheet(cmd, person, months=60, balance=100))
    await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("sent"))
    # A real answer, then the same answer again under a new id, and one from another region.
    first = envelope(ack(cmd.transfer_id), region=BAOTOU)
    again = envelope(ack(cmd.transfer_id), region=BAOTOU)
    # Wenzhou answers as itself (signed, its own code as the answering end): not its transfer.
    stranger = envelope(ack(cmd.transfer_id, months=1).model_copy(update={"to_region": WENZHOU}),
                        region=WENZHOU)
    await publish(stack.broker_url, inbox, [stranger])
    await publish(stack.broker_url, inbox, [first, again])
    done = await transfer_in(stack, DALIAN, cmd.transfer_id, lambda t: t["stage"] == "completed"
                             and len(t["ignored_answers"]) == 3)
    assert [a["reason"] for a in done["ignored_answers"]] == [
        "out_of_order", "wrong_partner", "duplicate"]
    assert done["credited_months"] == 60
    unknown = await status_in(stack, DALIAN, "transfer", "TR-NEVER-SENT")
    assert unknown["ignored_answers"][0]["reason"] == "unknown_transfer"
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{stack.web_ports['transfer']}/metrics", timeout=5).read().decode()
    for reason in ("out_of_order", "wrong_partner", "duplicate", "unknown_transfer"):
        assert f'medins_transfer_answers_ignored_total{{reason="{reason}"}}' in metrics
    log = stack.log_path("transfer").read_text(encoding="utf-8")
    assert "transfer answer ignored" in log and person not in log


async def test_waiting_on_the_person_stops_the_clocks(stack: TestStack) -> None:
    person, _ = await suspended_person(stack, DALIAN)
    cmd = request(person, JINAN)
    await send_in(stack, DALIAN, cmd)
    accepted = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("awaiting_info_sheet"))
    # The office's own timestamps are information: the platform's date of receipt counts.
    await send_in(stack, DALIAN, TransferMaterialsRequested(
        transfer_id=cmd.transfer_id, person_id=person, missing=["户口迁移证明"],
        requested_at=datetime(2026, 9, 29, 2, 0, tzinfo=UTC)))
    paused = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("waiting_on_person"))
    assert paused["clocks_stopped"] is True and paused["estimated_completion"] is None
    assert paused["paused_since"] == accepted["started_on"]
    # Supplied "in the future" by the office's clock: refused, the clocks stay stopped.
    await send_in(stack, DALIAN, TransferMaterialsSupplied(
        transfer_id=cmd.transfer_id, person_id=person,
        supplied_at=datetime.now(UTC) + timedelta(days=3)))
    refused = await transfer_events(stack, DALIAN, cmd.transfer_id,
                                    "cn.medins.transfer.command.refused.v1")
    assert refused[0]["data"]["rule"] == "future_timestamp"
    await send_in(stack, DALIAN, TransferMaterialsSupplied(
        transfer_id=cmd.transfer_id, person_id=person, supplied_at=datetime.now(UTC)))
    resumed = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("awaiting_info_sheet"))
    assert (resumed["due_on"], resumed["paused_working_days"]) == (accepted["due_on"], 0)


async def test_a_request_dated_in_the_future_is_refused_in_plain_chinese(
        stack: TestStack) -> None:
    person, mobile = await suspended_person(stack, DALIAN)
    cmd = request(person, JINAN, requested_at=datetime(2031, 3, 3, 2, 0, tzinfo=UTC))
    await send_in(stack, DALIAN, cmd)
    refused = await transfer_in(stack, DALIAN, cmd.transfer_id, stage_is("refused"))
    assert refused["reason"] == "申请时间晚于平台收到申请的时间，未能受理，请重新提交申请"
    await poll(lambda: _value(read_received(stack.sms_dir)),
               lambda s: any(m["to"] == mobile and "未能受理" in m["text"] for m in s))


async def test_a_transfer_addressed_to_another_region_is_not_taken_in(stack: TestStack) -> None:
    person = people.resident_id()
    misrouted = envelope(PartnerTransferOut(
        transfer_id="TR-MISROUTED", person_id=person, from_region=WEIHAI, to_region=JINAN,
        name="李娜", insurance_type="resident", contribution_months=12, account_balance_fen=0,
        trigger="application", started_on=date(2026, 11, 2), due_on=date(2026, 11, 13),
        in_leg_days=3), region=WEIHAI)
    await publish(stack.broker_url, physical("transfer.partner", region=DALIAN,
                                             namespace=stack.namespace), [misrouted])
    topic = physical(DEAD_LETTER, region=DALIAN, namespace=stack.namespace)
    records = await read_dead_letters(stack.broker_url, topic, lambda rs: any(
        data_of(r)["id"] == misrouted.id for r in rs))
    dead = next(r for r in records if data_of(r)["id"] == misrouted.id)
    assert "data.to_region: addressed to 370100" in (header(dead, "dlq-reason") or "")
    assert (await status_in(stack, DALIAN, "transfer", "TR-MISROUTED")) == {}
