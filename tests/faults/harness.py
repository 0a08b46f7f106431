"""A private stack for fault tests: own PostgreSQL, broker, SMTP, SMSC, supervised workers."""
from __future__ import annotations

import asyncio
import glob
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
        self.stack.stop_grace_seconds = 25
        self.stack.env = {
            "MEDINS_BROKER_URL": self.broker.url, "MEDINS_DATABASE_URL": self.pg.url,
            "MEDINS_SMTP_HOST": "127.0.0.1", "MEDINS_SMTP_PORT": str(self.mail.port),
            "MEDINS_SMPP_HOST": "127.0.0.1", "MEDINS_SMPP_PORT": str(self.smsc.port),
            "MEDINS_NAMESPACE": self.namespace, "MEDINS_STATE_DIR": str(self.folder / "state"),
            "MEDINS_DEV_TIMEOUTS": "true", "MEDINS_SMS_RATE_PER_SECOND": "300",
            "MEDINS_EMAIL_RATE_PER_SECOND": "300", "MEDINS_UNKNOWN_AFTER_SECONDS": "20",
            "MEDINS_BREAKER_OPEN_SECONDS": "1", "MEDINS_SEND_BACKOFF_MAX_SECONDS": "2",
            "MEDINS_DRAIN_SECONDS": "10",
            # Keys and trust store of this stack, never the checkout's .medins.
            "MEDINS_TRUST_DIR": str(self.folder / "trust"),
            "MEDINS_KEYRING_DIR": str(self.folder / "keys"),
        }
        self.stack.prepare()
        self.stack.start_workers()
        self._watch = threading.Thread(target=self.stack.watch, args=(self._stop,), daemon=True)
        self._watch.start()
        return self

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

    async def quiescent(self, batch: list[Person], deadline: float) -> Tally:
        """Poll until every person is active and told everything, and no delivery is still
        under way; fail at the deadline with what was seen."""
        stop_at = time.monotonic() + deadline
        last: Tally | None = None
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
                raise AssertionError("no SMS of the batch went out")
            await asyncio.sleep(0.05)


def process_gone(proc: subprocess.Popen[bytes], deadline: float) -> float:
    """Seconds the process took to exit, failing past the deadline."""
    started = time.monotonic()
    try:
        proc.wait(deadline)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"worker still running {deadline}s after the signal") from exc
    return time.monotonic() - started
