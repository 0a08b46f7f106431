"""`medins demo`: a resident enrolls, is approved, pays, and is told by SMS and email."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console

from shared.clock import china_today
from shared.contracts.base import Payload
from shared.contracts.channels import (
    ClaimSubmitted,
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    RemoteTreatmentFilingApplied,
    StopContributionRequested,
    TransferOutRequested,
)
from shared.contracts.envelope import new_envelope
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import physical
from shared.devstack import people
from shared.messaging.publisher import publish
from shared.observability.masking import mask_text
from shared.settings import PlatformSettings
from shared.status import collect_status


async def send(settings: PlatformSettings, payload: Payload, source: str) -> None:
    envelope = new_envelope(payload.event_type, payload, source=source, region=settings.region)
    topic = physical(payload.topic, region=settings.region, namespace=settings.namespace)
    await publish(settings.broker_url, topic, [envelope])


async def wait_for(settings: PlatformSettings, ref: str,
                   check: Callable[[dict[str, Any]], bool], within: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        found = await collect_status(settings, ref)
        if found and check(found):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the platform did not reach the expected state within {within}s")


def _person_status(found: dict[str, Any]) -> str | None:
    status: str | None = found.get("enrollment", {}).get("person", {}).get("status")
    return status


def _sent(found: dict[str, Any], template: str, channel: str) -> bool:
    return any(m["template"] == template and m["channel"] == channel and m["status"] == "sent"
               for m in found.get("notify", {}).get("messages", []))


async def run_demo(settings: PlatformSettings, console: Console,
                   proactive_size: int = 1000, partner_region: str | None = None) -> int:
    now = datetime.now(UTC)
    person = people.resident_id(settings.region)
    application_id = f"APP-{uuid.uuid4().hex[:10].upper()}"
    console.print(f"[bold]Story:[/] {mask_text(person)} applies for resident insurance "
                  f"in region {settings.region} through WeChat ({application_id})")
    mobile, email = people.mobile(), f"demo.{uuid.uuid4().hex[:6]}@example.cn"
    steps: list[tuple[str, Payload, str, Callable[[dict[str, Any]], bool]]] = [
        ("application submitted (WeChat)", EnrollmentApplicationSubmitted(
            application_id=application_id, person_id=person, name=people.name(),
            insurance_type="resident", mobile=mobile, email=email, channel="wechat",
            region_code=settings.region, submitted_at=now, materials=["id_card.jpg"]),
         "/channels/wechat",
         lambda f: any(a["state"] == "submitted"
                       for a in f.get("enrollment", {}).get("applications", []))),
        ("staff review approves", EnrollmentReviewDecided(
            application_id=application_id, person_id=person, decision="approve",
            reviewer="staff-017", decided_at=now), "/agency/review",
         lambda f: _person_status(f) == "pending"),
        ("tax authority confirms the contribution", ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:12].upper()}", person_id=person,
            application_id=application_id, insurance_type="resident",
            period_start=date(now.year, 1, 1), period_end=date(now.year, 12, 31),
            amount_fen=40_000, paid_at=now), "/gov/tax", lambda f: _person_status(f) == "active"),
    ]
    with console.status("running the story...") as spinner:
        for label, payload, source, done in steps:
            spinner.update(label)
            await send(settings, payload, source)
            took = await wait_for(settings, person, done)
            console.print(f"  [green]✓[/] {label}  ({took:.2f}s)")
        spinner.update("notify sends SMS and email")
        took = await wait_for(settings, person, lambda f: _sent(f, "enrollment.activated", "sms")
                              and _sent(f, "enrollment.activated", "email"))
        console.print(f"  [green]✓[/] person told by SMS and email  ({took:.2f}s)")
        claim_id = f"CLM-{uuid.uuid4().hex[:10].upper()}"
        await send(settings, ClaimSubmitted(
            claim_id=claim_id, person_id=person, invoice_no=f"INV{uuid.uuid4().hex[:8]}",
            institution_code="H21020001", expense_date=now.date() - timedelta(days=20),
            amount_fen=128_050, channel="national_app", submitted_at=now), "/channels/app")
        took = await wait_for(settings, claim_id, lambda f: bool(f.get("reimbursement")))
        console.print(f"  [green]✓[/] reimbursement claim received  ({took:.2f}s)")
        transfer_id = f"TRF-{uuid.uuid4().hex[:10].upper()}"
        await send(settings, TransferOutRequested(
            transfer_id=transfer_id, person_id=person, to_region="370100", channel="alipay",
            requested_at=now), "/channels/alipay")
        took = await wait_for(settings, transfer_id, lambda f: bool(f.get("transfer", {})
                                                                     .get("transfers")))
        transfer = (await collect_status(settings, transfer_id))["transfer"]["transfers"][0]
        console.print(f"  [green]✓[/] transfer-out request {transfer['stage']}: "
                      f"{transfer['reason'] or 'accepted'}  ({took:.2f}s)")
    await remote_filing_and_stop_story(settings, console)
    if proactive_size:
        from shared.devstack.demo_proactive import run_proactive_demo

        await run_proactive_demo(settings, console, proactive_size)
    if partner_region:
        from shared.devstack.demo_transfer import run_transfer_demo

        await run_transfer_demo(settings, console, partner_region)
    else:
        console.print("Only one region runs: start `medins up --regions 210200,370100` to see "
                      "a transfer move between two regions.", highlight=False)
    notify = (await collect_status(settings, person))["notify"]["messages"]
    for m in notify:
        console.print(f"  {m['channel']:>5} → {mask_text(m['recipient'])}: {m['template']} "
                      f"[{m['status']}, {m['delivery_state']}]", highlight=False, markup=False)
    show_local_servers(console, mobile, email)
    console.print(f"See the messages with `medins mail`; the whole record with "
                  f"`medins status {person}`.", highlight=False)
    return 0


def show_local_servers(console: Console, mobile: str, email: str) -> None:
    """What the local SMSC and SMTP server of `medins up` received for this person."""
    from shared.devstack.mailserver import read_mailbox
    from shared.devstack.smsc import read_received
    from shared.devstack.supervisor import STATE_DIR

    sms = [m for m in read_received(STATE_DIR / "sms") if m["to"] == mobile]
    mails = [m for m in read_mailbox(STATE_DIR / "mail") if email in m.recipients]
    if not sms and not mails:
        return  # the platform runs against real gateways: nothing local to show
    console.rule("received by the local SMSC (SMPP) and SMTP server")
    for m in sms:
        console.print(f"[bold]SMS[/] to {mask_text(mobile)} ({m['parts']} part(s), UCS-2): "
                      f"{m['text']}", highlight=False)
    for mail in mails:
        console.print(f"[bold]email[/] to {mask_text(email)}: {mail.subject}", highlight=False)
        console.print(mail.body, highlight=False)


async def remote_filing_and_stop_story(settings: PlatformSettings, console: Console) -> None:
    """A flexible worker whose paid period just ended files long-term care elsewhere, then
    stops paying."""
    now = datetime.now(UTC)
    yesterday = china_today() - timedelta(days=1)
    person, app_id = people.resident_id(settings.region), f"APP-{uuid.uuid4().hex[:10].upper()}"
    filing_id = f"FIL-{uuid.uuid4().hex[:8].upper()}"
    console.print(f"[bold]Story:[/] {mask_text(person)}, a flexible worker paid up to "
                  f"{yesterday.isoformat()}, files long-term treatment in Shenzhen, then stops")

    def status(f: dict[str, Any]) -> str | None:
        return _person_status(f)

    steps: list[tuple[str, Payload, Callable[[dict[str, Any]], bool]]] = [
        ("enrollment applied", EnrollmentApplicationSubmitted(
            application_id=app_id, person_id=person, name=people.name(),
            insurance_type="flexible", mobile=people.mobile(), channel="national_app",
            region_code=settings.region, submitted_at=now),
         lambda f: bool(f.get("enrollment", {}).get("applications"))),
        ("approved", EnrollmentReviewDecided(
            application_id=app_id, person_id=person, decision="approve", reviewer="staff-017",
            decided_at=now), lambda f: status(f) == "pending"),
        ("tax authority confirms the contribution for a period that ended yesterday",
         ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:12].upper()}", person_id=person,
            application_id=app_id, insurance_type="flexible",
            period_start=date(yesterday.year, 1, 1), period_end=yesterday,
            amount_fen=360_000, paid_at=now), lambda f: status(f) == "active"),
        ("long-term remote-treatment filing (backfilled 3 days)", RemoteTreatmentFilingApplied(
            filing_id=filing_id, person_id=person, kind="long_term",
            long_term_reason="resident_elsewhere", treatment_area="440300",
            start_date=now.date() - timedelta(days=3), chronic_diseases=["hypertension"],
            channel="wechat", submitted_at=now),
         lambda f: any(x["state"] == "active"
                       for x in f.get("enrollment", {}).get("filings", []))),
        ("stop contributions: the paid period is over, so suspended now",
         StopContributionRequested(request_id=f"STOP-{uuid.uuid4().hex[:8].upper()}",
                                   person_id=person, channel="phone", requested_at=now),
         lambda f: status(f) == "suspended"),
    ]
    for label, payload, done in steps:
        await send(settings, payload, "/channels/demo")
        took = await wait_for(settings, person, done)
        console.print(f"  [green]✓[/] {label}  ({took:.2f}s)")
    found = await collect_status(settings, person)
    filing = found["enrollment"]["filings"][0]
    console.print(f"  filing {filing['filing_id']} is now {filing['state']} (insured status "
                  f"changed); history: "
                  + ", ".join(h["what"] for h in found["enrollment"]["history"]),
                  highlight=False)
