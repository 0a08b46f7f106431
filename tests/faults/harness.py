"""A private stack for fault tests: own PostgreSQL, broker, SMTP, SMSC, supervised workers."""
from __future__ import annotations

import asyncio
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from rich.console import Console

from shared.clock import china_today
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.envelope import new_envelope
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import physical
from shared.db.sealed import RESIDENT_ID, DataKeys, parse_keys, read_keys_text
from shared.devstack import people
from shared.devstack.broker import EmbeddedBroker, free_port, wait_for_port
from shared.devstack.mailserver import read_mailbox
from shared.devstack.smsc import read_received
from shared.devstack.supervisor import Stack

REGION = "210200"
# What each person is told when they apply, are approved and pay.
SMS_PER_PERSON = 3
EMAILS_PER_PERSON = 2
# The workers' stop deadline in the suite (MEDINS_STOP_DEADLINE_SECONDS): above notify's
# drain of 10 s, short enough for the suite.
STOP_DEADLINE_SECONDS = 15
# Receipts of a lost answer are linked to their 'unknown' SMS after this long
# (MEDINS_RECEIPT_SETTLE_SECONDS; 60 in production).
RECEIPT_SETTLE_SECONDS = 10


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class TempPostgres:
    """A throwaway cluster from Debian's PostgreSQL binaries on a free port: ours to stop."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin = bin_dir
        # Its own folder in /tmp: the postgres user cannot reach into pytest's 0700 folders.
        self.folder = Path(tempfile.mkdtemp(prefix="medins-faults-pg-"))
        self.data = self.folder / "pgdata"
        self.port = free_port()
        # initdb refuses to run as root: run the cluster as the postgres user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> TempPostgres:
        if self.as_user:
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                  "postgres", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "postgres.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Person:
    person_id: str
    name: str
    mobile: str
    email: str


def make_people(seed: int, count: int) -> list[Person]:
    rng = random.Random(seed)
    out: list[Person] = []
    seen: set[str] = set()
    while len(out) < count:
        pid = people.resident_id(REGION, rng=rng)
        if pid in seen:
            continue
        seen.add(pid)
        out.append(Person(pid, people.name(rng), people.mobile(rng),
                          f"f{seed}x{len(out)}@example.cn"))
    return out


@dataclass
class Tally:
    """What came out for one batch of people, counted from the servers and the tables."""

    persons_active: int
    sms: Counter[str]
    emails: Counter[str]
    deliveries: Counter[str]
    history_dupes: int

    @property
    def unknown(self) -> int:
        return self.deliveries["sms:unknown"] + self.deliveries["email:unknown"]

    def lost_and_duplicated(self, batch: list[Person]) -> tuple[int, int]:
        lost = dup = 0
        for p in batch:
            got_sms, got_mail = self.sms[p.mobile], self.emails[p.email]
            lost += max(0, SMS_PER_PERSON - got_sms) + max(0, EMAILS_PER_PERSON - got_mail)
            dup += max(0, got_sms - SMS_PER_PERSON) + max(0, got_mail - EMAILS_PER_PERSON)
        lost += len(batch) - self.persons_active
        return lost, dup + self.history_dupes


@dataclass
class EventTally:
    """Events of one batch counted by id: the load's events each taken by enrollment (its
    processed table), and one message.sent per sent message on notify's topic, with the id a
    send derives (source event, channel, attempt)."""

    expected: int
    lost: int
    duplicated: int
    copies: int  # ids published more than once (the relay's at-least-once; deduped by id)
    detail: str = ""


class ServerProcess:
    """A local server (SMTP relay or SMSC) in its own process: down means killed, like a real
    one; up means a new process on the same port."""

    def __init__(self, module: str, folder: Path) -> None:
        self.module, self.folder, self.port = module, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, str(self.port),
                                      str(self.folder)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30, self.proc)

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class FaultStack:
    folder: Path
    services: tuple[str, ...] = ("enrollment", "notify")
    namespace: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:6]}_")
    pg: TempPostgres | None = None
    broker: EmbeddedBroker | None = None
    mail: ServerProcess | None = None
    smsc: ServerProcess | None = None
    stack: Stack | None = None
    _watch: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    # The ids of the events sent for each person (all acknowledged by the broker).
    sent_ids: dict[str, list[str]] = field(default_factory=dict)

    def start(self) -> FaultStack:
        self.pg = TempPostgres().init()
        self.pg.start()
        self.broker = EmbeddedBroker.start(free_port(), str(self.folder / "broker.log"))
        self.mail = ServerProcess("shared.devstack.mailserver", self.folder / "mail")
        self.mail.up()
        self.smsc = ServerProcess("shared.devstack.smsc", self.folder / "sms")
        self.smsc.up()
        log = open(self.folder / "up.log", "w", encoding="utf-8")  # noqa: SIM115
        self.stack = Stack([REGION], console=Console(file=log, soft_wrap=True, width=300),
                           services=self.services)
        self.stack.broker = self.broker
        self.stack.env = {
            "MEDINS_BROKER_URL": self.broker.url, "MEDINS_DATABASE_URL": self.pg.url,
            "MEDINS_SMTP_HOST": "127.0.0.1", "MEDINS_SMTP_PORT": str(self.mail.port),
            "MEDINS_SMPP_HOST": "127.0.0.1", "MEDINS_SMPP_PORT": str(self.smsc.port),
            "MEDINS_NAMESPACE": self.namespace, "MEDINS_STATE_DIR": str(self.folder / "state"),
            "MEDINS_DEV_TIMEOUTS": "true", "MEDINS_SMS_RATE_PER_SECOND": "300",
            "MEDINS_EMAIL_RATE_PER_SECOND": "300", "MEDINS_UNKNOWN_AFTER_SECONDS": "20",
            "MEDINS_BREAKER_OPEN_SECONDS": "1", "MEDINS_SEND_BACKOFF_MAX_SECONDS": "2",
            "MEDINS_DRAIN_SECONDS": "10",
            "MEDINS_RECEIPT_SETTLE_SECONDS": str(RECEIPT_SETTLE_SECONDS),
            # Each worker's own bounded exit on SIGTERM/SIGINT; the supervisor's SIGKILL comes
            # STOP_GRACE_MARGIN_SECONDS later, so a test sees the worker's exit, not the kill.
            "MEDINS_STOP_DEADLINE_SECONDS": str(STOP_DEADLINE_SECONDS),
            # Keys and trust store of this stack, never the checkout's .medins.
            "MEDINS_TRUST_DIR": str(self.folder / "trust"),
            "MEDINS_KEYRING_DIR": str(self.folder / "keys"),
        }
        self.stack.prepare()
        self.stack.start_workers()
        self._watch = threading.Thread(target=self.stack.watch, args=(self._stop,), daemon=True)
        self._watch.start()
        return self

    def trouble(self, lines: int = 60) -> str:
        """The supervisor's and workers' last warnings and errors (masked as every log), for
        a failure's report: CI keeps only what the test prints."""
        path = self.folder / "up.log"
        if not path.exists():
            return ""
        noted = [line.rstrip()[:400] for line in
                 path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if any(w in line for w in ('"warning"', '"error"', "Traceback", "Error",
                                            "restart", "exited"))]
        return "\n".join(noted[-lines:])

    def close(self) -> None:
        self._stop.set()
        if self._watch:
            self._watch.join(5)
        if self.stack:
            self.stack._stop_workers()
        for part in (self.mail, self.smsc):
            if part:
                part.down()
        if self.stack and self.stack.broker:
            self.stack.broker.stop()
        if self.pg:
            try:
                self.pg.stop()
            except Exception:
                pass
            self.pg.remove()

    # -- faults -----------------------------------------------------------------------
    def worker(self, service: str) -> subprocess.Popen[bytes]:
        assert self.stack
        return self.stack.workers[service]

    def signal_worker(self, service: str, sig: int) -> subprocess.Popen[bytes]:
        proc = self.worker(service)
        proc.send_signal(sig)
        return proc

    def smtp_down(self) -> None:
        assert self.mail
        self.mail.down()

    def smtp_up(self) -> None:
        assert self.mail
        self.mail.up()

    def smsc_down(self) -> None:
        assert self.smsc
        self.smsc.down()

    def smsc_up(self) -> None:
        assert self.smsc
        self.smsc.up()

    def kill_broker(self) -> None:
        assert self.stack and self.stack.broker
        self.stack.broker.process.send_signal(signal.SIGKILL)

    def broker_port(self) -> int:
        assert self.stack and self.stack.broker
        return self.stack.broker.port

    def wait_broker_back(self, deadline: float) -> None:
        assert self.stack
        stop_at = time.monotonic() + deadline
        while time.monotonic() < stop_at:
            broker = self.stack.broker
            if broker and broker.process.poll() is None and self.stack.broker_restarts:
                wait_for_port(broker.port, deadline)
                return
            time.sleep(0.1)
        raise AssertionError("the supervisor did not restart the broker")

    # -- load and counting ------------------------------------------------------------
    async def send(self, batch: list[Person]) -> list[Person]:
        """Each person applies, is approved and pays: with nothing but aiokafka. Returns the
        people all of whose events the broker acknowledged (stops at the first refusal)."""
        assert self.stack
        producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.env["MEDINS_BROKER_URL"].removeprefix("kafka://"),
            acks="all", request_timeout_ms=10_000)
        await producer.start()
        year = china_today().year
        now = datetime.now(UTC)
        acked: list[Person] = []
        # Each event signed by its rightful producer's key from this stack's keyring
        # (shared.trust; `medins up`'s prepare made the keys): the workers refuse unsigned ones.
        from shared.messaging.publisher import Signer

        signer = Signer(Path(self.stack.env["MEDINS_KEYRING_DIR"]),
                        Path(self.stack.env["MEDINS_TRUST_DIR"]))
        try:
            for p in batch:
                app_id = f"APP-{p.person_id}"
                ids = []
                for payload in (
                    EnrollmentApplicationSubmitted(
                        application_id=app_id, person_id=p.person_id, name=p.name,
                        insurance_type="resident", mobile=p.mobile, email=p.email,
                        channel="wechat", region_code=REGION, submitted_at=now),
                    EnrollmentReviewDecided(
                        application_id=app_id, person_id=p.person_id, decision="approve",
                        reviewer="s1", decided_at=now),
                    ContributionPaymentConfirmed(
                        payment_ref=f"TAX-{p.person_id}", person_id=p.person_id,
                        application_id=app_id, insurance_type="resident",
                        period_start=date(year, 1, 1), period_end=date(year, 12, 31),
                        amount_fen=40_000, paid_at=now),
                ):
                    # Each producer's own topic (the channels', the review desk's, the tax
                    # authority's): the contract names it.
                    topic = physical(payload.topic, region=REGION, namespace=self.namespace)
                    env = new_envelope(payload.event_type, payload, source="/faults",
                                       region=REGION)
                    try:
                        value = env.to_bytes()
                        await producer.send_and_wait(topic, value, key=p.person_id.encode(),
                                                     headers=signer.headers(env, value))
                    except Exception:
                        return acked
                    ids.append(env.id)
                self.sent_ids[p.person_id] = ids
                acked.append(p)
            return acked
        finally:
            await producer.stop()

    async def _conn(self) -> asyncpg.Connection:
        assert self.pg
        return await asyncpg.connect(self.pg.url, timeout=3)

    def resident_keys(self, ids: list[str]) -> list[str]:
        """The IDs' keyed hashes under the stack's data keys (the workers' keys, not this
        process's settings)."""
        assert self.stack
        env = {**os.environ, **self.stack.env}
        keys_file = (Path(env["MEDINS_DATA_KEYS_FILE"]) if env.get("MEDINS_DATA_KEYS_FILE")
                     else Path(env["MEDINS_KEYRING_DIR"]) / "data-keys")
        ring = DataKeys(parse_keys(read_keys_text(env.get("MEDINS_DATA_KEYS"), keys_file)))
        return [k for pid in ids for k in ring.digests(pid, RESIDENT_ID)]

    async def tally(self, batch: list[Person]) -> Tally:
        ids = [p.person_id for p in batch]
        mobiles = {p.mobile for p in batch}
        emails = {p.email for p in batch}
        conn = await self._conn()
        try:
            ns = self.namespace
            # Enrollment finds people by the keyed hash of their ID (under every valid key).
            keys = self.resident_keys(ids)
            active = await conn.fetchval(
                f"SELECT count(*) FROM {ns}r{REGION}_enrollment.persons"
                " WHERE person_key = ANY($1::text[]) AND status = 'active'", keys)
            states = Counter({f"{r['channel']}:{r['status']}": r["n"] for r in await conn.fetch(
                f"SELECT channel, status, count(*) AS n FROM {ns}r{REGION}_notify.deliveries"
                " WHERE person_key = ANY($1::text[]) GROUP BY 1, 2", keys)})
            # By business key: each person's history holds each step once.
            dupes = await conn.fetchval(
                f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM"
                f" {ns}r{REGION}_enrollment.history WHERE person_key = ANY($1::text[])"
                " GROUP BY person_key, reference, what, detail::text HAVING count(*) > 1) d",
                keys)
        finally:
            await conn.close()
        # The servers are read after the tables: a row final in the tables has its message
        # at the server already, so a count taken now is never stale.
        assert self.smsc and self.mail
        sms = Counter(m["to"] for m in read_received(self.smsc.folder) if m["to"] in mobiles)
        mails: Counter[str] = Counter()
        for m in read_mailbox(self.mail.folder):
            for r in m.recipients:
                if r in emails:
                    mails[r] += 1
        return Tally(int(active), sms, mails, states, int(dupes))

    async def events_by_id(self, batch: list[Person], deadline: float = 60) -> EventTally:
        """Count the batch's events by id, reading notify's topic until every expected
        message.sent is there and notify's outbox is empty (or the deadline passes)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from shared.contracts.envelope import derived_id
        from shared.contracts.notify import MessageSent

        assert self.stack
        inputs = [i for p in batch for i in self.sent_ids.get(p.person_id, [])]
        ns = self.namespace
        conn = await self._conn()
        try:
            taken = {r["event_id"] for r in await conn.fetch(
                f"SELECT event_id FROM {ns}r{REGION}_enrollment.processed_messages"
                " WHERE event_id = ANY($1::text[])", inputs)}
            sent = await conn.fetch(
                f"SELECT source_event_id, channel, attempts FROM {ns}r{REGION}_notify.deliveries"
                " WHERE person_key = ANY($1::text[]) AND status = 'sent'",
                self.resident_keys([p.person_id for p in batch]))
        finally:
            await conn.close()
        expected = {derived_id(r["source_event_id"], r["channel"], MessageSent.event_type,
                               r["attempts"]): (r["source_event_id"], r["channel"])
                    for r in sent}
        sources = {s for s, _ in expected.values()}
        topic = physical("notify.events", region=REGION, namespace=ns)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.env["MEDINS_BROKER_URL"].removeprefix("kafka://"),
            enable_auto_commit=False, auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        seen: Counter[str] = Counter()
        # Per business key (source event, channel): the message.sent ids seen.
        by_key: dict[tuple[str, str], set[str]] = {}
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, n) for n in parts])
            stop_at = time.monotonic() + deadline
            while True:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        doc = json.loads(record.value)
                        if (doc.get("type") == MessageSent.event_type
                                and doc["data"]["source_event_id"] in sources):
                            seen[doc["id"]] += 1
                            by_key.setdefault((doc["data"]["source_event_id"],
                                               doc["data"]["channel"]), set()).add(doc["id"])
                if (set(expected) <= set(seen) and await self._outbox_empty("notify")) or \
                        time.monotonic() > stop_at:
                    break
        finally:
            await consumer.stop()
        missing_in = len(set(inputs) - taken)
        missing_out = len(set(expected) - set(seen))
        # Another id for the same message: its sent event emitted twice (a second send).
        twice = sum(len(ids) - 1 for ids in by_key.values() if len(ids) > 1)
        copies = sum(1 for n in seen.values() if n > 1)
        return EventTally(
            len(inputs) + len(expected), missing_in + missing_out, twice, copies,
            f"{len(taken)}/{len(inputs)} input events taken by enrollment, "
            f"{len(expected) - missing_out}/{len(expected)} message.sent on the topic, "
            f"{twice} sent twice under another id, {copies} ids published more than once")

    async def _outbox_empty(self, service: str) -> bool:
        conn = await self._conn()
        try:
            return not await conn.fetchval(
                f"SELECT count(*) FROM {self.namespace}r{REGION}_{service}.outbox")
        finally:
            await conn.close()

    async def quiescent(self, batch: list[Person], deadline: float) -> Tally:
        """Poll until every person is active and told everything, and no delivery is still
        under way; fail at the deadline with what was seen."""
        stop_at = time.monotonic() + deadline
        last: Tally | None = None
        done_at: float | None = None
        while True:
            try:
                last = await self.tally(batch)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                last = None
            if last is not None:
                expected = len(batch) * (SMS_PER_PERSON + EMAILS_PER_PERSON)
                done = (last.persons_active == len(batch)
                        and sum(n for k, n in last.deliveries.items()
                                if k.split(":")[0] in ("sms", "email")) == expected
                        and not any(last.deliveries[f"{c}:{s}"] for c in ("sms", "email")
                                    for s in ("pending", "sending")))
                if done:
                    # An SMS left `unknown` (a hand-over whose answer was lost) is settled by
                    # notify itself from the SMSC's receipts: give that its time (the settle
                    # setting and two turns of the reconcile timer) before counting.
                    done_at = done_at or time.monotonic()
                    if (not last.deliveries["sms:unknown"]
                            or time.monotonic() - done_at > RECEIPT_SETTLE_SECONDS + 10):
                        return last
            if time.monotonic() > stop_at:
                raise AssertionError(f"not quiescent within {deadline}s: {last}")
            await asyncio.sleep(0.25)

    async def first_sms_seen(self, batch: list[Person], deadline: float = 60) -> None:
        """Wait until sending for this batch is under way (so a fault hits work in flight)."""
        mobiles = {p.mobile for p in batch}
        stop_at = time.monotonic() + deadline
        assert self.smsc
        while not any(m["to"] in mobiles for m in read_received(self.smsc.folder)):
            if time.monotonic() > stop_at:
                raise AssertionError("no SMS of the batch went out; the stack's last "
                                     f"warnings and errors:\n{self.trouble()}")
            await asyncio.sleep(0.05)


def lone_worker(stack: FaultStack, service: str, broker_url: str,
                folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One worker outside the supervisor (nothing restarts it): its own broker and namespace,
    the stack's database, keys and trust store. Returns it and its web port."""
    assert stack.stack
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = os.environ | stack.stack.env | {
        "MEDINS_BROKER_URL": broker_url, "MEDINS_NAMESPACE": f"w{uuid.uuid4().hex[:6]}_",
        "MEDINS_REGION": REGION, "MEDINS_WEB_PORT": str(port),
        "MEDINS_STATE_DIR": str(folder / "state"), "MEDINS_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1"}
    with open(folder / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker", service],
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, port


def wait_ready(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the worker's /ready says yes (database, broker, partitions assigned)."""
    import urllib.error
    import urllib.request

    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"worker not ready within {deadline}s")


def process_gone(proc: subprocess.Popen[bytes], deadline: float) -> float:
    """Seconds the process took to exit, failing past the deadline."""
    started = time.monotonic()
    try:
        proc.wait(deadline)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"worker still running {deadline}s after the signal") from exc
    return time.monotonic() - started
