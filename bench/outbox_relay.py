"""Outbox relay: how fast committed rows reach the broker (it must keep up with every service).

Starts its own broker and database (DATABASE_URL's server if set), fills one schema's outbox
with N signed ~770-byte application envelopes spread over 4 partitions (as a worker's batches
would leave them, in chunks of 1,000 rows), then runs the relay exactly as a worker does and
times it until the outbox is empty and every record is readable on the topic.
Run: python bench/outbox_relay.py [N]
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

from benchlib import Stack, application, count_records, result, run, signed_records

from shared.contracts.topics import ENROLLMENT_FROM_CHANNELS
from shared.db.migrations import MESSAGING_MIGRATIONS, discover, migrate
from shared.db.pool import Database, connect
from shared.messaging.outbox import OutboxMessage, OutboxRelay, write_outbox


async def main(n: int) -> None:
    stack = Stack.start("relay")
    try:
        await stack.topics()
        schema = stack.schema("relaybench")
        conn = await connect(stack.db.url)
        await migrate(conn, schema, discover("messaging", MESSAGING_MIGRATIONS))
        await conn.close()
        db = Database(stack.db.url, schema)
        await db.start()
        topic = stack.topic(ENROLLMENT_FROM_CHANNELS)
        now = datetime.now(UTC)
        records = signed_records(stack, [application(f"APP-{uuid.uuid4().hex[:12].upper()}",
                                                     submitted_at=now) for _ in range(n)])
        async with db.pool.acquire() as conn:
            for at in range(0, n, 1000):
                async with conn.transaction():
                    await write_outbox(conn, schema, [
                        OutboxMessage(topic, r.key, r.value,
                                      tuple((k, v.decode()) for k, v in r.headers or ()))
                        for r in records[at:at + 1000]])
        relay = OutboxRelay(db, stack.broker.url, "relaybench", poll_seconds=0.2)
        started = time.perf_counter()
        await relay.start()
        async with db.pool.acquire() as conn:
            while await conn.fetchval("SELECT count(*) FROM outbox"):
                await asyncio.sleep(0.02)
        emptied = time.perf_counter() - started
        await count_records(stack.broker.url, topic, n)
        await relay.stop()
        await db.stop()
        print(f"relay: {n} rows of {sum(len(r.value) for r in records) / n:.0f} bytes published"
              f" and deleted in {emptied:.2f}s: {n / emptied:,.0f} events/s")
        result("outbox relay", n / emptied, "events/s", goal="≥ the highest service rate")
    finally:
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=50_000)
    args = parser.parse_args()
    run(lambda: main(args.n))
