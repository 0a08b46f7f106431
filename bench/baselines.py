"""Baselines for the workers' figures: raw aiokafka, Faust consume-only, a naive Faust service.

Each case gets a fresh topic (4 partitions) and group, filled beforehand with N signed
enrollment applications (~770 bytes); the rate is taken in steady state, between 10% and 90%
of N consumed, so group join and start-up are left out. Cases:

- raw: aiokafka consume → parse (the contract) → produce one → commit per fetch, no database;
- faust-consume: a Faust agent (the platform's app settings) that parses each event;
- faust-naive: a Faust agent that parses, does one INSERT (autocommit) and awaits one send
  per event: the service anyone would write first;
- faust-trusted: the platform's worker loop with the database taken out, so the most any
  worker can do here: batches as the workers take them, each record's Ed25519 signature
  checked, authorised and parsed in the preparing thread as the workers do, then one event
  emitted per record (its envelope, signed with the region's key) and sent. The workers do
  all of this and their database work besides, so none can pass this figure.

Run: python bench/baselines.py [N] [--cases raw,faust-consume,faust-naive,faust-trusted]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from benchlib import Stack, application, producer, result, run, send_all, signed_records

from shared.contracts import parse_event
from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.devstack.broker import free_port
from shared.messaging.admin import bootstrap_servers, ensure_topics

CASES = ("raw", "faust-consume", "faust-naive", "faust-trusted")
LABELS = {
    "raw": "raw aiokafka: consume, parse, produce one, commit (no database)",
    "faust-consume": "Faust agent, consume only, parse",
    "faust-naive": "naive Faust service: parse, one INSERT, await one send per event",
    "faust-trusted": "the worker loop without a database: verify, parse, emit one signed",
}


def applications(n: int) -> list[EnrollmentApplicationSubmitted]:
    now = datetime.now(UTC)
    return [application(f"APP-{i:08d}", submitted_at=now) for i in range(n)]


class Marks:
    """When 10% and 90% of N were done, for the steady-state rate."""

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0
        self.low, self.high = max(1, n // 10), max(1, n * 9 // 10)
        self.at: dict[int, float] = {}
        self.started = time.perf_counter()

    def add(self, k: int = 1) -> None:
        before, self.done = self.done, self.done + k
        for mark in (self.low, self.high):
            if before < mark <= self.done:
                self.at[mark] = time.perf_counter()

    def rate(self) -> float:
        span = self.at[self.high] - self.at[self.low]
        if span < 0.05:
            # Both marks in one fetch (a small run): the whole run's rate, start-up included,
            # is the honest figure.
            return self.done / (time.perf_counter() - self.started)
        return (self.high - self.low) / span


async def raw_case(broker: str, topic: str, out: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(broker),
                                group_id=f"{topic}-raw", auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=500)
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker), linger_ms=5)
    await consumer.start()
    await prod.start()
    marks = Marks(n)
    try:
        while marks.done < n:
            batch = await consumer.getmany(timeout_ms=200)
            futures = []
            for records in batch.values():
                for record in records:
                    envelope, _ = parse_event(record.value)
                    futures.append(await prod.send(out, envelope.id.encode(), key=record.key))
            await asyncio.gather(*futures)
            await consumer.commit()
            marks.add(len(futures))
    finally:
        await consumer.stop()
        await prod.stop()
    return marks.rate()


def faust_child(case: str, topic: str, out: str, n: int, answer: str) -> None:
    """A Faust worker in this process (a child of the bench): prints its rate, then exits."""
    import faust

    from shared.messaging.app import create_app
    from shared.settings import PlatformSettings

    settings = PlatformSettings()
    # As the workers' logging does (root at WARNING): otherwise aiokafka builds a debug
    # record for every message sent, a cost no worker pays.
    logging.getLogger().setLevel(logging.WARNING)
    app = create_app(f"baseline-{case}", settings)
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    sink = app.topic(out, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")
    marks = Marks(n)
    pool: list[object] = []

    def finish() -> None:
        # A file, not stdout: Faust's worker takes over the standard streams.
        with open(answer, "w") as file:
            file.write(json.dumps({"rate": marks.rate()}))
        os._exit(0)  # Faust's orderly stop takes seconds and measures nothing

    if case == "faust-trusted":
        trusted(app, settings, source, out, marks, finish)
    else:
        @app.agent(source, name=f"baseline-{case}")
        async def consume(stream: faust.StreamT[bytes]) -> None:
            if case == "faust-naive" and not pool:
                import asyncpg

                pool.append(await asyncpg.connect(settings.database_url))
                await pool[0].execute(  # type: ignore[attr-defined]
                    f"CREATE TABLE IF NOT EXISTS bench_naive_{n} (event_id text PRIMARY KEY,"
                    " person_id text, body jsonb)")
            async for value in stream:
                envelope, _ = parse_event(value)
                if case == "faust-naive":
                    await pool[0].execute(  # type: ignore[attr-defined]
                        f"INSERT INTO bench_naive_{n} VALUES ($1, $2, $3)"
                        " ON CONFLICT DO NOTHING",
                        envelope.id, envelope.data["person_id"], value.decode())
                    await sink.send(key=envelope.data["person_id"].encode(),
                                    value=envelope.id.encode())
                marks.add()
                if marks.done >= n:
                    finish()

    app.main = None  # type: ignore[assignment]
    worker = faust.Worker(app, quiet=True, loglevel="WARNING", redirect_stdouts=False)
    worker.execute_from_commandline()


def trusted(app: Any, settings: Any, source: Any, sink: str, marks: Marks,
            finish: Callable[[], None]) -> None:
    """The faust-trusted agent: the workers' own batch loop, admission and emission, with no
    handler and no database."""
    import functools

    import faust

    from shared.messaging.batches import run_batches
    from shared.messaging.consumer import (
        Admitted,
        EventConsumer,
        HandlerContext,
        RawMessage,
        admit_events,
    )
    from shared.trust import Verifier

    async def never_called(*_: Any) -> None:
        raise AssertionError("the ceiling hands nothing to a handler")

    # A route for the applications only so that admission takes them as a worker's own.
    consumer = EventConsumer(
        "baseline-faust-trusted", settings, db=None,  # type: ignore[arg-type]
        routes={EnrollmentApplicationSubmitted.event_type: never_called},
        verifier=Verifier.from_folder(settings.trust_dir, settings.region))
    producers: list[AIOKafkaProducer] = []

    async def emit(admitted: tuple[list[RawMessage], Admitted]) -> None:
        # Sent as the outbox relay sends (the workers' only way out): aiokafka, a batch's
        # records in flight together, acknowledged before the batch counts.
        if not producers:
            producers.append(AIOKafkaProducer(
                bootstrap_servers=bootstrap_servers(settings.broker_url), acks="all", linger_ms=5,
                max_batch_size=256 * 1024))
            await producers[0].start()
        if admitted[1].rejected:
            # A ceiling that counted refused records would be no ceiling: stop, saying why.
            sys.stderr.write(f"refused: {next(iter(admitted[1].rejected.values()))}\n")
            os._exit(1)
        sending = []
        for _, envelope, payload in admitted[1].parsed:
            ctx = HandlerContext(None, envelope, consumer.service,  # type: ignore[arg-type]
                                 settings.region, settings.namespace, settings=settings)
            ctx.emit(payload, key=envelope.data["person_id"])
            out = ctx.emitted[0]
            sending.append(await producers[0].send(
                sink, out.value, key=out.key,
                headers=[(k, v.encode()) for k, v in out.headers]))
        await asyncio.gather(*sending)
        marks.add(len(admitted[0]))
        if marks.done >= marks.n:
            finish()

    @app.agent(source, name="baseline-faust-trusted")
    async def consume(stream: faust.StreamT[bytes]) -> None:
        await run_batches(stream, settings.batch_size, settings.batch_within_seconds, emit,
                          max_bytes=settings.batch_max_bytes,
                          prepare=functools.partial(admit_events, consumer))


async def faust_case(stack: Stack, case: str, topic: str, out: str, n: int) -> float:
    env = stack.env(MEDINS_WEB_PORT=str(free_port()))
    answer = stack.work / f"{case}.json"
    log = open(stack.work / f"{case}.log", "wb")  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", case, topic, out, str(n), str(answer), env=env,
        stdout=log, stderr=subprocess.STDOUT, cwd=stack.work)
    try:
        await asyncio.wait_for(proc.wait(), 900)
    finally:
        if proc.returncode is None:
            proc.kill()
    try:
        return float(json.loads(answer.read_text())["rate"])
    except (OSError, ValueError, KeyError):
        raise RuntimeError(f"{case} printed no rate; see {stack.work}/{case}.log") from None


async def main(n: int, cases: list[str]) -> None:
    stack = Stack.start("baselines")
    try:
        events = applications(n)
        prod = await producer(stack)
        for case in cases:
            # A fresh topic pair and group per case, filled before the consumer starts.
            # The ceiling reads the applications' own topic: admission checks that each
            # type is at home on its topic, as the workers' does.
            topic = (stack.topic(EnrollmentApplicationSubmitted.topic)
                     if case == "faust-trusted" else f"{stack.namespace}{case}.in")
            out = f"{stack.namespace}{case}.out"
            await ensure_topics(stack.broker.url, [topic, out], 4)
            await send_all(prod, signed_records(stack, events, topic=topic))
            if case == "raw":
                rate = await raw_case(stack.broker.url, topic, out, n)
            else:
                rate = await faust_case(stack, case, topic, out, n)
            print(f"{LABELS[case]}: {rate:8.0f} events/s")
            result(f"baseline {case}", rate, "events/s", label=LABELS[case])
        await prod.stop()
        if "faust-naive" in cases:
            from shared.db.pool import connect

            conn = await connect(stack.db.url)
            await conn.execute(f"DROP TABLE IF EXISTS bench_naive_{n}")
            await conn.close()
    finally:
        await stack.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        faust_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20_000)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    run(lambda: main(args.n, [c for c in args.cases.split(",") if c]))
