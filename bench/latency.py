"""Latency at a steady rate: produce → `application.received`, and tax payment → SMS at the SMSC.

Starts its own broker and database (DATABASE_URL's server if set), an enrollment and a notify
worker with their default latency settings (MEDINS_FETCH_MAX_WAIT_MS, MEDINS_BATCH_WITHIN_SECONDS
and the others as set in the environment), a local SMSC in its own process and an SMTP server.

1. Applications are sent one by one at RATE per second for SECONDS; each latency runs from the
   send to the moment a plain consumer of `enrollment.events` (its own fetch wait 5 ms) holds
   the `application.received` caused by it.
2. The whole story: the same number of people are made approved and waiting for payment (not
   measured), every SMS and email of that drained, then tax payments are sent at RATE per
   second; each latency runs from the payment's send to the SMSC accepting the SMS that tells
   the person (the SMSC stamps each message when its submit arrives). The gateway limits are
   lifted for this run so the rate, not the limit, is measured: 1,000/s, and the bulk
   ceilings notify_send.py uses (SMPP window 50, 8 SMTP connections) unless
   MEDINS_SMPP_WINDOW or MEDINS_SMTP_MAX_CONNECTIONS say otherwise. An SMS of the story that
   notify could not send (parked, or of unknown outcome) stops the run with its reason
   instead of being waited for. Printed beside it: the median of each hop, and the cores each
   part of the machine used while the payments were handled.

Run: python bench/latency.py [--rate 200] [--seconds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from benchlib import (
    PROCESSED,
    CpuUse,
    Sent,
    Stack,
    application,
    bulk_gateway,
    counter,
    distinct_people,
    percentile,
    producer,
    result,
    run,
    send_all,
    signed_records,
    steady_rate,
)

from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.enrollment import ApplicationReceived
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import ENROLLMENT_EVENTS
from shared.devstack.broker import free_port, wait_for_port
from shared.devstack.mailserver import MailServer
from shared.devstack.smsc import ReceivedTail
from shared.messaging.admin import bootstrap_servers


async def paced(prod: AIOKafkaProducer, records: list[Sent], rate: float) -> dict[int, float]:
    """Send each record at its slot of a steady rate; the wall-clock time each was sent."""
    sent_at: dict[int, float] = {}
    futures = []
    start = time.perf_counter()
    for i, rec in enumerate(records):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[i] = time.time()
        futures.append(await prod.send(rec.topic, rec.value, key=rec.key,
                                       headers=rec.headers))
    await asyncio.gather(*futures)
    return sent_at


async def received_latencies(stack: Stack, records: list[Sent], rate: float) -> list[float]:
    """Seconds from each application's send until its application.received is readable."""
    ids = {json.loads(r.value)["id"]: i for i, r in enumerate(records)}
    seen: dict[int, float] = {}
    reader = AIOKafkaConsumer(stack.topic(ENROLLMENT_EVENTS),
                              bootstrap_servers=bootstrap_servers(stack.broker.url),
                              auto_offset_reset="latest", enable_auto_commit=False,
                              fetch_max_wait_ms=5)
    await reader.start()
    # Positions taken before the first send, so "latest" misses nothing of this run.
    await reader.seek_to_end()
    for tp in reader.assignment():
        await reader.position(tp)

    async def read() -> None:
        while len(seen) < len(ids):
            batch = await reader.getmany(timeout_ms=50)
            now = time.time()
            for recs in batch.values():
                for rec in recs:
                    env = json.loads(rec.value)
                    if env["type"] == ApplicationReceived.event_type and \
                            env.get("causationid") in ids:
                        seen.setdefault(ids[env["causationid"]], now)

    reading = asyncio.create_task(read())
    prod = await producer(stack)
    try:
        sent_at = await paced(prod, records, rate)
        await asyncio.wait_for(reading, 600)  # a loaded machine drains a queue slowly
    finally:
        reading.cancel()
        await prod.stop()
        await reader.stop()
    return [seen[i] - sent_at[i] for i in sent_at]


async def story_latencies(stack: Stack, smsc_dir: object, rate: float, n: int,
                          fresh: list[str]) -> list[float]:
    """Seconds from each tax payment's send until the SMSC accepted the SMS it caused."""
    from pathlib import Path

    folder = Path(str(smsc_dir))
    now = datetime.now(UTC)
    # Each SMS is told apart by its number: no two people of the run share one (random ones
    # do collide in a few thousand), nor an ID.
    persons = [fresh.pop() for _ in range(n)]  # none of them met by the run before
    apps = [f"APP-{uuid.uuid4().hex[:12].upper()}" for _ in range(n)]
    applications: list[EnrollmentApplicationSubmitted] = []
    mobiles: set[str] = set()
    for a, p in zip(apps, persons, strict=True):
        made = application(a, p, now)
        while made.mobile in mobiles:
            made = application(a, p, now)
        mobiles.add(made.mobile)
        applications.append(made)
    tail = ReceivedTail(folder)
    tail.new()  # what earlier parts of the run received
    story_from = time.time()
    prod = await producer(stack)
    await send_all(prod, signed_records(stack, applications))
    await send_all(prod, signed_records(stack, [EnrollmentReviewDecided(
        application_id=a, person_id=p, decision="approve", reviewer="staff-017",
        decided_at=now) for a, p in zip(apps, persons, strict=True)]))
    approved = await counter(stack, "enrollment", PROCESSED, EnrollmentReviewDecided.event_type)
    await steady_rate(approved, n, timeout=600)
    # Every SMS of the applications and approvals out before the clock starts (two each).
    deadline = time.monotonic() + 600
    got_before, checked = 0, time.monotonic()
    while (got_before := got_before + len(tail.new())) < 2 * n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{got_before} of {2 * n} SMS before payments")
        if time.monotonic() - checked > 2:
            await never_sent(stack, story_from)
            checked = time.monotonic()
        await asyncio.sleep(0.2)
    # And every email of them: the setup hands notify thousands at once, and a backlog still
    # draining would be measured as the story's own load.
    await outstanding_drained(stack, deadline)
    await asyncio.sleep(1.0)
    tail.new()
    year = now.year
    payments = signed_records(stack, [ContributionPaymentConfirmed(
        payment_ref=f"TAX-{uuid.uuid4().hex[:12].upper()}", person_id=p, application_id=a,
        insurance_type="resident", period_start=date(year, 1, 1),
        period_end=date(year, 12, 31), amount_fen=40_000, paid_at=now)
        for a, p in zip(apps, persons, strict=True)])
    cpu = CpuUse()
    sent_at = await paced(prod, payments, rate)
    await prod.stop()
    by_mobile = {a.mobile: i for i, a in enumerate(applications)}
    got: dict[int, float] = {}
    deadline = time.monotonic() + 600
    checked = time.monotonic()
    while len(got) < n:
        if time.monotonic() - checked > 2:
            await never_sent(stack, story_from)
            checked = time.monotonic()
        for sms in tail.new():
            i = by_mobile.get(sms["to"].lstrip("+").removeprefix("86"))
            if i is not None and sms["at"] >= sent_at[i]:
                got.setdefault(i, sms["at"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(got)} of {n} payment SMS at the SMSC")
        await asyncio.sleep(0.2)
    print(f"  CPU from the first payment to the last SMS (cores): {cpu.line()}")
    await breakdown(stack, payments, sent_at, sorted(got.values()))
    return [got[i] - sent_at[i] for i in range(n)]


async def outstanding_drained(stack: Stack, deadline: float) -> None:
    """Until notify holds no message waiting to be sent or awaiting its answer (any channel)."""
    from shared.db.pool import connect

    conn = await connect(stack.db.url)
    try:
        while outstanding := await conn.fetchval(
                f'SELECT count(*) FROM "{stack.schema("notify")}".deliveries'
                " WHERE status IN ('pending', 'sending')"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{outstanding} messages still unsent before payments")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def never_sent(stack: Stack, since: float) -> None:
    """Raises when an SMS created since `since` (epoch seconds) will not reach the SMSC: parked,
    or of unknown outcome (notify never resends those by itself), naming why."""
    from shared.db.pool import connect

    conn = await connect(stack.db.url)
    try:
        rows = await conn.fetch(
            f'SELECT status, last_error FROM "{stack.schema("notify")}".deliveries'
            " WHERE channel = 'sms' AND status IN ('parked', 'unknown')"
            " AND created_at >= to_timestamp($1)", since)
    finally:
        await conn.close()
    if rows:
        raise RuntimeError(f"{len(rows)} SMS of the story will not reach the SMSC: "
                           f"{rows[0]['status']}, {rows[0]['last_error']}")


async def relayed_at(stack: Stack, causes: set[str]) -> list[float]:
    """When the outbox relay put each cause's first event on `enrollment.events` (the record's
    timestamp, stamped by the relay's producer), sorted: the topic read from the start until
    every cause is found, or fetches come back empty (a cause that emitted nothing)."""
    reader = AIOKafkaConsumer(stack.topic(ENROLLMENT_EVENTS),
                              bootstrap_servers=bootstrap_servers(stack.broker.url),
                              auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    first: dict[str, float] = {}
    empty = 0
    try:
        while len(first) < len(causes) and empty < 10:
            fetched = await reader.getmany(timeout_ms=200, max_records=10_000)
            empty = 0 if fetched else empty + 1
            for records in fetched.values():
                for rec in records:
                    cause = json.loads(rec.value).get("causationid")
                    if cause in causes:
                        first.setdefault(cause, rec.timestamp / 1000)
    finally:
        await reader.stop()
    return sorted(first.values())


async def breakdown(stack: Stack, payments: list[Sent], sent_at: dict[int, float],
                    at_smsc: list[float]) -> None:
    """Where the story's time goes, by the medians of each stage's stamps (enrollment's and
    notify's transaction start, the SMSC's arrival), matched by rank, not by person: enough
    to see which hop dominates."""
    from shared.db.pool import connect

    ids = [json.loads(r.value)["id"] for r in payments]
    conn = await connect(stack.db.url)
    try:
        enrolled = [r[0].timestamp() for r in await conn.fetch(
            f'SELECT processed_at FROM "{stack.schema("enrollment")}".processed_messages'
            " WHERE event_id = ANY($1) ORDER BY 1", ids)]
        first = min(sent_at.values())
        notified = [r[0].timestamp() for r in await conn.fetch(
            f'SELECT created_at FROM "{stack.schema("notify")}".deliveries'
            " WHERE channel = 'sms' AND created_at >= to_timestamp($1) ORDER BY 1", first)]
        handed = [r[0].timestamp() for r in await conn.fetch(
            f'SELECT sent_at FROM "{stack.schema("notify")}".deliveries'
            " WHERE channel = 'sms' AND created_at >= to_timestamp($1) AND sent_at IS NOT NULL"
            " ORDER BY 1", first)]
    finally:
        await conn.close()
    relayed = await relayed_at(stack, set(ids))
    sent = sorted(sent_at.values())

    def median_gap(later: list[float]) -> float:
        pairs = list(zip(sent, later, strict=False))
        return percentile([b - a for a, b in pairs], 50) * 1000 if pairs else float("nan")

    print(f"  stages (median from the payment's send): enrollment batch start "
          f"{median_gap(enrolled):.0f} ms, on the broker {median_gap(relayed):.0f} ms, "
          f"notify batch start {median_gap(notified):.0f} ms, "
          f"notify's sent stamp {median_gap(handed):.0f} ms, "
          f"at the SMSC {median_gap(at_smsc):.0f} ms")


async def main(rate: float, seconds: float) -> None:
    stack = Stack.start("latency")
    smsc_port, smtp_port = free_port(), free_port()
    smsc_dir = stack.work / "sms"
    smsc = subprocess.Popen([sys.executable, "-m", "shared.devstack.smsc", str(smsc_port),
                             str(smsc_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    mail = MailServer(stack.work / "mail", smtp_port).start()
    try:
        wait_for_port(smsc_port)
        await stack.topics()
        channels = {"MEDINS_SMPP_PORT": str(smsc_port), "MEDINS_SMTP_PORT": str(smtp_port),
                    "MEDINS_SMS_RATE_PER_SECOND": "1000", "MEDINS_EMAIL_RATE_PER_SECOND": "1000",
                    **{f"MEDINS_{name.upper()}": str(value)
                       for name, value in bulk_gateway().items()}}
        stack.start_worker("enrollment")
        stack.start_worker("notify", **channels)
        await stack.ready("enrollment")
        await stack.ready("notify")
        n = max(1, int(rate * seconds))
        # A short warm-up at the same rate (connections, caches, the relay's first publish).
        warm = max(1, int(rate * min(seconds, 3)))
        # Distinct people: a random ID drawn twice is refused as an open application, and its
        # `application.received` would be waited for in vain.
        persons = distinct_people(warm + 2 * n)
        await received_latencies(stack, signed_records(stack, [
            application(f"APP-W{uuid.uuid4().hex[:10].upper()}", persons.pop())
            for _ in range(warm)]), rate)
        latencies = await received_latencies(stack, signed_records(stack, [
            application(f"APP-{uuid.uuid4().hex[:12].upper()}", persons.pop())
            for _ in range(n)]), rate)
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        print(f"produce → application.received at {rate:.0f}/s, {n} events: "
              f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies) * 1000:.0f} ms")
        result("latency application.received p50", p50, "ms", rate=rate)
        result("latency application.received p99", p99, "ms", goal=150, lower_is_better=True,
               rate=rate)
        story = await story_latencies(stack, smsc_dir, rate, n, persons)
        s50, s99 = percentile(story, 50) * 1000, percentile(story, 99) * 1000
        print(f"tax payment → SMS accepted by the SMSC at {rate:.0f}/s, {n} people: "
              f"p50 {s50:.0f} ms, p99 {s99:.0f} ms, max {max(story) * 1000:.0f} ms")
        result("latency story payment→SMS p50", s50, "ms", rate=rate)
        result("latency story payment→SMS p99", s99, "ms", goal=250, lower_is_better=True,
               rate=rate)
    finally:
        await stack.stop()
        mail.stop()
        smsc.terminate()
        smsc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    run(lambda: main(args.rate, args.seconds))
