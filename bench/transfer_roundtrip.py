"""Transfers between two regions: intake rate in A, and A → B → A round trips per second.

Starts its own broker and database (DATABASE_URL if set) and the transfer workers of Dalian
(A) and Jinan (B). Each person is made suspended in A and active in B with the enrollment
events those services would send, then N transfer-outs are requested in A, then N information
sheets issued (no balance, so B merges at once and acknowledges). Every event is signed as
its producer would sign it (the channels, the transfer office, the regions' own services).
Prints the steady rate at which A accepted requests (due dates counted in working days, 10% to
90% of N) and the rate of completed round trips. With --replicas K, each region runs K transfer
workers (one consumer group per region) and the figures are named "(K workers)".
Run: python bench/transfer_roundtrip.py [N] [--replicas K]
"""
from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, date, datetime

from aiokafka import AIOKafkaProducer
from benchlib import (
    Stack,
    distinct_people,
    producer,
    result,
    run,
    send_all,
    signed_records,
    steady_rate,
)

from shared.contracts.base import Payload
from shared.contracts.channels import TransferOutRequested
from shared.contracts.enrollment import InsuredStatusChanged
from shared.contracts.transfer_office import TransferInfoSheetIssued
from shared.db.pool import connect

A, B = "210200", "370100"


async def publish_all(stack: Stack, prod: AIOKafkaProducer, region: str,
                      payloads: list[Payload]) -> None:
    await send_all(prod, signed_records(stack, payloads, region=region))


async def wait_count(conn, sql: str, target: int, deadline: float) -> float:  # type: ignore[no-untyped-def]
    while await conn.fetchval(sql) < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"not reached: {sql}")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def main(n: int, replicas: int) -> None:
    stack = Stack.start("transfer")
    named = "" if replicas == 1 else f" ({replicas} workers)"
    try:
        await stack.topics((A, B))
        await stack.start_group("transfer", replicas, (A, B))
        ns = stack.namespace
        conn_a = conn_b = None
        deadline = time.perf_counter() + 120
        while conn_b is None:  # the workers create their schemas
            try:
                conn_a = await connect(stack.db.url, f"{ns}r{A}_transfer")
                conn_b = await connect(stack.db.url, f"{ns}r{B}_transfer")
                await conn_a.fetchval("SELECT count(*) FROM transfers")
                await conn_b.fetchval("SELECT count(*) FROM transfers")
            except Exception:
                conn_b = None
                if time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.3)
        assert conn_a is not None
        persons = distinct_people(n)
        today, now = date.today(), datetime.now(UTC)
        prod = await producer(stack)

        def status(p: str, to: str) -> InsuredStatusChanged:
            return InsuredStatusChanged(person_id=p, insurance_type="resident",
                                        from_status="active" if to == "suspended" else "pending",
                                        to_status=to, reason="bench",  # type: ignore[arg-type]
                                        effective_on=today)

        await publish_all(stack, prod, A, [status(p, "suspended") for p in persons])
        await publish_all(stack, prod, B, [status(p, "active") for p in persons])
        deadline = time.perf_counter() + 600
        await wait_count(conn_a, "SELECT count(*) FROM insured_view", n, deadline)
        await wait_count(conn_b, "SELECT count(*) FROM insured_view", n, deadline)
        ids = [f"TR-{i}" for i in range(n)]
        requests = signed_records(stack, [TransferOutRequested(
            transfer_id=t, person_id=p, to_region=B, channel="national_app", requested_at=now)
            for t, p in zip(ids, persons, strict=True)], region=A)
        await send_all(prod, requests)

        async def awaiting() -> int:
            return int(await conn_a.fetchval(  # type: ignore[union-attr]
                "SELECT count(*) FROM transfers WHERE stage = 'awaiting_info_sheet'"))

        rate, accepted = await steady_rate(awaiting, n)
        sheets_at = time.perf_counter()
        await publish_all(stack, prod, A, [TransferInfoSheetIssued(
            transfer_id=t, person_id=p, name="王伟", contribution_months=48,
            account_balance_fen=0, issued_at=now) for t, p in zip(ids, persons, strict=True)])
        completed = await wait_count(conn_a, "SELECT count(*) FROM transfers WHERE stage ="
                                     " 'completed'", n, deadline) - sheets_at
        await prod.stop()
        moved = await conn_b.fetchval("SELECT sum(credited_months) FROM transfers"
                                      " WHERE direction = 'in'")
        sent = await conn_a.fetchval("SELECT sum(contribution_months) FROM transfers")
        print(f"transfers: {n} between {A} and {B} (two transfer workers, one broker, one"
              f" database server)")
        print(f"intake in A (checked, due dates counted): {rate:7.0f} transfers/s steady "
              f"({accepted:.2f}s for all)")
        print(f"round trips A → B → A completed:           {n / completed:7.0f} transfers/s "
              f"({completed:.2f}s)")
        print(f"contribution months sent {sent}, credited {moved}: "
              f"{'reconciled' if sent == moved else 'MISMATCH'}")
        result(f"transfer intake{named}", rate, "transfers/s", goal=3000)
        result(f"transfer round trips A→B→A{named}", n / completed, "transfers/s")
        if sent != moved:
            raise SystemExit("contribution months not reconciled")
        for conn in (conn_a, conn_b):
            await conn.close()
    finally:
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--replicas", type=int, default=1,
                        help="transfer workers per region sharing its partitions")
    args = parser.parse_args()
    run(lambda: main(args.n, args.replicas))
