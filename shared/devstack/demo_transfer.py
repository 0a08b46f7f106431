"""`medins demo`'s transfer story: a flexible worker moves from one running region to another."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console

from shared.clock import china_today
from shared.contracts.base import Payload
from shared.contracts.channels import (
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    StopContributionRequested,
    TransferOutRequested,
)
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.transfer_office import TransferFundsReceived, TransferInfoSheetIssued
from shared.devstack import people
from shared.devstack.demo import send, show_local_servers, wait_for
from shared.identity import REGIONS, same_province
from shared.observability.masking import mask_text
from shared.settings import PlatformSettings


def _transfer(found: dict[str, Any], direction: str) -> dict[str, Any]:
    return next((t for t in found.get("transfer", {}).get("transfers", [])
                 if t["direction"] == direction), {})


async def run_transfer_demo(settings: PlatformSettings, console: Console, to_region: str) -> None:
    here, there = settings, settings.model_copy(update={"region": to_region})
    clock = ("9 working days, within the province" if same_province(here.region, to_region)
             else "15 working days, across provinces")
    person, mobile, name = people.resident_id(), people.mobile(), people.name()
    now, transfer_id = datetime.now(UTC), f"TRF-{uuid.uuid4().hex[:10].upper()}"
    console.rule(f"transfer {REGIONS[here.region].name} → {REGIONS[to_region].name}")
    console.print(f"[bold]Story:[/] {mask_text(person)}, a flexible worker whose paid period "
                  f"just ended in {here.region}, stops paying, enrols in {to_region} and moves "
                  "there")

    def enrolment(region: PlatformSettings, paid_until: date) -> list[Payload]:
        app_id = f"APP-{uuid.uuid4().hex[:10].upper()}"
        return [EnrollmentApplicationSubmitted(
            application_id=app_id, person_id=person, name=name, insurance_type="flexible",
            mobile=mobile, channel="wechat", region_code=region.region, submitted_at=now),
            EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                    reviewer="staff-017", decided_at=now),
            ContributionPaymentConfirmed(
                payment_ref=f"TAX-{uuid.uuid4().hex[:12].upper()}", person_id=person,
                application_id=app_id, insurance_type="flexible",
                period_start=date(paid_until.year, 1, 1), period_end=paid_until,
                amount_fen=360_000, paid_at=now)]

    def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
        return lambda f: (f.get("transfer", {}).get("insured_status") or {}).get(
            "status") == status

    steps: list[tuple[str, PlatformSettings, list[Payload], Callable[[dict[str, Any]], bool]]] = [
        (f"insured in {here.region}", here, enrolment(here, china_today() - timedelta(days=1)),
         status_is("active")),
        (f"stops paying in {here.region}: suspended", here, [StopContributionRequested(
            request_id=f"STOP-{uuid.uuid4().hex[:8]}", person_id=person, channel="phone",
            requested_at=now)], status_is("suspended")),
        (f"enrols in {to_region}: active there", there,
         enrolment(there, date(china_today().year, 12, 31)), status_is("active")),
        (f"asks {here.region} to transfer out (Alipay)", here, [TransferOutRequested(
            transfer_id=transfer_id, person_id=person, to_region=to_region, channel="alipay",
            requested_at=now)],
         lambda f: _transfer(f, "out").get("stage") == "awaiting_info_sheet"),
        (f"{here.region}'s office issues the information sheet: sent electronically", here,
         [TransferInfoSheetIssued(transfer_id=transfer_id, person_id=person, name=name,
                                  contribution_months=86, account_balance_fen=523_417,
                                  issued_at=now)],
         lambda f: _transfer(f, "out").get("stage") == "sent"),
        (f"{to_region} took the person in; its finance confirms the balance arrived", there,
         [TransferFundsReceived(transfer_id=transfer_id, person_id=person,
                                from_region=here.region, amount_fen=523_417,
                                received_at=now)],
         lambda f: _transfer(f, "in").get("stage") == "completed"),
    ]
    with console.status("running the transfer...") as spinner:
        for label, region, payloads, done in steps:
            spinner.update(label)
            for payload in payloads:
                await send(region, payload, "/channels/demo")
            took = await wait_for(region, person, done)
            console.print(f"  [green]✓[/] {label}  ({took:.2f}s)")
        spinner.update(f"{here.region} completes on {to_region}'s acknowledgement")
        took = await wait_for(here, person, lambda f: _transfer(f, "out").get("stage")
                              == "completed" and status_is("transferred_out")(f))
        console.print(f"  [green]✓[/] {here.region} reconciled and marked the person "
                      f"transferred_out  ({took:.2f}s)")
        await wait_for(here, person, lambda f: any(
            m["template"] == "transfer.completed" and m["status"] == "sent"
            for m in f.get("notify", {}).get("messages", [])))
    t = _transfer(await _status(here, person), "out")
    console.print(f"  due {t['due_on']} ({clock}; the transfer-out office's leg "
                  f"{t['leg_due_on']}); moved {t['credited_months']} months and "
                  f"{t['credited_balance_fen']} fen; stages: "
                  + " → ".join(s["stage"] for s in t["stages"]), highlight=False)
    show_local_servers(console, mobile, "")
    console.print(f"Follow it with `medins status {transfer_id}` (each region's transfer "
                  f"worker also serves /status/{transfer_id}).", highlight=False)


async def _status(settings: PlatformSettings, ref: str) -> dict[str, Any]:
    from shared.status import collect_status

    return await collect_status(settings, ref)
