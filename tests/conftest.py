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

REGION = "210200"


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
            "PYTHONUNBUFFERED": "1",
        } | extra

    def settings(self, namespace: str | None = None) -> NotifySettings:
        return NotifySettings(
            broker_url=self.broker_url, MEDINS_DATABASE_URL=self.database_url,
            namespace=self.namespace if namespace is None else namespace, region=REGION,
            smtp_port=self.mail.port, smpp_port=self.smsc.port,
        )

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

    def start_worker(self, service: str, namespace: str | None = None,
                     **extra: str) -> subprocess.Popen[bytes]:
        port = free_port()
        self.web_ports[service] = port
        log = open(self.workdir / f"{namespace or self.namespace}{service}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "worker", service],
            env=self.env(namespace, MEDINS_WEB_PORT=str(port), **extra),
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )


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
    await test_stack.prepare(namespace)
    yield test_stack
    # Leave a shared server as we found it: drop this run's schemas.
    conn = await connect(database_url)
    try:
        for schema in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{namespace}%"):
            await conn.execute(f'DROP SCHEMA "{schema["nspname"]}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def workers(stack: TestStack) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {service: stack.start_worker(service) for service in SERVICES}
    deadline = time.monotonic() + 60
    import urllib.request

    for service in SERVICES:
        while True:
            if procs[service].poll() is not None:
                raise RuntimeError(f"{service} worker exited; see {stack.workdir}")
            try:
                url = f"http://127.0.0.1:{stack.web_ports[service]}/health"
                with urllib.request.urlopen(url, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    yield procs
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
