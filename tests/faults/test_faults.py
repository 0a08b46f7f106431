"""Fault suite: a supervised stack under load, one fault at a time, counting what came out."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from shared.devstack.broker import EmbeddedBroker, free_port
from tests.faults.harness import (
    STOP_DEADLINE_SECONDS,
    EventTally,
    FaultStack,
    lone_worker,
    make_people,
    postgres_bin,
    process_gone,
    wait_ready,
)

pytestmark = [pytest.mark.faults,
              pytest.mark.skipif(postgres_bin() is None,
                                 reason="needs Debian's PostgreSQL binaries for its own cluster")]

# MEDINS_FAULTS_LONG=1: more people per fault and every worker killed and stopped.
LONG = os.environ.get("MEDINS_FAULTS_LONG", "") not in ("", "0", "false")
PEOPLE = int(os.environ.get("MEDINS_FAULTS_PEOPLE", "200" if LONG else "25"))
SERVICES = ("enrollment", "transfer", "reimbursement", "notify") if LONG else (
    "enrollment", "notify")
QUIET_WITHIN = 180.0
# The columns, then the operator's share and the events counted by id.
HEADER = ("fault", "sent", "lost", "duplicated", "recovered by itself", "recovery time",
          "outcome unknown (for the operator)", "events lost / duplicated by id")
TABLE: list[tuple[object, ...]] = []


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults"), services=SERVICES).start()
    yield stack
    stack.close()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and TABLE:
        reporter.write_line("")
        reporter.write_line("fault suite: " + " | ".join(HEADER))
        for row in TABLE:
            reporter.write_line(" | ".join(str(c) for c in row))


def _by_id(events: EventTally) -> str:
    """Events lost / duplicated by id, and the same ids published again (deduped by id)."""
    again = f" (+{events.copies} same-id copies)" if events.copies else ""
    return f"{events.lost} / {events.duplicated}{again}"


async def run_fault(faults: FaultStack, name: str, seed: int,
                    inject: Callable[[], Awaitable[None]], *, promised: bool = True,
                    unknown_allowed: bool = False, republish_allowed: bool = False) -> None:
    """Send a batch, inject the fault once sending is under way, and count at quiescence."""
    batch = make_people(seed, PEOPLE)
    sending = asyncio.create_task(faults.send(batch))
    await faults.first_sms_seen(batch)
    await inject()
    restored = time.monotonic()
    acked = await sending
    expected = len(batch) * 5
    sent = f"{len(acked) * 3} events / {expected} messages"
    try:
        tally = await faults.quiescent(batch, QUIET_WITHIN)
    except AssertionError:
        TABLE.append((name, sent, "?", "?", "no", f"> {QUIET_WITHIN:.0f} s", "?", "?"))
        print(f"{name}: not quiescent; the stack's last warnings and errors:\n"
              f"{faults.trouble()}")
        raise
    recovery = time.monotonic() - restored
    events = await faults.events_by_id(batch)
    lost, duplicated = tally.lost_and_duplicated(batch)
    TABLE.append((name, sent, lost, duplicated, "yes" if tally.unknown == 0 else "no",
                  f"{recovery:.1f} s", tally.unknown,
                  _by_id(events)))
    print(f"{name}: {expected} messages, lost {lost}, duplicated {duplicated}, "
          f"deliveries {dict(tally.deliveries)}, recovered in {recovery:.1f} s; "
          f"events by id: {events.detail}")
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
        # By id: every event the load sent taken once, every sent message's event published,
        # none twice under another id; and no id published twice, except where a worker is
        # killed between the broker's acknowledgement and the outbox row's delete (the
        # relay's at-least-once: the same id again, which every consumer skips).
        assert (events.lost, events.duplicated) == (0, 0), events
        assert republish_allowed or events.copies == 0, events


async def test_no_fault_baseline(faults: FaultStack) -> None:
    async def nothing() -> None:
        return None

    await run_fault(faults, "none (baseline)", 1, nothing)


@pytest.mark.parametrize("service", SERVICES)
async def test_worker_killed_with_sigkill(faults: FaultStack, service: str) -> None:
    async def kill() -> None:
        faults.signal_worker(service, signal.SIGKILL).wait(10)

    await run_fault(faults, f"kill -9 {service}", 10 + SERVICES.index(service), kill,
                    unknown_allowed=service == "notify", republish_allowed=True)


@pytest.mark.parametrize("service", SERVICES if LONG else ("notify",))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT] if LONG else [signal.SIGTERM])
async def test_worker_stopped_gracefully_exits_in_bounded_time(
        faults: FaultStack, service: str, sig: signal.Signals) -> None:
    async def stop() -> None:
        took = await asyncio.to_thread(process_gone, faults.signal_worker(service, sig),
                                       STOP_DEADLINE_SECONDS + 5)
        print(f"{service} exited {took:.1f} s after {sig.name}")

    await run_fault(faults, f"{sig.name} {service}", 20 + SERVICES.index(service) + sig, stop)


@pytest.mark.parametrize("broker_state, sig", [
    ("killed", signal.SIGTERM), ("frozen", signal.SIGINT),
    *([("killed", signal.SIGINT), ("frozen", signal.SIGTERM)] if LONG else [])])
async def test_worker_exits_in_bounded_time_whatever_state_the_broker_is_in(
        faults: FaultStack, tmp_path_factory: pytest.TempPathFactory, broker_state: str,
        sig: signal.Signals) -> None:
    """A consuming worker whose broker is dead (kill -9) or unreachable (SIGSTOP: connections
    open, nothing answers) exits by itself within its stop deadline: no supervisor here."""
    folder = tmp_path_factory.mktemp(f"lone-{broker_state}")
    broker = EmbeddedBroker.start(free_port(), str(folder / "broker.log"))
    proc = None
    try:
        proc, port = lone_worker(faults, "enrollment", broker.url, folder)
        await asyncio.to_thread(wait_ready, port, proc, 120)
        if broker_state == "killed":
            broker.process.kill()
            broker.process.wait(10)
        else:
            broker.process.send_signal(signal.SIGSTOP)
        proc.send_signal(sig)
        took = await asyncio.to_thread(process_gone, proc, STOP_DEADLINE_SECONDS + 5)
        print(f"broker {broker_state}: worker exited with {proc.returncode} {took:.1f} s "
              f"after {sig.name}")
        TABLE.append((f"{sig.name} enrollment, broker {broker_state} (no supervisor)", "-",
                      "-", "-", "yes" if proc.returncode != -signal.SIGKILL else "no",
                      f"exited {took:.1f} s after the signal (code {proc.returncode})", "-",
                      "-"))
        assert proc.returncode != -signal.SIGKILL
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        broker.process.kill()  # a stopped process is killed too
        broker.process.wait(10)


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
    after_events = await faults.events_by_id(after)
    crashed = await faults.tally(acked)
    # What the memory broker held is gone, its topic too: counted, nothing promised.
    crashed_events = await faults.events_by_id(acked, deadline=5)
    lost, duplicated = crashed.lost_and_duplicated(acked)
    TABLE.append(("broker kill -9, memory storage (acknowledged people only)",
                  f"{len(acked) * 3} events / {len(acked) * 5} messages", lost, duplicated,
                  "yes" if (lost, duplicated, crashed.unknown, crashed_events.lost) == (0,) * 4
                  else "no (memory storage)", f"{recovery:.1f} s", crashed.unknown,
                  _by_id(crashed_events)))
    after_lost, after_dup = after_tally.lost_and_duplicated(after)
    TABLE.append(("batch sent after the broker restart",
                  f"{len(after) * 3} events / {len(after) * 5} messages", after_lost, after_dup,
                  "yes" if after_tally.unknown == 0 else "no", f"{recovery:.1f} s",
                  after_tally.unknown,
                  _by_id(after_events)))
    print(f"broker kill -9: {len(acked)} of {len(batch)} people acknowledged before the "
          f"kill; of their {len(acked) * 5} messages {lost} lost, {duplicated} duplicated; "
          f"events by id: {crashed_events.detail}; after the restart: {after_events.detail}")
    assert duplicated == 0 and (after_lost, after_dup) == (0, 0), (crashed, after_tally)
    assert (after_events.lost, after_events.duplicated, after_events.copies) == (0, 0, 0), \
        after_events


async def _nothing() -> None:
    return None


