"""Session fixtures: a real broker, a real PostgreSQL, an SMTP server, and the four workers."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from shared.db.migrations import migrate, service_migrations
from shared.db.pool import connect
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.database import DevDatabase
from shared.devstack.mailserver import MailServer
from shared.devstack.smsc import ThreadedSmsc
from shared.messaging.admin import ensure_topics, region_topics
from shared.settings import SERVICES, NotifySettings
from tests.helpers import trust_for_session
from tests.received_report import write_received_report

REGION = "210200"
# Partner regions run beside Dalian for the transfer stories: Jinan, and Weihai in Jinan's
# province. Wenzhou (330300) is left off the interconnected list so it is reached by letter.
PARTNER_REGIONS = ("370100", "371000")
INTERCONNECTED = "210200,370100,371000,150200"


@dataclass
class TestStack:
    __test__ = False  # a fixture value, not a test class

    broker_url: str
    database_url: str
    namespace: str
    mail: MailServer
    smsc: ThreadedSmsc
    sms_dir: Path
    workdir: Path
    web_ports: dict[str, int] = field(default_factory=dict)

    def env(self, namespace: str | None = None, **extra: str) -> dict[str, str]:
        return os.environ | {
            "MEDINS_BROKER_URL": self.broker_url,
            "MEDINS_DATABASE_URL": self.database_url,
            "MEDINS_NAMESPACE": namespace if namespace is not None else self.namespace,
            "MEDINS_REGION": REGION,
            "MEDINS_SMTP_HOST": "127.0.0.1",
            "MEDINS_SMTP_PORT": str(self.mail.port),
            "MEDINS_SMPP_HOST": "127.0.0.1",
            "MEDINS_SMPP_PORT": str(self.smsc.port),
            "MEDINS_LOG_FORMAT": "json",
            "MEDINS_OUTBOX_POLL_SECONDS": "0.5",
            "MEDINS_GAUGE_SAMPLE_SECONDS": "1",
            "MEDINS_TRANSFER_INTERCONNECTED": INTERCONNECTED,
            "MEDINS_OVERDUE_CHECK_SECONDS": "1",
            "MEDINS_CALENDAR_DIR": str(Path(__file__).parent / "calendar"),
            # The session's workers read the shipped book and a folder a story adds policy
            # files to while they run; the seeds' emergency measures (dated December 2026)
            # are never loaded for all of them, or every story would change on 1 December.
            # A story that needs one adds it for the facts it concerns, or runs its own
            # worker with the examples and a set clock.
            "MEDINS_POLICY_DIRS": str(self.policy_dir),
            "MEDINS_POLICY_RELOAD_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        } | extra

    @property
    def policy_dir(self) -> Path:
        folder = self.workdir / "policies"
        folder.mkdir(exist_ok=True)
        return folder

    def settings(self, namespace: str | None = None, region: str = REGION) -> NotifySettings:
        return NotifySettings(
            broker_url=self.broker_url, MEDINS_DATABASE_URL=self.database_url,
            namespace=self.namespace if namespace is None else namespace, region=region,
            smtp_port=self.mail.port, smpp_port=self.smsc.port,
        )

    def log_path(self, service: str, namespace: str | None = None,
                 region: str = REGION) -> Path:
        suffix = "" if region == REGION else f"-{region}"
        return self.workdir / f"{namespace or self.namespace}{service}{suffix}.log"

    async def connect(self, service: str, namespace: str | None = None) -> asyncpg.Connection:
        return await connect(self.database_url,
                             self.settings(namespace).schema_for(service))

    async def prepare(self, namespace: str) -> None:
        await ensure_topics(self.broker_url, region_topics(REGION, namespace), 4)
        conn = await connect(self.database_url)
        try:
            for service in SERVICES:
                await migrate(conn, self.settings(namespace).schema_for(service),
                              service_migrations(service))
        finally:
            await conn.close()

    def start_worker(self, service: str, namespace: str | None = None, region: str = REGION,
                     **extra: str) -> subprocess.Popen[bytes]:
        port = free_port()
        self.web_ports[service if region == REGION else f"{service}@{region}"] = port
        log = open(self.log_path(service, namespace, region), "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "worker", service],
            env=self.env(namespace, MEDINS_WEB_PORT=str(port), MEDINS_REGION=region, **extra),
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )


def cover_this_year(folder: Path) -> None:
    """Stories are dated today: when the shipped example book ends before today (from
    1 January, until the next year's example figures ship), give the session a clearly
    labelled test version of the same figures for this year, so the stories keep testing
    their workflows rather than the missing policy (which has stories of its own)."""
    from shared.clock import china_today
    from shared.identity import REGIONS
    from shared.policy import SHIPPED_DIR, PolicyBook

    today = china_today()
    for region in REGIONS:
        book = PolicyBook.load(region, [SHIPPED_DIR])
        if book.version_on(today) is not None:
            continue
        latest = max(book.versions, key=lambda v: v.effective_from)
        text = Path(latest.source).read_text(encoding="utf-8")
        version = f"{today.year}.test"
        text = (text.replace(f'version = "{latest.version}"', f'version = "{version}"')
                .replace(f'effective_from = "{latest.effective_from.isoformat()}"',
                         f'effective_from = "{today.year}-01-01"')
                .replace(f'effective_to = "{latest.effective_to.isoformat()}"',
                         f'effective_to = "{today.year}-12-31"')
                .replace(f"{region}-{latest.version}-", f"{region}-{version}-"))
        (folder / f"{region}-{version}.toml").write_text(
            "# TEST DATA: the shipped example figures re-dated for this year's stories.\n"
            + text, encoding="utf-8")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("medins")


@pytest.fixture(scope="session")
def infrastructure(workdir: Path) -> Iterator[tuple[str, str, MailServer, ThreadedSmsc]]:
    broker = EmbeddedBroker.start(log_path=str(workdir / "broker.log"))
    database = DevDatabase.start(workdir / "pgdata")
    mail = MailServer(workdir / "mail", free_port()).start()
    smsc = ThreadedSmsc(free_port(), workdir / "sms").start()
    try:
        yield broker.url, database.url, mail, smsc
    finally:
        smsc.stop()
        mail.stop()
        broker.stop()
        database.stop()


@pytest_asyncio.fixture(scope="session")
async def stack(infrastructure: tuple[str, str, MailServer, ThreadedSmsc], workdir: Path
                ) -> AsyncIterator[TestStack]:
    broker_url, database_url, mail, smsc = infrastructure
    namespace = f"t{uuid.uuid4().hex[:8]}_"
    test_stack = TestStack(broker_url, database_url, namespace, mail, smsc, workdir / "sms",
                           workdir)
    cover_this_year(test_stack.policy_dir)
    trust_for_session(workdir)  # every simulated producer signs; workers verify
    await test_stack.prepare(namespace)
    yield test_stack
    # Leave a shared server as we found it: drop this run's schemas, after writing down
    # what the people of this run received (tests/received_report.py).
    conn = await connect(database_url)
    try:
        notify_schemas = [r["nspname"] for r in await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 AND nspname LIKE"
            " '%notify'", f"{namespace}%")]
        await write_received_report(conn, notify_schemas, workdir / "sms", workdir / "mail",
                                    workdir / "received.md")
        for schema in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{namespace}%"):
            await conn.execute(f'DROP SCHEMA "{schema["nspname"]}" CASCADE')
    finally:
        await conn.close()


def wait_healthy(stack: TestStack, procs: dict[str, subprocess.Popen[bytes]],
                 timeout: float = 60.0) -> None:
    """Each worker answers /health (keys as in `web_ports`), or the fixture fails."""
    import urllib.request

    deadline = time.monotonic() + timeout
    for key, proc in procs.items():
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{key} worker exited; see {stack.workdir}")
            try:
                url = f"http://127.0.0.1:{stack.web_ports[key]}/health"
                with urllib.request.urlopen(url, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def workers(stack: TestStack) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {service: stack.start_worker(service) for service in SERVICES}
    wait_healthy(stack, procs)
    yield procs
    stop_all(procs)


@pytest_asyncio.fixture(scope="session")
async def isolated_workers(stack: TestStack
                           ) -> AsyncIterator[tuple[str, dict[str, subprocess.Popen[bytes]]]]:
    """The four workers again in a namespace of their own, for attack tests whose forged
    and garbage messages must not land in topics the stories read: (namespace, workers)."""
    namespace = f"{stack.namespace}iso_"
    await stack.prepare(namespace)
    shared_ports = dict(stack.web_ports)
    procs = {service: stack.start_worker(service, namespace=namespace) for service in SERVICES}
    wait_healthy(stack, procs)
    # The stories keep reading their own workers' ports; these answer as `<service>@<ns>`.
    isolated = {f"{service}@{namespace}": stack.web_ports[service] for service in SERVICES}
    stack.web_ports.update(shared_ports)
    stack.web_ports.update(isolated)
    yield namespace, procs
    stop_all(procs)


@pytest.fixture(scope="session")
def partner_regions(stack: TestStack, workers: dict[str, subprocess.Popen[bytes]]
                    ) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Enrollment and transfer workers of Jinan and Weihai, on the same broker and server."""
    procs = {f"{service}@{region}": stack.start_worker(service, region=region)
             for region in PARTNER_REGIONS for service in ("enrollment", "transfer")}
    wait_healthy(stack, procs)
    yield procs
    stop_all(procs)
