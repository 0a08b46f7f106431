"""Sending throughput of the notify dispatcher against the local SMPP and SMTP servers.

Claims N SMS and N/2 emails as delivery rows, then lets the dispatcher send them with the rate
limits lifted, and prints messages per second per channel beside the same figures for the
previous sender (one SMTP connection per mail, one answer written per round trip), measured in
the same run from the code at BASELINE_COMMIT. The SMSC and the SMTP server each run in a
process of their own, as under `medins up`. Run: python bench/notify_send.py [N] [--no-baseline]
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import bulk_gateway

from services.notify import repository as repo
from services.notify.app import build_dispatcher
from services.notify.domain.catalogue import Message
from services.notify.ratelimit import TokenBucket
from shared.db.migrations import migrate, service_migrations
from shared.db.pool import Database, connect
from shared.devstack import people
from shared.devstack.broker import free_port
from shared.devstack.database import DevDatabase
from shared.devstack.smsc import read_received
from shared.settings import NotifySettings

ROOT = Path(__file__).resolve().parent.parent
# The last commit with the per-message sender: its dispatcher, senders and journal are loaded
# from git and measured against the same servers and database.
BASELINE_COMMIT = "11e7c14779956ec599b1955c6c448087081abe8f"
TEXT = "【医保服务】王伟，您的城乡居民基本医疗保险已缴费确认，参保状态为正常，有效期至2026-12-31。"
GOALS = {"sms": 1000, "email": 500}
LIFTED = 100_000.0


def result(figure: str, value: float, unit: str, **extra: Any) -> None:
    """The line bench/run_all.py reads (same format as bench/benchlib.py's)."""
    print("@result " + json.dumps({"figure": figure, "value": value, "unit": unit, **extra},
                                  ensure_ascii=False), flush=True)


def _serve(module: str, port: int, folder: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", module, str(port), str(folder)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{module} did not listen on {port}")


def _baseline_modules() -> types.SimpleNamespace:
    """The old senders, journal and dispatcher from git, as modules of their own (the old
    dispatcher bound to the old senders' exceptions); raises if git or the commit is missing."""
    loaded: dict[str, types.ModuleType] = {}
    for name in ("journal", "senders", "dispatcher"):
        source = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:services/notify/{name}.py"], cwd=ROOT,
            check=True, capture_output=True, text=True).stdout
        for dep in loaded:
            source = source.replace(f"from services.notify.{dep} import",
                                    f"from bench_baseline_{dep} import")
        module = types.ModuleType(f"bench_baseline_{name}")
        sys.modules[module.__name__] = module
        exec(compile(source, f"{BASELINE_COMMIT[:7]}:{name}.py", "exec"), module.__dict__)
        loaded[name] = module
    return types.SimpleNamespace(**loaded)


def _baseline_dispatcher(db: Database, settings: NotifySettings, work: Path) -> Any:
    old = _baseline_modules()
    sms = old.senders.SmppSmsSender(settings.smpp_host, settings.smpp_port,
                                    settings.smpp_system_id, settings.smpp_password,
                                    settings.sms_source_addr)
    email = old.senders.SmtpEmailSender(settings.smtp_host, settings.smtp_port,
                                        settings.mail_from,
                                        max_connections=settings.smtp_max_connections)
    dispatcher = old.dispatcher.Dispatcher(
        db, settings, {"sms": sms, "email": email},
        {"sms": TokenBucket(LIFTED), "email": TokenBucket(LIFTED)},
        journal=old.journal.OutcomeJournal(work / "baseline-outcomes.jsonl"))
    sms.on_receipt = dispatcher.on_receipt
    return dispatcher


async def _seed(db: Database, n_sms: int, n_email: int, tag: str) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        for i in range(max(n_sms, n_email)):
            msgs = []
            if i < n_sms:
                msgs.append(Message("sms", people.mobile(), "bench", None, TEXT))
            if i < n_email:
                msgs.append(Message("email", f"{tag}{i}@example.cn", "bench", "参保生效通知", TEXT))
            await repo.claim_deliveries(conn, f"bench-{tag}-{i}", people.resident_id(), msgs)


async def _measure(label: str, url: str, settings: NotifySettings, n_sms: int, n_email: int,
                   make: Callable[[Database], Any]) -> dict[str, float]:
    schema = f"bench{uuid.uuid4().hex[:6]}_notify"
    conn = await connect(url)
    await migrate(conn, schema, service_migrations("notify"))
    await conn.close()
    db = Database(url, schema, max_size=20)
    await db.start()
    await _seed(db, n_sms, n_email, label.split()[0])
    dispatcher = make(db)
    rates: dict[str, float] = {}
    try:
        for channel, count in (("sms", n_sms), ("email", n_email)):
            profile = None
            if os.environ.get("BENCH_PROFILE"):  # a folder: pstats of each path and channel
                import cProfile

                profile = cProfile.Profile()
                profile.enable()
            started, cpu = time.perf_counter(), time.process_time()
            # The channel's loop as the worker runs it, until every row has its final state.
            loop = asyncio.create_task(dispatcher._channel_loop(channel))
            async with db.pool.acquire() as c:
                while await c.fetchval("SELECT count(*) FROM deliveries WHERE channel = $1"
                                       " AND status IN ('pending', 'sending')", channel):
                    await asyncio.sleep(0.02)
            took = time.perf_counter() - started
            loop.cancel()
            if profile is not None:
                profile.disable()
                profile.dump_stats(Path(os.environ["BENCH_PROFILE"]) /
                                   f"{label.split()[0]}-{channel}.pstats")
            rates[channel] = count / took
            print(f"{label:>9} {channel:>5}: {count} in {took:5.2f}s = {rates[channel]:6.0f}/s"
                  f" ({(time.process_time() - cpu) / count * 1000:.2f} ms of this process's"
                  " CPU each)", flush=True)
        opened = getattr(dispatcher.senders["email"], "connections_opened", None)
        if opened is not None:
            print(f"{label:>9} email: {opened} SMTP connections for {n_email} mails")
        started = time.perf_counter()
        async with db.pool.acquire() as c:
            while (delivered := await c.fetchval(
                    "SELECT count(*) FROM deliveries WHERE channel = 'sms'"
                    " AND delivery_state = 'delivered'")) < n_sms:
                if time.perf_counter() - started > 30:
                    break
                await asyncio.sleep(0.05)
            by_status = dict(await c.fetch("SELECT status, count(*) FROM deliveries GROUP BY 1"))
        print(f"{label:>9} receipts: {delivered} of {n_sms} SMS marked delivered "
              f"{time.perf_counter() - started:.2f}s after the last send; statuses {by_status}")
    finally:
        await dispatcher.on_stop()
        await db.stop()
    return rates


async def main(n: int, baseline: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="medins-notify-bench-"))
    keys = work / "data-keys"
    if not (os.environ.get("MEDINS_DATA_KEYS") or os.environ.get("MEDINS_DATA_KEYS_FILE")):
        from shared.db.sealed import create_keys_file

        os.environ["MEDINS_DATA_KEYS_FILE"] = str(keys)
        create_keys_file(keys)
    database = DevDatabase.start(work / "pgdata")
    smsc_port, mail_port = free_port(), free_port()
    smsc = _serve("shared.devstack.smsc", smsc_port, work / "sms")
    mail = _serve("shared.devstack.mailserver", mail_port, work / "mail")
    # Limits lifted: no rate limit, and the bulk gateway ceilings unless the environment says.
    settings = NotifySettings(MEDINS_DATABASE_URL=database.url, smtp_port=mail_port,
                              smpp_port=smsc_port, sms_rate_per_second=LIFTED,
                              email_rate_per_second=LIFTED, state_dir=work / "state",
                              **bulk_gateway())
    n_email = n // 2
    print(f"SMPP window {settings.smpp_window} x {settings.smpp_sessions} session(s), "
          f"{settings.smtp_max_connections} SMTP connections, rate limits lifted; "
          f"{n} SMS and {n_email} emails per path")
    try:
        old: dict[str, float] = {}
        if baseline:
            try:
                old = await _measure("old path", database.url, settings, n, n_email,
                                     lambda db: _baseline_dispatcher(db, settings, work))
            except (subprocess.CalledProcessError, FileNotFoundError, ImportError,
                    AttributeError, TypeError) as exc:
                print(f"old path not measured: {exc!r}")
        new = await _measure("new path", database.url, settings, n, n_email,
                             lambda db: build_dispatcher(db, settings))
        received = len(read_received(work / "sms"))
        mails = len(list((work / "mail").glob("*.eml")))
        expected = (n + n_email) * (2 if old else 1)
        print(f"servers received {received} SMS and {mails} emails "
              f"(expected {expected - n_email * (2 if old else 1)} and "
              f"{n_email * (2 if old else 1)})")
        for channel, unit in (("sms", "SMS/s"), ("email", "emails/s")):
            extra: dict[str, Any] = {"goal": GOALS[channel]}
            line = f"{channel:>5}: {new[channel]:6.0f} {unit} (goal {GOALS[channel]})"
            if channel in old:
                extra["baseline"] = round(old[channel], 1)
                line += (f", old path {old[channel]:.0f} {unit} in the same run: "
                         f"{new[channel] / old[channel]:.1f}x")
            print(line)
            result(f"notify {channel} sent", round(new[channel], 1), unit, **extra)
    finally:
        mail.terminate()
        smsc.terminate()
        database.stop()


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) still runs the clean-up of the servers and database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 4000, "--no-baseline" not in sys.argv))
