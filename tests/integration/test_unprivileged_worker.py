"""A worker runs as an unprivileged user from a read-only tree, as in the image."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from shared.devstack.broker import free_port
from tests.conftest import TestStack

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
# Its own namespace per run: the machine's server may be shared by other runs.
NAMESPACE = f"ro{uuid.uuid4().hex[:8]}_"
# The session's interpreter lives under /root, which `nobody` cannot enter; Debian's own
# Python 3.11 runs the same code and the venv's packages (same ABI).
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _system_python_is_311() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "(3, 11)"


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not _system_python_is_311() or shutil.which("setpriv") is None,
    reason="needs root to switch to nobody, setpriv and Debian's Python 3.11")


def read_only_tree(tmp: Path) -> Path:
    tree = tmp / "app"
    tree.mkdir()
    for part in ("shared", "services"):
        shutil.copytree(ROOT / part, tree / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in [tree, *tree.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)  # root-owned: nobody may not write
    return tree


# `nobody` cannot reach the embedded server's socket under the session's private folder;
# a TCP server is needed: the configured one, or the machine's own on 5432.
TCP_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"


def tcp_database(stack: TestStack) -> str | None:
    import socket

    if "@/" not in stack.database_url and "host=/" not in stack.database_url:
        return stack.database_url
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return None
    return TCP_DATABASE


def run_as_nobody(stack: TestStack, tree: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    site = sysconfig.get_paths()["purelib"]  # this interpreter's packages (the venv's)
    return subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         str(SYSTEM_PYTHON), "-m", "shared.cli", "worker", "enrollment"],
        cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=stack.env(NAMESPACE, MEDINS_WEB_PORT=str(port),
                      PYTHONPATH=f"{tree}:{site}", PYTHONDONTWRITEBYTECODE="1",
                      HOME=str(tree),
                      # The session's key file is root's (0600): the data keys come from the
                      # environment, as a container may be given them.
                      MEDINS_DATA_KEYS=Path(os.environ["MEDINS_DATA_KEYS_FILE"]).read_text(),
                      **env))


def test_worker_runs_as_nobody_from_a_read_only_tree_and_reports_ready(
        tmp_path: Path, stack: TestStack) -> None:
    database = tcp_database(stack)
    if database is None:
        pytest.skip("no PostgreSQL over TCP for an unprivileged process")
    tmp_path.chmod(0o755)
    tree = read_only_tree(tmp_path)
    # Without a writable state folder it stops at once, saying which setting to fix.
    refused = run_as_nobody(stack, tree, free_port(), MEDINS_DATABASE_URL=database)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 78, out.decode()
    assert b"MEDINS_STATE_DIR" in out and b"Traceback" not in out

    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    port = free_port()
    worker = run_as_nobody(stack, tree, port, MEDINS_STATE_DIR=str(state),
                           MEDINS_DATABASE_URL=database)
    try:
        deadline, answer = time.monotonic() + 90, None
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    answer = json.loads(r.read())
                    break
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.5)
        assert worker.poll() is None, worker.stdout.read().decode() if worker.stdout else ""
        assert answer is not None and answer["ready"] is True, answer
        assert answer["checks"] == {"database": True, "broker": True,
                                    "partitions_assigned": True}
        assert (state / "faust").is_dir()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        _drop_schemas(database)


def _drop_schemas(database: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(database)
        try:
            for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                                        f"{NAMESPACE}%"):
                await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())
