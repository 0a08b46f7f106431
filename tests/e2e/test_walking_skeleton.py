"""The enrollment story through the real broker, PostgreSQL, SMTP server and all four workers."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.clock import china_today
from shared.contracts.channels import (
    ClaimSubmitted,
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    TransferOutRequested,
)
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import (
    ENROLLMENT_FROM_CHANNELS,
    ENROLLMENT_FROM_REVIEW_DESK,
    REIMBURSEMENT_FROM_CHANNELS,
    TAX_PAYMENTS,
    TRANSFER_FROM_CHANNELS,
    physical,
)
from shared.devstack import people
from shared.devstack.mailserver import read_mailbox
from shared.devstack.smsc import read_received
from shared.messaging.publisher import publish
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.helpers import envelope, poll


async def send(stack: TestStack, logical: str, payload: Any) -> None:
    await publish(stack.broker_url, physical(logical, region=REGION, namespace=stack.namespace),
                  [envelope(payload)])


async def test_resident_enrolls_pays_and_is_told_by_sms_and_email(
        stack: TestStack, workers: dict[str, Any]) -> None:
    settings = stack.settings()
    person, mobile = people.resident_id(), people.mobile()
    mail_to = f"p{uuid.uuid4().hex[:6]}@example.cn"
    now = datetime.now(UTC)
    year = china_today().year
    await send(stack, ENROLLMENT_FROM_CHANNELS, EnrollmentApplicationSubmitted(
        application_id="APP-E2E-1", person_id=person, name="刘洋", insurance_type="resident",
        mobile=mobile, email=mail_to, channel="wechat", region_code=REGION, submitted_at=now))
    await send(stack, ENROLLMENT_FROM_REVIEW_DESK, EnrollmentReviewDecided(
        application_id="APP-E2E-1", person_id=person, decision="approve", reviewer="s1",
        decided_at=now))

    async def status() -> dict[str, Any]:
        return await collect_status(settings, person)

    found = await poll(status, lambda f: f.get("enrollment", {}).get("person", {})
                       .get("status") == "pending")
    await send(stack, TAX_PAYMENTS, ContributionPaymentConfirmed(
        payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id="APP-E2E-1",
        insurance_type="resident", period_start=date(year, 1, 1), period_end=date(year, 12, 31),
        amount_fen=40_000, paid_at=now))
    found = await poll(status, lambda f: f["enrollment"]["person"]["status"] == "active")
    assert found["enrollment"]["person"]["paid_until"] == date(year, 12, 31)
    whats = [h["what"] for h in found["enrollment"]["history"]]
    assert whats == ["application submitted", "application approved", "status changed",
                     "payment applied", "application paid", "status changed",
                     "coverage changed"]
    assert [(c["start_date"], c["end_date"]) for c in found["enrollment"]["coverage"]] == [
        (date(year, 1, 1), date(year, 12, 31))]
    # Who approved: the member of staff the review desk named, under its verified key.
    approved = next(h for h in found["enrollment"]["history"]
                    if h["what"] == "application approved")
    assert approved["detail"]["decided_by"]["staff"] == "s1"
    assert approved["detail"]["decided_by"]["key"].startswith("review-desk/")

    # The other services learned the status from enrollment's events.
    found = await poll(status, lambda f: (f.get("transfer", {}).get("insured_status") or {})
                       .get("status") == "active"
                       and (f.get("reimbursement", {}).get("insured_status") or {})
                       .get("status") == "active")

    # The person is told, through the real SMTP server, in Chinese.
    mails = await poll(lambda: _async(read_mailbox(stack.mail.folder)),
                       lambda ms: any(mail_to in m.recipients and m.subject == "参保生效通知"
                                      for m in ms))
    activated = next(m for m in mails if mail_to in m.recipients and m.subject == "参保生效通知")
    assert "刘洋" in activated.body and f"{year}-12-31" in activated.body
    assert person not in activated.body  # the ID is shown masked
    sms = await poll(lambda: _async(read_received(stack.sms_dir)),
                     lambda s: any(m["to"] == mobile and "参保状态为正常" in m["text"] for m in s))
    activated_sms = [m for m in sms if m["to"] == mobile and "参保状态为正常" in m["text"]]
    assert len(activated_sms) == 1 and activated_sms[0]["data_coding"] == 8  # UCS-2

    # Operations see the sends on the notify worker's /metrics.
    import urllib.request

    url = f"http://127.0.0.1:{stack.web_ports['notify']}/metrics"
    metrics = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'medins_notify_sent_total{channel="sms"}' in metrics
    assert 'medins_notify_sent_total{channel="email"}' in metrics
    assert "medins_events_processed_total" in metrics

    # Transfer and reimbursement take their own requests, persist them and answer status.
    await send(stack, TRANSFER_FROM_CHANNELS, TransferOutRequested(
        transfer_id="TRF-E2E-1", person_id=person, to_region="370100", channel="alipay",
        requested_at=now))
    await send(stack, REIMBURSEMENT_FROM_CHANNELS, ClaimSubmitted(
        claim_id="CLM-E2E-1", person_id=person, invoice_no="INV-1", institution_code="H1",
        expense_date=now.date() - timedelta(days=3), amount_fen=12_345, channel="window",
        submitted_at=now))
    found = await poll(status, lambda f: bool(f.get("transfer", {}).get("transfers"))
                       and bool(f.get("reimbursement", {}).get("claims")))
    transfer = found["transfer"]["transfers"][0]
    assert transfer["stage"] == "refused" and "停保" in transfer["reason"]
    assert found["reimbursement"]["claims"][0]["stage"] == "preliminary_review"


async def _async(value: Any) -> Any:
    return value
