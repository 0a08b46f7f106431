"""Throughput of the enrollment worker: applications, then tax payments, in steady state.

Starts its own broker and database (DATABASE_URL's server if set) and one enrollment worker,
waits for its group to join, then publishes N signed applications (as the channels would) and
measures the steady consume-and-commit rate (10% to 90% of N recorded as processed), the
batches' own rate and the end-to-end rate until the outbox relay has published every resulting
event. Then N approvals (review desk, not measured) and N tax payments (the tax authority),
the payments' rate measured the same way. With --replicas K, K enrollment workers (one consumer
group: the partitions split between them) take the same load; the figures are named so.
Run: python bench/skeleton.py [N] [--no-tax] [--replicas K]
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, date, datetime

from benchlib import (
    PROCESSED,
    Stack,
    application,
    counter,
    distinct_people,
    producer,
    result,
    run,
    send_all,
    signed_records,
    steady_rate,
)

from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.tax import ContributionPaymentConfirmed


def batch_figures(metrics: str) -> tuple[float, float]:
    figures = {line.split("{")[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines()
               if line.startswith(("medins_batch_size_count", "medins_batch_seconds_sum"))}
    return figures["medins_batch_size_count"], figures["medins_batch_seconds_sum"]


async def main(n: int, tax: bool, replicas: int) -> None:
    stack = Stack.start("enrollment")
    named = "" if replicas == 1 else f" ({replicas} workers)"
    try:
        await stack.topics()
        metrics = await stack.start_group("enrollment", replicas)
        now = datetime.now(UTC)
        # Distinct people: a random ID drawn twice would be a refused second application.
        persons = distinct_people(n)
        apps = [f"APP-{uuid.uuid4().hex[:12].upper()}" for _ in range(n)]
        records = signed_records(stack, [application(a, p, now)
                                         for a, p in zip(apps, persons, strict=True)])
        size = sum(len(r.value) for r in records) / n
        prod = await producer(stack)
        started = time.perf_counter()
        published = await send_all(prod, records)
        count = await counter(stack, "enrollment", PROCESSED,
                              EnrollmentApplicationSubmitted.event_type)
        rate, took = await steady_rate(count, n)
        # End to end: every event the applications caused is published once the outbox is
        # empty (how many depends on the rules: a refused duplicate causes one, not two).
        pending = await counter(stack, "enrollment", "SELECT count(*) FROM outbox")
        while await pending():
            await asyncio.sleep(0.02)
        relayed = time.perf_counter() - started
        figures = [batch_figures(read()) for read in metrics]
        batches, busy = (sum(f[0] for f in figures), sum(f[1] for f in figures))
        print(f"applications: {n} of {size:.0f} bytes, signed by the channels")
        print(f"publish:            {n / published:8.0f} events/s ({published:.2f}s)")
        print(f"consume + commit:   {rate:8.0f} events/s steady ({took:.2f}s for all)")
        print(f"in batches only:    {n / busy:8.0f} events/s ({batches:.0f} batches,"
              f" {n / batches:.0f} events each, {busy:.2f}s inside batch transactions"
              f"{', all workers' if replicas > 1 else ''})")
        print(f"end to end:         {n / relayed:8.0f} events/s ({relayed:.2f}s) until the"
              " outbox relay had published everything they caused")
        result(f"enrollment applications{named}", rate, "events/s", goal=5000,
               goal_vs_naive=4.0, bytes=round(size))
        if not tax:
            return
        await send_all(prod, signed_records(stack, [EnrollmentReviewDecided(
            application_id=a, person_id=p, decision="approve", reviewer="staff-017",
            decided_at=now) for a, p in zip(apps, persons, strict=True)]))
        approved = await counter(stack, "enrollment", PROCESSED,
                                 EnrollmentReviewDecided.event_type)
        await steady_rate(approved, n)
        year = now.year
        payments = signed_records(stack, [ContributionPaymentConfirmed(
            payment_ref=f"TAX-{uuid.uuid4().hex[:12].upper()}", person_id=p, application_id=a,
            insurance_type="resident", period_start=date(year, 1, 1),
            period_end=date(year, 12, 31), amount_fen=40_000, paid_at=now)
            for a, p in zip(apps, persons, strict=True)])
        await send_all(prod, payments)
        paid = await counter(stack, "enrollment", PROCESSED,
                             ContributionPaymentConfirmed.event_type)
        rate, took = await steady_rate(paid, n)
        print(f"tax payments:       {rate:8.0f} events/s steady ({took:.2f}s for all)")
        result(f"tax payments{named}", rate, "events/s", goal=5000, goal_vs_naive=4.0)
        await prod.stop()
    finally:
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20_000)
    parser.add_argument("--no-tax", dest="tax", action="store_false",
                        help="applications only")
    parser.add_argument("--replicas", type=int, default=1,
                        help="enrollment workers sharing the partitions (default 1)")
    args = parser.parse_args()
    run(lambda: main(args.n, args.tax, args.replicas))
