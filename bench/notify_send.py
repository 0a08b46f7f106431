"""Sending throughput of the notify dispatcher against the local SMPP and SMTP servers.

Claims N SMS and N/4 emails as delivery rows, then lets the dispatcher send them with the rate
limits lifted, and prints messages per second per channel. Run: python bench/notify_send.py [N]
"""
from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from services.notify import repository as repo
from services.notify.app import build_dispatcher
from services.notify.domain.catalogue import Message
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import Database, connect
from shared.devstack import people
from shared.devstack.broker import free_port
from shared.devstack.database import DevDatabase
from shared.devstack.mailserver import MailServer
from shared.devstack.smsc import LocalSmsc
from shared.settings import NotifySettings

TEXT = "【医保服务】王伟，您的城乡居民基本医疗保险已缴费确认，参保状态为正常，有效期至2026-12-31。"


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="medins-notify-bench-"))
    database = DevDatabase.start(work / "pgdata")
    schema = f"bench{uuid.uuid4().hex[:6]}_notify"
    conn = await connect(database.url)
    await migrate(conn, schema, service_migrations("notify"))
    await conn.close()
    smsc = await LocalSmsc(free_port(), send_receipts=True).start()
    mail = MailServer(work / "mail", free_port()).start()
    settings = NotifySettings(MEDINS_DATABASE_URL=database.url, smtp_port=mail.port,
                              smpp_port=smsc.port, sms_rate_per_second=100_000,
                              email_rate_per_second=100_000)
    db = Database(database.url, schema, max_size=20)
    await db.start()
    dispatcher = build_dispatcher(db, settings)
    try:
        async with db.pool.acquire() as c:
            for i in range(n):
                msgs = [Message("sms", people.mobile(), "bench", None, TEXT)]
                if i % 4 == 0:
                    msgs.append(Message("email", f"p{i}@example.cn", "bench", "参保生效通知", TEXT))
                await repo.claim_deliveries(c, f"bench-{i}", people.resident_id(), msgs)
        for channel, count in (("sms", n), ("email", n // 4)):
            started = time.perf_counter()
            while await dispatcher.dispatch_once(channel):
                pass
            took = time.perf_counter() - started
            print(f"{channel:>5}: {count} messages in {took:.2f}s = {count / took:7.0f} msg/s")
        started = time.perf_counter()
        async with db.pool.acquire() as c:
            while (delivered := await c.fetchval(
                    "SELECT count(*) FROM deliveries WHERE channel = 'sms'"
                    " AND delivery_state = 'delivered'")) < n:
                if time.perf_counter() - started > 30:
                    break
                await asyncio.sleep(0.05)
            receipts = await c.fetchval("SELECT count(*) FROM sms_receipts")
            by_status = await c.fetch("SELECT status, count(*) FROM deliveries GROUP BY 1")
        print(f"receipts: {receipts} received; {delivered} of {n} SMS marked delivered "
              f"{time.perf_counter() - started:.2f}s after the last send; "
              f"statuses {dict((r[0], r[1]) for r in by_status)}")
    finally:
        await dispatcher.on_stop()
        await db.stop()
        mail.stop()
        await smsc.stop()
        database.stop()


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) still runs the clean-up of the broker and database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
