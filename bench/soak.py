"""Soak: the enrollment worker's memory over a long run (RSS growth after warm-up, goal < 10%).

Starts its own broker and database (DATABASE_URL's server if set) and one enrollment worker,
then feeds N signed applications (default 1,000,000; hours on a 2-core machine) in chunks,
never more than two chunks ahead of the worker, and samples the worker's resident memory each
tenth of the run. Growth is measured from the first tenth (caches filled, pools opened) to
the end. Run: python bench/soak.py [N] [--chunk 10000]
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchlib import (
    PROCESSED,
    Stack,
    application,
    counter,
    producer,
    result,
    run,
    send_all,
    signed_records,
)

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.devstack import people


def rss_mib(pid: int) -> float:
    """The process's resident set from /proc (what the kernel charges it), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def main(n: int, chunk: int) -> None:
    stack = Stack.start("soak")
    try:
        await stack.topics()
        worker = stack.start_worker("enrollment")
        await stack.ready("enrollment")
        prod = await producer(stack)
        done = await counter(stack, "enrollment", PROCESSED,
                             EnrollmentApplicationSubmitted.event_type)
        step = max(n // 10, chunk)
        samples: list[tuple[int, float]] = [(0, rss_mib(worker.pid))]
        sent = 0
        started = time.perf_counter()
        while sent < n:
            size = min(chunk, n - sent)
            now = datetime.now(UTC)
            # Signed just before sending: a million signed records would be the bench's own
            # memory, not the worker's.
            await send_all(prod, signed_records(stack, [
                application(f"APP-{uuid.uuid4().hex[:12].upper()}", people.resident_id(), now)
                for _ in range(size)]))
            sent += size
            while await done() < sent - chunk:  # at most two chunks ahead of the worker
                await asyncio.sleep(0.1)
            if sent // step > samples[-1][0] // step or sent == n:
                while sent == n and await done() < n:
                    await asyncio.sleep(0.1)
                handled = await done()
                samples.append((handled, rss_mib(worker.pid)))
                rate = handled / (time.perf_counter() - started)
                print(f"{handled:>10,} events  RSS {samples[-1][1]:7.1f} MiB  "
                      f"({rate:,.0f} events/s so far)", flush=True)
        await prod.stop()
        warm = samples[1][1] if len(samples) > 2 else samples[0][1]
        end = samples[-1][1]
        growth = (end - warm) / warm * 100
        print(f"RSS after warm-up {warm:.1f} MiB, at the end {end:.1f} MiB: "
              f"{growth:+.1f}% over {n:,} events")
        result("worker RSS growth", growth, "%", goal=10, events=n, warm_mib=round(warm, 1),
               end_mib=round(end, 1))
    finally:
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    args = parser.parse_args()
    run(lambda: main(args.n, args.chunk))
