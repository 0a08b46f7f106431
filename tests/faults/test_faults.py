"""Fault suite: a supervised stack under load, one fault at a time, counting what came out."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.faults.harness import FaultStack, make_people, postgres_bin, process_gone

pytestmark = [pytest.mark.faults,
              pytest.mark.skipif(postgres_bin() is None,
                                 reason="needs Debian's PostgreSQL binaries for its own cluster")]

# MEDINS_FAULTS_LONG=1: more people per fault and every worker killed and stopped.
LONG = os.environ.get("MEDINS_FAULTS_LONG", "") not in ("", "0", "false")
PEOPLE = int(os.environ.get("MEDINS_FAULTS_PEOPLE", "200" if LONG else "25"))
SERVICES = ("enrollment", "transfer", "reimbursement", "notify") if LONG else (
    "enrollment", "notify")
QUIET_WITHIN = 180.0
TABLE: list[tuple[str, int, int, int, str, str]] = []


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults"), services=SERVICES).start()
    yield stack
    stack.close()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and TABLE:
        reporter.write_line("")
        reporter.write_line("fault suite: fault | messages expected | lost | duplicated | "
                            "outcome unknown (for the operator) | recovery time")
        for row in TABLE:
            reporter.write_line(" | ".join(str(c) for c in row))


async def run_fault(faults: FaultStack, name: str, seed: int,
                    inject: Callable[[], Awaitable[None]], *, promised: bool = True,
                    unknown_allowed: bool = False) -> None:
    """Send a batch, inject the fault once sending is under way, and count at quiescence."""
    batch = make_people(seed, PEOPLE)
    sending = asyncio.create_task(faults.send(batch))
    await faults.first_sms_seen(batch)
    await inject()
    restored = time.monotonic()
    await sending
    tally = await faults.quiescent(batch, QUIET_WITHIN)
    recovery = time.monotonic() - restored
    lost, duplicated = tally.lost_and_duplicated(batch)
    expected = len(batch) * 5
    TABLE.append((name, expected, lost, duplicated, tally.unknown, f"{recovery:.1f} s"))
    print(f"{name}: {expected} messages, lost {lost}, duplicated {duplicated}, "
          f"deliveries {dict(tally.deliveries)}, recovered in {recovery:.1f} s")
    for p in batch:
        if (tally.sms[p.mobile], tally.emails[p.email]) != (3, 2):
            print(f"  {p.person_id[:6]}…: {tally.sms[p.mobile]} SMS, {tally.emails[p.email]} "
                  "emails received")
    if promised:
        # A kill -9 (of notify, or of the relay or SMSC) in the middle of a hand-over leaves
        # its outcome unknown: listed for the operator (medins notify parked), never resent
        # by itself, never counted as sent.
        assert duplicated == 0, tally
        assert lost <= (tally.unknown if unknown_allowed else 0), tally


async def test_no_fault_baseline(faults: FaultStack) -> None:
    async def nothing() -> None:
        return None

    await run_fault(faults, "none (baseline)", 1, nothing)


@pytest.mark.parametrize("service", SERVICES)
async def test_worker_killed_with_sigkill(faults: FaultStack, service: str) -> None:
    async def kill() -> None:
        faults.signal_worker(service, signal.SIGKILL).wait(10)

    await run_fault(faults, f"kill -9 {service}", 10 + SERVICES.index(service), kill,
                    unknown_allowed=service == "notify")


@pytest.mark.parametrize("service", SERVICES if LONG else ("notify",))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT] if LONG else [signal.SIGTERM])
async def test_worker_stopped_gracefully_exits_in_bounded_time(
        faults: FaultStack, service: str, sig: signal.Signals) -> None:
    async def stop() -> None:
        took = await asyncio.to_thread(process_gone, faults.signal_worker(service, sig), 30)
        print(f"{service} exited {took:.1f} s after {sig.name}")

    await run_fault(faults, f"{sig.name} {service}", 20 + SERVICES.index(service) + sig, stop)


async def test_postgresql_stopped(faults: FaultStack) -> None:
    async def outage() -> None:
        assert faults.pg
        await asyncio.to_thread(faults.pg.stop)
        await asyncio.sleep(8)  # the outage itself, not a wait for a result
        await asyncio.to_thread(faults.pg.start)

    await run_fault(faults, "PostgreSQL stopped 8 s", 30, outage)


async def test_smtp_relay_down(faults: FaultStack) -> None:
    async def outage() -> None:
        faults.smtp_down()
        await asyncio.sleep(8)
        faults.smtp_up()

    await run_fault(faults, "SMTP down 8 s", 31, outage, unknown_allowed=True)


async def test_smsc_down(faults: FaultStack) -> None:
    async def outage() -> None:
        faults.smsc_down()
        await asyncio.sleep(8)
        faults.smsc_up()

    await run_fault(faults, "SMSC down 8 s", 32, outage, unknown_allowed=True)


async def test_broker_killed_and_restarted_by_the_supervisor(faults: FaultStack) -> None:
    """Memory storage loses what it held (said at start), so no figure is promised for the
    batch in flight; what is promised: nothing twice, and the platform comes back by itself
    (a batch sent after the restart flows completely)."""
    batch = make_people(40, PEOPLE)
    sending = asyncio.create_task(faults.send(batch))
    await faults.first_sms_seen(batch)
    faults.kill_broker()
    killed = time.monotonic()
    await asyncio.to_thread(faults.wait_broker_back, 60)
    acked = await sending
    after = make_people(41, PEOPLE)
    assert len(await faults.send(after)) == len(after)
    after_tally = await faults.quiescent(after, QUIET_WITHIN)
    recovery = time.monotonic() - killed
    crashed = await faults.tally(acked)
    lost, duplicated = crashed.lost_and_duplicated(acked)
    TABLE.append(("broker kill -9, memory storage (acknowledged people only)", len(acked) * 5,
                  lost, duplicated, crashed.unknown, f"{recovery:.1f} s"))
    after_lost, after_dup = after_tally.lost_and_duplicated(after)
    TABLE.append(("batch sent after the broker restart", len(after) * 5, after_lost, after_dup,
                  after_tally.unknown, f"{recovery:.1f} s"))
    print(f"broker kill -9: {len(acked)} of {len(batch)} people acknowledged before the "
          f"kill; of their {len(acked) * 5} messages {lost} lost, {duplicated} duplicated")
    assert duplicated == 0 and (after_lost, after_dup) == (0, 0), (crashed, after_tally)


async def _nothing() -> None:
    return None


