"""The `medins` command: schemas, publish, status, compose file, and `up` stopping cleanly."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from services.notify.repository import ADDRESSEE
from shared.cli import cli
from shared.contracts import EVENT_TYPES
from shared.db.sealed import resident_key
from shared.devstack import people
from shared.settings import SERVICES
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.helpers import poll

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def application_doc(person: str) -> dict[str, Any]:
    """What a service channel sends: the type and data; the CLI fills the rest."""
    return {"type": "cn.medins.channels.enrollment.submitted.v1", "data": {
        "application_id": f"APP-{uuid.uuid4().hex[:8]}", "person_id": person, "name": "孙芳",
        "insurance_type": "resident", "mobile": people.mobile(), "channel": "window",
        "region_code": REGION, "submitted_at": datetime.now(UTC).isoformat()}}


def test_schemas_command_writes_every_event_type(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["schemas", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.stem for p in tmp_path.glob("*.json")} == set(EVENT_TYPES)


def test_publish_refuses_an_invalid_event_and_names_the_field(tmp_path: Path,
                                                              stack: TestStack) -> None:
    doc = application_doc(people.resident_id())
    doc["data"]["mobile"] = "12345"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(cli, ["publish", "enrollment.from-channels", str(path)], env=stack.env())
    assert result.exit_code == 1
    assert "data.mobile" in result.output and "mobile" in result.output


async def test_publish_then_status_shows_masked_state(tmp_path: Path, stack: TestStack,
                                                      workers: dict[str, Any]) -> None:
    person = people.resident_id()
    path = tmp_path / "good.json"
    path.write_text(json.dumps([application_doc(person)], ensure_ascii=False), encoding="utf-8")
    env = stack.env()
    result = subprocess.run([sys.executable, "-m", "shared.cli", "publish",
                             "enrollment.from-channels", str(path)], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    await poll(lambda: collect_status(stack.settings(), person),
               lambda f: bool(f.get("enrollment", {}).get("applications")))
    shown = subprocess.run([sys.executable, "-m", "shared.cli", "status", person], env=env,
                           capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "submitted" in shown.stdout
    assert person not in shown.stdout and f"{person[:4]}**********{person[-4:]}" in shown.stdout


def test_compose_names_only_commands_the_cli_has() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = get_command(cli).commands  # type: ignore[attr-defined]
    workers = set()
    for name, service in compose["services"].items():
        command = service.get("command")
        if command is None or "build" not in service:  # only our image runs `medins`
            continue
        assert command[0] in commands, f"{name}: no such command {command[0]}"
        if command[0] == "worker":
            assert command[1] in SERVICES
            workers.add(command[1])
    assert workers == set(SERVICES)
    brokers = [n for n in compose["services"] if n.startswith("kafka-")]
    assert len(brokers) == 3 and {"postgres", "prometheus", "grafana"} <= set(compose["services"])
    envs = [compose["services"][b]["environment"] for b in brokers]
    assert {e["KAFKA_NODE_ID"] for e in envs} == {1, 2, 3}
    assert len({e["CLUSTER_ID"] for e in envs}) == 1 and all(
        e["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data" for e in envs)
    assert len({compose["services"][b]["volumes"][0] for b in brokers}) == 3
    worker_env = compose["services"]["enrollment"]["environment"]
    assert worker_env["MEDINS_TOPIC_REPLICATION_FACTOR"] == "3"
    assert worker_env["MEDINS_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    groups = scrape["scrape_configs"][0]["static_configs"]
    assert {t.split(":")[0] for g in groups for t in g["targets"]} == set(SERVICES)
    assert all(g["labels"]["region"] and g["labels"]["worker"] for g in groups)


def test_up_starts_everything_and_ctrl_c_stops_it_cleanly(tmp_path: Path,
                                                          stack: TestStack) -> None:
    env = {k: v for k, v in stack.env(f"{stack.namespace}up_").items()
           if k not in ("MEDINS_BROKER_URL", "MEDINS_SMTP_HOST", "MEDINS_SMTP_PORT",
                        "MEDINS_SMPP_HOST", "MEDINS_SMPP_PORT")}
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "up"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while not any("platform up" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
        urls = re.findall(r"metrics: (http://\S+/metrics)", "".join(lines))
        assert len(urls) == 8  # two regions by default
        for url in urls:
            body = _get_when_ready(url, deadline)
            assert "faust_" in body or "medins_" in body
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 9  # eight workers and the broker
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(lines) + rest
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"orphans: {alive}"
        # Each worker's lines arrive prefixed with its service and region.
        assert any(re.match(r"\s*enrollment@210200 \|", line) for line in (rest.splitlines()))
    finally:
        if proc.poll() is None:
            proc.kill()


def _get_when_ready(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)




async def test_operator_lists_and_requeues_parked_messages(tmp_path: Path, stack: TestStack,
                                                           workers: dict[str, Any]) -> None:
    person, mobile = people.resident_id(), people.mobile()
    conn = await stack.connect("notify")
    try:
        delivery_id = await conn.fetchval(
            "INSERT INTO deliveries (source_event_id, person_ref, person_key, channel,"
            " recipient, template, body, status, attempts, last_error) VALUES ($1, $2, $3,"
            " 'sms', $4, 'manual', '【医保服务】测试消息', 'parked', 5, 'SMSC busy') RETURNING id",
            f"evt-{uuid.uuid4().hex}", ADDRESSEE.seal(person), resident_key(person), mobile)
        env = stack.env()
        listed = subprocess.run([sys.executable, "-m", "shared.cli", "notify", "parked"], env=env,
                                capture_output=True, text=True, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert f"#{delivery_id}" in listed.stdout and mobile not in listed.stdout
        assert f"{mobile[:3]}****{mobile[-4:]}" in listed.stdout
        as_json = subprocess.run([sys.executable, "-m", "shared.cli", "notify", "parked",
                                  "--json"], env=env, capture_output=True, text=True,
                                 cwd=tmp_path)
        rows = json.loads(as_json.stdout)
        ours = next(r for r in rows if r["id"] == delivery_id)
        assert ours["status"] == "parked" and mobile not in as_json.stdout
        retried = subprocess.run([sys.executable, "-m", "shared.cli", "notify", "retry",
                                  str(delivery_id)], env=env, capture_output=True, text=True,
                                 cwd=tmp_path)
        assert retried.returncode == 0 and "requeued 1" in retried.stdout, retried.stderr
        # The running notify worker sends it through the SMSC.
        await poll(lambda: conn.fetchval("SELECT status FROM deliveries WHERE id = $1",
                                         delivery_id), lambda s: s == "sent")
    finally:
        await conn.close()


def test_the_installed_package_carries_migrations_templates_and_policies(tmp_path: Path) -> None:
    """The container image installs a wheel: data files must travel with the code."""
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for needed in ("shared/messaging/migrations/0001_messaging.sql",
                   "services/enrollment/migrations/0001_enrollment.sql",
                   "services/notify/templates.toml",
                   "shared/policies/210200-2026.1.toml",
                   "shared/policies/examples/002-baotou-emergency.toml"):
        assert needed in names
