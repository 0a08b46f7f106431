"""`medins demo` part 3: an outage batch of 1,000 records reimbursed proactively (主动报)."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.contracts.bank import PaymentResultReported
from shared.contracts.base import Payload
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.envelope import Envelope, new_envelope
from shared.contracts.hospital import OutageSettlementsUploaded, SettlementRecord
from shared.contracts.reimbursement import SettlementOutageDeclared
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import physical
from shared.db.pool import connect
from shared.db.sealed import resident_keys_of
from shared.devstack import people
from shared.messaging.publisher import publish
from shared.policy.reference import Reference
from shared.settings import PlatformSettings


def _envelopes(settings: PlatformSettings, payloads: list[Payload]) -> list[Envelope]:
    return [new_envelope(p.event_type, p, source="/demo", region=settings.region)
            for p in payloads]


async def _publish_all(settings: PlatformSettings, payloads: list[Payload]) -> None:
    by_topic: dict[str, list[Payload]] = {}
    for p in payloads:
        by_topic.setdefault(p.topic, []).append(p)
    for logical, items in by_topic.items():
        await publish(settings.broker_url, physical(logical, region=settings.region,
                                                    namespace=settings.namespace),
                      _envelopes(settings, items))


async def _count(settings: PlatformSettings, sql: str, *args: object) -> int:
    conn = await connect(settings.database_url, settings.schema_for("reimbursement"))
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def _until(progress: Progress, task: object, settings: PlatformSettings, sql: str,
                 args: tuple[object, ...], total: int, within: float = 300.0) -> float:
    started = time.monotonic()
    while (done := await _count(settings, sql, *args)) < total:
        progress.update(task, completed=done)  # type: ignore[arg-type]
        if time.monotonic() - started > within:
            raise TimeoutError(f"only {done} of {total} within {within}s")
        await asyncio.sleep(0.25)
    progress.update(task, completed=total)  # type: ignore[arg-type]
    return time.monotonic() - started


async def run_proactive_demo(settings: PlatformSettings, console: Console,
                             size: int = 1000) -> None:
    now = datetime.now(UTC)
    year = now.year
    persons = [people.resident_id(settings.region) for _ in range(size)]
    # A hospital of the region's reference data, so the texts can name it; the records of each
    # run are told apart by their numbers, as the hospital's next batch would be.
    hospital = next(i for i in Reference.load(settings.policy_folders()).institutions.values()
                    if i.region == settings.region)
    institution, run = hospital.code, uuid.uuid4().hex[:6].upper()
    console.print(f"[bold]Story:[/] a settlement outage at {hospital.name} ({institution}): "
                  f"{size} "
                  "people paid out of pocket; the agency reimburses them without application")
    enrolment: list[Payload] = []
    for person in persons:
        app_id = f"APP-{uuid.uuid4().hex[:10].upper()}"
        enrolment += [
            EnrollmentApplicationSubmitted(
                application_id=app_id, person_id=person, name=people.name(),
                insurance_type="resident", mobile=people.mobile(), channel="window",
                region_code=settings.region, submitted_at=now),
            EnrollmentReviewDecided(application_id=app_id, person_id=person, decision="approve",
                                    reviewer="staff-017", decided_at=now),
            ContributionPaymentConfirmed(
                payment_ref=f"TAX-{uuid.uuid4().hex[:12].upper()}", person_id=person,
                application_id=app_id, insurance_type="resident",
                period_start=date(year, 1, 1), period_end=date(year, 12, 31), amount_fen=40_000,
                paid_at=now)]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("insured people known to reimbursement", total=size)
        await _publish_all(settings, enrolment)
        # Outage records are judged by the coverage on their expense date.
        # Reimbursement keeps only the ID's keyed hash; a person's coverage rows are written
        # together, under one hash key.
        await _until(progress, task, settings, "SELECT count(DISTINCT person_key) FROM"
                     " coverage_view WHERE person_key = ANY($1::text[])",
                     (resident_keys_of(persons),), size)
        outage_day = now.date() - timedelta(days=2)
        # The agency declares the outage first: its window, not the institution's, counts.
        await _publish_all(settings, [SettlementOutageDeclared(
            outage_id=f"OUT-{uuid.uuid4().hex[:8]}", outage_from=outage_day,
            outage_to=outage_day, pay_by=outage_day + timedelta(days=90),
            # The outage is this hospital's: other institutions' records of that day are
            # not the agency's to pay without application.
            institution_codes=[institution], reviewer="staff-017", declared_at=now)])
        batch = OutageSettlementsUploaded(
            batch_id=f"B-{uuid.uuid4().hex[:8]}", institution_code=institution,
            outage_from=outage_day, outage_to=outage_day, records=[
                SettlementRecord(record_id=f"{run}-{i}", person_id=p,
                                 expense_date=outage_day, amount_fen=25_000 + 37 * i,
                                 eligible_fen=22_000 + 37 * i, hospital_level=1)
                for i, p in enumerate(persons)])
        task = progress.add_task("outage records calculated and approved", total=size)
        await _publish_all(settings, [batch])
        took = await _until(progress, task, settings, "SELECT count(*) FROM proactive_records"
                            " WHERE institution_code = $1 AND record_id LIKE $2",
                            (institution, f"{run}-%"), size)
        console.print(f"  {size} records → claims in {took:.1f}s = {size / took:.0f} claims/s")
        # Play the bank: every instructed payment succeeds.
        results: list[Payload] = [
            PaymentResultReported(idempotency_key=f"PRO-{institution}-{run}-{i}:v1",
                                  claim_id=f"PRO-{institution}-{run}-{i}", person_id=p,
                                  succeeded=True, reported_at=now)
            for i, p in enumerate(persons)]
        task = progress.add_task("paid by the bank", total=size)
        await _publish_all(settings, results)
        await _until(progress, task, settings, "SELECT count(*) FROM claims WHERE stage = 'paid'"
                     " AND claim_id LIKE $1", (f"PRO-{institution}-{run}-%",), size)
    total = await _count(settings, "SELECT coalesce(sum(payable_fen), 0) FROM claims WHERE"
                         " claim_id LIKE $1 AND stage = 'paid'", f"PRO-{institution}-{run}-%")
    console.print(f"  institution summary: `medins status {institution}` — {size} records, "
                  f"total paid {total / 100:,.2f} yuan", highlight=False)
