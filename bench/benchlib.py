"""Shared parts of the benchmarks: own stack, signed events, workers, steady rates, results."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.contracts.base import Payload
from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.envelope import Envelope, new_envelope
from shared.contracts.topics import physical
from shared.db.pool import connect
from shared.devstack import people
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.database import DevDatabase
from shared.identity import REGIONS
from shared.messaging.admin import bootstrap_servers, ensure_topics, region_topics
from shared.messaging.publisher import Signer, partition_key
from shared.trust import ensure_simulated_keys

REGION = "210200"
PARTITIONS = 4
RESULT_PREFIX = "@result "


# Events of one type a service has committed: the benches count progress by it.
PROCESSED = "SELECT count(*) FROM processed_messages WHERE event_type = $1"


def result(figure: str, value: float, unit: str, **extra: Any) -> None:
    """One figure, machine-readable for bench/run_all.py, beside the bench's own lines."""
    print(RESULT_PREFIX + json.dumps({"figure": figure, "value": value, "unit": unit, **extra},
                                     ensure_ascii=False), flush=True)


def simulated_keys(work: Path) -> None:
    """The keys the test session and `medins up` make for every simulated producer, in this
    process's environment (so its children, the workers, read the same): workers refuse what
    is unsigned, so the benches sign like those producers do."""
    trust, keys = work / "trust", work / "keys"
    ensure_simulated_keys(trust, keys, REGIONS)
    os.environ["MEDINS_TRUST_DIR"] = str(trust)
    os.environ["MEDINS_KEYRING_DIR"] = str(keys)
    try:
        from shared.db.sealed import create_keys_file  # type: ignore[attr-defined]
    except ImportError:  # a tree without sealing at rest needs no data keys
        return
    os.environ.pop("MEDINS_DATA_KEYS", None)
    os.environ["MEDINS_DATA_KEYS_FILE"] = str(keys / "data-keys")
    create_keys_file(keys / "data-keys")


@dataclass
class Sent:
    """A record ready to send: signed before any clock starts."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None


# The gateway ceilings an agency would agree for bulk sending (notify's settings), used where
# the limits are lifted unless the environment sets them (MEDINS_SMPP_WINDOW, ...).
BULK_GATEWAY = {"smpp_window": 50, "smtp_max_connections": 8}


def bulk_gateway() -> dict[str, int]:
    """The bulk ceilings the environment does not set, by settings field name."""
    return {name: value for name, value in BULK_GATEWAY.items()
            if f"MEDINS_{name.upper()}" not in os.environ}


@dataclass
class Stack:
    """A broker and database of its own (DATABASE_URL's server if set), the simulated
    producers' keys, and a namespace, so nothing another run left behind is seen."""

    work: Path
    broker: EmbeddedBroker
    db: DevDatabase
    namespace: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    web_ports: dict[str, int] = field(default_factory=dict)
    # Workers started per service@region (a replica's log gets its number).
    started: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, label: str) -> Stack:
        work = Path(tempfile.mkdtemp(prefix=f"medins-bench-{label}-"))
        (work / "state").mkdir()
        simulated_keys(work)
        broker = EmbeddedBroker.start(log_path=str(work / "broker.log"))
        db = DevDatabase.start(work / "pgdata")
        return cls(work, broker, db, f"bench{uuid.uuid4().hex[:6]}_")

    def topic(self, logical: str, region: str = REGION) -> str:
        return physical(logical, region=region, namespace=self.namespace)

    def schema(self, service: str, region: str = REGION) -> str:
        return f"{self.namespace}r{region}_{service}"

    async def topics(self, regions: Iterable[str] = (REGION,)) -> None:
        for region in regions:
            await ensure_topics(self.broker.url, region_topics(region, self.namespace),
                                PARTITIONS)

    def env(self, region: str = REGION, **extra: str) -> dict[str, str]:
        return os.environ | {
            "MEDINS_BROKER_URL": self.broker.url, "MEDINS_DATABASE_URL": self.db.url,
            "MEDINS_NAMESPACE": self.namespace, "MEDINS_REGION": region,
            "MEDINS_LOG_LEVEL": os.environ.get("MEDINS_LOG_LEVEL", "WARNING"),
            "MEDINS_STATE_DIR": str(self.work / "state"),
            "MEDINS_OUTBOX_POLL_SECONDS": "0.5",
        } | extra

    def start_worker(self, service: str, region: str = REGION, **extra: str
                     ) -> subprocess.Popen[bytes]:
        port = free_port()
        name = f"{service}@{region}"
        # A replica's log beside the first's (`enrollment-210200-2.log`), never over it.
        started = self.started.get(name, 0) + 1
        self.started[name] = started
        self.web_ports[name] = port
        log = f"{service}-{region}{'' if started == 1 else f'-{started}'}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "worker", service],
            env=self.env(region, MEDINS_WEB_PORT=str(port), **extra),
            stdout=open(self.work / log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, cwd=self.work)
        self.workers.append(proc)
        return proc

    async def start_group(self, service: str, replicas: int = 1,
                          regions: Iterable[str] = (REGION,)) -> list[Callable[[], str]]:
        """`replicas` workers of `service` per region, one round at a time, each ready (its
        group gave it partitions) before the next starts; a /metrics reader per worker."""
        readers = []
        for _ in range(replicas):
            for region in regions:
                self.start_worker(service, region)
            for region in regions:
                await self.ready(service, region)
                readers.append(self.metrics_of(service, region))
        return readers

    async def ready(self, service: str, region: str = REGION, timeout: float = 120.0) -> None:
        """Until the worker says its partitions are assigned: the group has joined, so what
        is measured next is steady consumption, not start-up."""
        url = f"http://127.0.0.1:{self.web_ports[f'{service}@{region}']}/ready"
        deadline = time.monotonic() + timeout
        while True:
            if any(p.poll() is not None for p in self.workers):
                raise RuntimeError(f"a worker exited; logs in {self.work}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if json.loads(answer.read()).get("ready"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service}@{region} not ready in {timeout}s; see {self.work}")
            await asyncio.sleep(0.2)

    def metrics_of(self, service: str, region: str = REGION) -> Callable[[], str]:
        """A reader of the /metrics of the worker started last for `service`."""
        url = f"http://127.0.0.1:{self.web_ports[f'{service}@{region}']}/metrics"

        def read() -> str:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())

        return read

    async def drop_schemas(self) -> None:
        conn = await connect(self.db.url)
        try:
            for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname"
                                        " LIKE $1", f"{self.namespace}%"):
                await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
        finally:
            await conn.close()

    async def stop(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            await self.drop_schemas()  # a shared server is left as it was found
        except Exception as exc:  # a bench that failed early still stops its broker
            print(f"schemas of {self.namespace} not dropped: {exc!r}", file=sys.stderr)
        self.broker.stop()
        self.db.stop()


def signed_records(stack: Stack, payloads: Sequence[Payload], region: str = REGION,
                   topic: str | None = None) -> list[Sent]:
    """Envelopes for the payloads, each signed with the key of the producer the
    authorisation table allows for its type (as `medins publish` does), on its contract's
    topic unless one is given."""
    signer = Signer.from_settings()
    out = []
    for payload in payloads:
        env = new_envelope(payload.event_type, payload, source="/bench", region=region)
        out.append(sign(stack, env, signer, topic or stack.topic(payload.topic, region)))
    return out


def sign(stack: Stack, env: Envelope, signer: Signer, topic: str) -> Sent:
    value = env.to_bytes()
    headers = signer.headers(env, value)
    if headers is None:
        raise RuntimeError(f"no simulated producer key for {env.type}")
    return Sent(topic, partition_key(env), value, headers)


async def producer(stack: Stack) -> AIOKafkaProducer:
    made = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(stack.broker.url),
                            linger_ms=5, max_batch_size=512 * 1024,
                            max_request_size=16 * 1024 * 1024)
    await made.start()
    return made


async def send_all(prod: AIOKafkaProducer, records: Sequence[Sent]) -> float:
    """Send and wait for every acknowledgement; returns the seconds it took."""
    started = time.perf_counter()
    futures = [await prod.send(r.topic, r.value, key=r.key, headers=r.headers)
               for r in records]
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def steady_rate(count: Callable[[], Awaitable[int]], total: int,
                      timeout: float = 900.0, low: float = 0.1, high: float = 0.9
                      ) -> tuple[float, float]:
    """Events per second between the moments `low` and `high` of `total` were done (the
    start-up and the tail left out), and the seconds until all were done."""
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    while True:
        done = await count()
        now = time.perf_counter()
        if first is None and done >= low * total:
            first = (now, done)
        if last is None and done >= high * total:
            last = (now, done)
        if done >= total:
            break
        if now - started > timeout:
            raise TimeoutError(f"{done} of {total} in {timeout:.0f}s")
        # Not faster: each count is a scan of the processed rows, on the cores the worker
        # and its database share (every 20 ms took ~15% of a core at 60,000 rows).
        await asyncio.sleep(0.1)
    assert first is not None and last is not None
    if last[0] - first[0] < 0.05 or last[1] == first[1]:
        # Too small a run to see a window: the whole run's rate is the honest figure.
        return total / max(now - started, 1e-3), now - started
    return (last[1] - first[1]) / (last[0] - first[0]), now - started


async def count_records(broker_url: str, topic: str, target: int,
                        timeout: float = 900.0) -> float:
    """Read the topic from the start until `target` records were seen; the seconds taken."""
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(broker_url),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    seen = 0
    try:
        while seen < target:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{topic}: {seen} of {target} in {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - started


async def counter(stack: Stack, service: str, sql: str, *args: Any,
                  region: str = REGION) -> Callable[[], Awaitable[int]]:
    """A function counting rows in a service's schema (waits for the worker's migration)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = await connect(stack.db.url, stack.schema(service, region))
            await conn.fetchval(sql, *args)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)

    async def count() -> int:
        return int(await conn.fetchval(sql, *args))

    return count


class CpuUse:
    """Cores each part of the machine used from its creation until `line()`: the workers by
    service, the broker, PostgreSQL, the SMSC, this bench's own process (its SMTP server
    included), the rest, and the machine as a whole. Where a rate's time goes when the
    machine, not the code path, is what holds it."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._at = time.monotonic()
        self._machine = psutil.cpu_times()
        self._start = self._snapshot()

    def _part(self, proc: Any) -> str:
        try:
            cmd = proc.cmdline()
            name = proc.name()
        except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
            return "other"
        joined = " ".join(cmd)
        if proc.pid == os.getpid():
            return "this bench"
        if "shared.cli" in joined and "worker" in cmd:
            return f"{cmd[cmd.index('worker') + 1]} worker" if cmd[-1] != "worker" else "worker"
        if "tansu" in (cmd[0] if cmd else name):
            return "broker"
        if name.startswith("postgres"):
            return "PostgreSQL"
        if "shared.devstack.smsc" in joined:
            return "SMSC"
        return "other"

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        seen: dict[int, tuple[str, float]] = {}
        for proc in self._psutil.process_iter():
            try:
                times = proc.cpu_times()
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
            seen[proc.pid] = (self._part(proc), times.user + times.system)
        return seen

    def line(self) -> str:
        """Cores used per part, most first, and every core's busy time, since creation."""
        elapsed = max(time.monotonic() - self._at, 1e-9)
        used: dict[str, float] = {}
        for pid, (part, seconds) in self._snapshot().items():
            # A process started since counts whole; one that ended since is not seen.
            before = self._start.get(pid, (part, 0.0))[1]
            used[part] = used.get(part, 0.0) + max(0.0, seconds - before) / elapsed
        now = self._psutil.cpu_times()
        idle = (now.idle - self._machine.idle) + (now.iowait - self._machine.iowait)
        busy = (sum(now) - sum(self._machine) - idle) / elapsed
        parts = ", ".join(f"{part} {cores:.2f}" for part, cores
                          in sorted(used.items(), key=lambda kv: -kv[1]) if cores >= 0.005)
        return (f"{parts}; machine {busy:.2f} of {self._psutil.cpu_count()} cores busy "
                f"over {elapsed:.1f} s")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run(main: Callable[[], Awaitable[None]]) -> None:
    """asyncio.run, with a SIGTERM (e.g. from `timeout`) still stopping broker and workers."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())


def distinct_people(n: int) -> list[str]:
    """n resident IDs, no two alike. Random ones collide (4,000 draws share one about a
    third of the time), and a bench waiting for n people would wait for one that never comes."""
    found: dict[str, None] = {}
    while len(found) < n:
        found[people.resident_id()] = None
    return list(found)


def application(application_id: str, person_id: str | None = None,
                submitted_at: datetime | None = None) -> EnrollmentApplicationSubmitted:
    """An online application as a channel sends it, with contact and uploaded materials
    (~770 bytes signed envelope), the event every throughput figure is measured with."""
    return EnrollmentApplicationSubmitted(
        application_id=application_id, person_id=person_id or people.resident_id(),
        name=people.name(), insurance_type="resident", mobile=people.mobile(),
        email=f"{application_id.lower()}@example.cn", channel="wechat", region_code=REGION,
        submitted_at=submitted_at or datetime.now(UTC),
        materials=[f"oss://medins-uploads/{application_id}/{part}.jpg"
                   for part in ("id-front", "id-back", "household-register")])
