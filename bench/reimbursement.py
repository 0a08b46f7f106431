"""Throughput of the reimbursement worker: claims taken in, and an outage batch made payable.

Starts its own broker and database (DATABASE_URL's server if set) and one reimbursement worker.
P people (at most 5,000) are made covered for the year with the coverage events enrollment
would send (signed with the region's key; not measured). Then:

1. N manual claims from the channels (signed), the steady rate of claims recorded (10%-90%);
2. the agency declares a settlement outage, and a hospital uploads R outage records in batches
   of 1,000 (signed by the hospital); the time from the first upload until R payment
   instructions are on `payments.instructions` (goal for 100,000: at most 60 s); skipped
   with R = 0.

With --replicas K, K reimbursement workers (one consumer group) share the partitions; the
figures are named "(K workers)". An outage comes from one hospital, whose uploads share one
partition, so it runs on one worker whatever K is.

Run: python bench/reimbursement.py [N] [--records R] [--replicas K]
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from benchlib import (
    PROCESSED,
    Stack,
    count_records,
    counter,
    distinct_people,
    producer,
    result,
    run,
    send_all,
    signed_records,
    steady_rate,
)

from shared.contracts.channels import ClaimSubmitted
from shared.contracts.enrollment import CoverageChanged, CoveragePeriod
from shared.contracts.hospital import OutageSettlementsUploaded, SettlementRecord
from shared.contracts.reimbursement import SettlementOutageDeclared
from shared.contracts.topics import PAYMENT_INSTRUCTIONS
from shared.policy.reference import Reference
from shared.settings import PlatformSettings

PER_UPLOAD = 1000


async def main(n: int, records: int, replicas: int) -> None:
    stack = Stack.start("reimbursement")
    named = "" if replicas == 1 else f" ({replicas} workers)"
    try:
        await stack.topics()
        await stack.start_group("reimbursement", replicas)
        now = datetime.now(UTC)
        day = now.date() - timedelta(days=3)
        persons = distinct_people(min(max(n, records), 5000))
        prod = await producer(stack)
        await send_all(prod, signed_records(stack, [CoverageChanged(
            person_id=p, cause="bench", periods=[CoveragePeriod(
                insurance_type="resident", start=date(day.year, 1, 1),
                end=date(day.year, 12, 31), source="tax_payment", reference=f"TAX-{i}")])
            for i, p in enumerate(persons)]))
        covered = await counter(stack, "reimbursement", PROCESSED, CoverageChanged.event_type)
        await steady_rate(covered, len(persons))
        hospital = next(i for i in Reference.load(
            PlatformSettings().policy_folders()).institutions.values() if i.region == "210200")

        claims = signed_records(stack, [ClaimSubmitted(
            claim_id=f"CL-{i:08d}", person_id=persons[i % len(persons)],
            invoice_no=f"INV-{i:08d}", institution_code=hospital.code, expense_date=day,
            amount_fen=30_000 + i % 977, eligible_fen=25_000 + i % 977, hospital_level=2,
            channel="wechat", submitted_at=now) for i in range(n)])
        await send_all(prod, claims)
        taken = await counter(stack, "reimbursement", PROCESSED, ClaimSubmitted.event_type)
        rate, took = await steady_rate(taken, n)
        print(f"claims: {n} from {len(persons)} covered people")
        print(f"claims recorded:   {rate:8.0f} claims/s steady ({took:.2f}s for all)")
        result(f"reimbursement claims{named}", rate, "claims/s", goal=3000)
        if not records:
            await prod.stop()
            return

        run_id = uuid.uuid4().hex[:6].upper()
        await send_all(prod, signed_records(stack, [SettlementOutageDeclared(
            outage_id=f"OUT-{run_id}", outage_from=day, outage_to=day,
            pay_by=day + timedelta(days=90), reviewer="staff-017", declared_at=now)]))
        declared = await counter(stack, "reimbursement", PROCESSED,
                                 SettlementOutageDeclared.event_type)
        await steady_rate(declared, 1)
        uploads = signed_records(stack, [OutageSettlementsUploaded(
            batch_id=f"B-{run_id}-{start}", institution_code=hospital.code,
            outage_from=day, outage_to=day, records=[
                SettlementRecord(record_id=f"{run_id}-{i}", person_id=persons[i % len(persons)],
                                 expense_date=day, amount_fen=25_000 + 37 * (i % 100),
                                 eligible_fen=22_000 + 37 * (i % 100), hospital_level=1)
                for i in range(start, min(start + PER_UPLOAD, records))])
            for start in range(0, records, PER_UPLOAD)])
        instructed = asyncio.create_task(count_records(
            stack.broker.url, stack.topic(PAYMENT_INSTRUCTIONS), records))
        started = time.perf_counter()
        await send_all(prod, uploads)
        await asyncio.wait_for(instructed, 900)
        took = time.perf_counter() - started
        await prod.stop()
        print(f"outage batch:      {records} records → payment instructions in {took:.1f}s "
              f"= {records / took:.0f}/s")
        result("outage records to payment instructions", took, "s", goal=60 * records / 100_000,
               lower_is_better=True, records=records)
    finally:
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000, help="manual claims")
    parser.add_argument("--records", type=int, default=100_000, help="outage records")
    parser.add_argument("--replicas", type=int, default=1,
                        help="reimbursement workers sharing the partitions")
    args = parser.parse_args()
    run(lambda: main(args.n, args.records, args.replicas))
