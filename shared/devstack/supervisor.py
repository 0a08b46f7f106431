"""`medins up`: starts the embedded stack and every worker, restarts what dies, stops on Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from shared.devstack.broker import MEMORY, EmbeddedBroker, free_port
from shared.devstack.database import DevDatabase
from shared.devstack.mailserver import MailServer
from shared.devstack.smsc import ThreadedSmsc
from shared.settings import DEFAULT_WEB_PORTS, SERVICES

STATE_DIR = Path(".medins")
STACK_FILE = STATE_DIR / "stack.json"
# The SIGKILL after a stop comes this long after the workers' own deadline: a worker slow to
# stop ends by its own bounded exit (its deadline) and this kill is only a safety net, never a
# race with it.
STOP_GRACE_MARGIN_SECONDS = 15.0
COLOURS = {"enrollment": "cyan", "transfer": "magenta", "reimbursement": "yellow",
           "notify": "green"}


def port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def load_stack_defaults() -> None:
    """Let `publish`, `status` and `demo` find a stack started by `medins up`."""
    if STACK_FILE.exists() and "MEDINS_BROKER_URL" not in os.environ:
        for key, value in json.loads(STACK_FILE.read_text()).get("env", {}).items():
            os.environ.setdefault(key, str(value))


def running_regions() -> list[str]:
    """The regions the `medins up` of this folder started, first one first."""
    if not STACK_FILE.exists():
        return []
    regions: list[str] = json.loads(STACK_FILE.read_text()).get("regions", [])
    return regions


@dataclass
class Stack:
    regions: list[str]
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    broker: EmbeddedBroker | None = None
    database: DevDatabase | None = None
    mail: MailServer | None = None
    smsc: ThreadedSmsc | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # How to start each worker again: name -> (service, region, port).
    specs: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    broker_restarts: int = 0
    # How long a worker may take to stop before it is killed; None: its own stop deadline
    # (MEDINS_STOP_DEADLINE_SECONDS) plus STOP_GRACE_MARGIN_SECONDS.
    stop_grace_seconds: float | None = None
    services: tuple[str, ...] = tuple(SERVICES)

    def start_infrastructure(self) -> None:
        STATE_DIR.mkdir(exist_ok=True)
        broker_url = os.environ.get("MEDINS_BROKER_URL")
        if not broker_url:
            # MEDINS_BROKER_STORAGE: Tansu's engine, e.g. s3://bucket/ with the AWS_* variables
            # of an S3 store (see the README); memory by default.
            self.broker = EmbeddedBroker.start(port_or_free(9092), str(STATE_DIR / "broker.log"),
                                               storage=os.environ.get("MEDINS_BROKER_STORAGE",
                                                                      MEMORY))
            broker_url = self.broker.url
        self.database = DevDatabase.start(STATE_DIR / "pgdata")
        smtp_host = os.environ.get("MEDINS_SMTP_HOST")
        smtp_port = os.environ.get("MEDINS_SMTP_PORT")
        if not smtp_host:
            port = port_or_free(8025)
            self.mail = MailServer(STATE_DIR / "mail", port).start()
            smtp_host, smtp_port = "127.0.0.1", str(port)
        smpp_host = os.environ.get("MEDINS_SMPP_HOST")
        smpp_port = os.environ.get("MEDINS_SMPP_PORT")
        if not smpp_host:
            self.smsc = ThreadedSmsc(port_or_free(2775), STATE_DIR / "sms").start()
            smpp_host, smpp_port = "127.0.0.1", str(self.smsc.port)
        # The local SMTP server and SMSC started here have no operator's limits: lift the
        # gateways' default rates (50 SMS, 20 emails a second) for them, unless set, so the
        # demo's 5,000 outage texts do not keep its next story's text waiting for minutes.
        lifted = {name: os.environ.get(name, "1000") for name, local in (
            ("MEDINS_SMS_RATE_PER_SECOND", self.smsc is not None),
            ("MEDINS_EMAIL_RATE_PER_SECOND", self.mail is not None)) if local}
        self.env = {
            **lifted,
            "MEDINS_BROKER_URL": broker_url,
            "MEDINS_DATABASE_URL": self.database.url,
            "MEDINS_SMTP_HOST": smtp_host,
            "MEDINS_SMTP_PORT": smtp_port or "25",
            "MEDINS_SMPP_HOST": smpp_host,
            "MEDINS_SMPP_PORT": smpp_port or "2775",
            "MEDINS_NAMESPACE": os.environ.get("MEDINS_NAMESPACE", ""),
        }
        STACK_FILE.write_text(json.dumps({"env": self.env, "regions": self.regions,
                                          "mail_dir": str((STATE_DIR / "mail").resolve())},
                                         indent=2))

    def prepare(self) -> None:
        from shared.cli import prepare_regions  # the CLI owns topic and schema preparation

        env_backup = dict(os.environ)
        os.environ.update(self.env)
        try:
            prepare_regions(self.regions)
            # The demo's simulated producers (tax, civil affairs, partners...) sign with keys
            # made here; a real deployment's producers hold their own.
            from shared.settings import PlatformSettings
            from shared.trust import ensure_simulated_keys

            dev = PlatformSettings()
            ensure_simulated_keys(dev.trust_dir, dev.keyring_dir, self.regions)
            # Development data keys too (sealing health and contact data at rest); a real
            # deployment mounts its own file or sets MEDINS_DATA_KEYS.
            if dev.data_keys is None:
                from shared.db.sealed import create_keys_file

                create_keys_file(dev.data_keys_path())
        finally:
            os.environ.clear()
            os.environ.update(env_backup)

    def start_workers(self) -> None:
        for r_index, region in enumerate(self.regions):
            for service in self.services:
                name = service if len(self.regions) == 1 else f"{service}@{region}"
                port = port_or_free(DEFAULT_WEB_PORTS[service] + 10 * r_index)
                self.specs[name] = (service, region, port)
                self._spawn(name)
                self.console.print(f"[bold]{name}[/] metrics: http://127.0.0.1:{port}/metrics"
                                   f"  status: http://127.0.0.1:{port}/status/<id>")

    def _spawn(self, name: str) -> None:
        service, region, port = self.specs[name]
        env = os.environ | self.env | {
            "MEDINS_REGION": region, "MEDINS_WEB_PORT": str(port),
            "MEDINS_LOG_FORMAT": "console" if sys.stdout.isatty() else "json",
            "PYTHONUNBUFFERED": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "worker", service],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
        )
        self.workers[name] = proc
        self.started_at[name] = time.monotonic()
        threading.Thread(target=self._relay_output, args=(name, service, proc),
                         daemon=True).start()

    def _relay_output(self, name: str, service: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        colour = COLOURS.get(service, "white")
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.console.print(f"[{colour}]{name:>14} |[/] {line}", markup=True,
                               highlight=False, soft_wrap=True)

    def watch(self, stop: threading.Event) -> int:
        """Supervise until Ctrl-C: a dead worker is restarted with backoff, a dead broker is
        restarted and the workers with it (so they subscribe afresh)."""
        while not stop.wait(0.5):
            try:
                self.check_once()
            except Exception as exc:
                # The supervisor must outlive whatever it supervises: try again shortly.
                self.console.print(f"[red]supervisor: {exc!r}; trying again[/]")
        return 0

    def check_once(self) -> None:
        now = time.monotonic()
        if self.broker is not None and self.broker.process.poll() is not None:
            self._restart_broker()
            return
        for name, proc in self.workers.items():
            if proc.poll() is None or name in self.due:
                continue
            # A worker that ran a minute is healthy again: its next failure starts over.
            if now - self.started_at[name] > 60:
                self.restarts[name] = 0
            count = self.restarts.get(name, 0)
            delay = min(30.0, 2.0 ** count)
            self.restarts[name] = count + 1
            self.due[name] = now + delay
            self.console.print(f"[red]{name} exited with {proc.returncode}; restarting it in "
                               f"{delay:.0f} s (restart {count + 1})[/]")
        for name, at in list(self.due.items()):
            if now >= at:
                del self.due[name]
                self._spawn(name)
                self.console.print(f"[yellow]{name} restarted[/]")

    def _restart_broker(self) -> None:
        assert self.broker is not None
        code = self.broker.process.returncode
        self.broker_restarts += 1
        self.console.print(
            f"[red]broker exited with {code}; restarting it on port {self.broker.port}"
            f"{self.broker.loss_note()}[/]")
        # Workers subscribed to the old broker's partitions: restarting them is the one way
        # every client (consumer group, relay producer) sees the new broker for sure. They stop
        # before the new broker starts: an old worker that reconnected and joined a group on
        # the new broker, then died, left the group waiting for it, and the new workers
        # consumed nothing (seen in the fault suite: 3 minutes without progress).
        self._stop_workers()
        self.broker = EmbeddedBroker.start(self.broker.port, self.broker.log_path,
                                           storage=self.broker.storage)
        self.prepare()  # topics again: a memory broker comes back empty
        for name in self.workers:
            self.due.pop(name, None)
            self._spawn(name)
        self.console.print("[yellow]broker back; workers restarted[/]")

    def stop_grace(self) -> float:
        """Seconds from SIGTERM to SIGKILL: past the workers' own stop deadline."""
        if self.stop_grace_seconds is not None:
            return self.stop_grace_seconds
        from shared.settings import PlatformSettings

        own = (os.environ | self.env).get("MEDINS_STOP_DEADLINE_SECONDS")
        deadline = (float(own) if own
                    else PlatformSettings.model_fields["stop_deadline_seconds"].default)
        return float(deadline) + STOP_GRACE_MARGIN_SECONDS

    def _stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        grace = self.stop_grace()
        deadline = time.monotonic() + grace
        for name, proc in self.workers.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.console.print(f"[red]{name} did not stop within {grace:.0f} s; killed[/]")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop(self) -> None:
        self._stop_workers()
        if self.mail:
            self.mail.stop()
        if self.smsc:
            self.smsc.stop()
        if self.broker:
            self.broker.stop()
        if self.database:
            self.database.stop()
        STACK_FILE.unlink(missing_ok=True)


def run_up(regions: list[str]) -> int:
    stack = Stack(regions)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        stack.start_infrastructure()
        stack.prepare()
        stack.start_workers()
        if stack.broker is not None:
            stack.console.print(f"[bold yellow]{stack.broker.durability_note()}[/]")
        stack.console.print(
            f"[bold green]platform up[/] regions {', '.join(regions)}; "
            f"broker {stack.env['MEDINS_BROKER_URL']}; "
            f"mail received in {STATE_DIR / 'mail'} (medins mail); "
            f"SMS received by the local SMSC (SMPP {stack.env['MEDINS_SMPP_PORT']}) in "
            f"{STATE_DIR / 'sms' / 'received.jsonl'}.  Try: medins demo.  Ctrl-C stops.")
        code = stack.watch(stop)
    finally:
        stack.console.print("stopping...")
        stack.stop()
        stack.console.print("stopped")
    return code
