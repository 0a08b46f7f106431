"""Two replicas of a worker split the partitions and keep every guarantee, one killed midway."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import urllib.request
import uuid
from collections import Counter, defaultdict
from typing import Any

from shared.contracts.topics import ENROLLMENT_EVENTS, ENROLLMENT_FROM_CHANNELS, physical
from shared.devstack import people
from shared.messaging.publisher import publish
from tests.conftest import REGION, TestStack, stop_all
from tests.helpers import data_of, envelope, poll, read_topic
from tests.integration.test_consumer_guarantees import application

RECEIVED = "cn.medins.enrollment.application.received.v1"
REJECTED = "cn.medins.enrollment.request.rejected.v1"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def _processed(port: int) -> float:
    """What one replica says it handled (its own counter, not the shared database's)."""
    _, text = _get(port, "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("medins_events_processed_total{"))


def _wave(count: int) -> tuple[list[Any], dict[str, list[str]]]:
    """Two applications per person, the second sent after the first: only the first can be
    received (the second finds it open), whichever replica holds the person's partition."""
    sent: list[Any] = []
    order: dict[str, list[str]] = {}
    for _ in range(count):
        person = people.resident_id()
        first, second = (f"APP-{uuid.uuid4().hex[:10]}" for _ in range(2))
        order[person] = [first, second]
        sent += [envelope(application(person, first)), envelope(application(person, second))]
    return sent, order


async def test_two_replicas_split_partitions_and_one_killed_loses_and_doubles_nothing(
        stack: TestStack) -> None:
    namespace = f"{stack.namespace}rep{uuid.uuid4().hex[:4]}_"
    await stack.prepare(namespace)
    shared_ports = dict(stack.web_ports)
    replicas: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for name in ("a", "b"):
            replicas[name] = stack.start_worker("enrollment", namespace=namespace)
            ports[name] = stack.web_ports["enrollment"]
        stack.web_ports.update(shared_ports)

        # Both ready means both hold partitions: the group has split them.
        async def ready() -> list[int]:
            for proc in replicas.values():
                assert proc.poll() is None, f"a replica exited; see {stack.workdir}"
            return [_get(port, "/ready")[0] for port in ports.values()]

        await poll(ready, lambda codes: codes == [200, 200], timeout=90)
        topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=namespace)
        first, first_order = _wave(100)
        await publish(stack.broker_url, topic, first)
        conn = await stack.connect("enrollment", namespace)
        try:
            async def done(ids: list[str]) -> int:
                return int(await conn.fetchval(
                    "SELECT count(*) FROM processed_messages WHERE event_id = ANY($1)", ids))

            await poll(lambda: done([e.id for e in first]), lambda n: n == len(first),
                       timeout=120)
            shares = {name: _processed(port) for name, port in ports.items()}
            assert all(n > 0 for n in shares.values()), shares  # each took its partitions

            # A second wave, and one replica killed while it is being handled: the other
            # takes its partitions over and handles what was not committed, once.
            second, second_order = _wave(200)
            await publish(stack.broker_url, topic, second)
            at_kill = await poll(lambda: done([e.id for e in second]), lambda n: n > 0,
                                 timeout=60)
            os.kill(replicas["a"].pid, signal.SIGKILL)
            replicas["a"].wait(10)
            print(f"replica a killed with {at_kill} of {len(second)} handled")
            await poll(lambda: done([e.id for e in second]), lambda n: n == len(second),
                       timeout=180)
            # Every event recorded once (the processed ids are the duplicate check itself).
            rows = await conn.fetch(
                "SELECT event_id, count(*) AS n FROM processed_messages"
                " WHERE event_id = ANY($1) GROUP BY 1",
                [e.id for e in first + second])
            assert len(rows) == len(first + second) and {r["n"] for r in rows} == {1}
        finally:
            await conn.close()

        # On the output topic: one decision per application (a relay that died after
        # publishing may publish a row again, under the same event id), and per person the
        # first sent was received and the second refused as open: their order held.
        causes = {e.id: e for e in first + second}
        events_topic = physical(ENROLLMENT_EVENTS, region=REGION, namespace=namespace)

        def decisions(records: list[Any]) -> dict[str, set[tuple[str, str]]]:
            found: dict[str, set[tuple[str, str]]] = defaultdict(set)
            for r in records:
                data = data_of(r)
                if data.get("causationid") in causes and data["type"] in (RECEIVED, REJECTED):
                    found[data["causationid"]].add((data["id"], data["type"]))
            return found

        records = await read_topic(stack.broker_url, events_topic,
                                   lambda rs: len(decisions(rs)) == len(causes), timeout=120)
        found = decisions(records)
        assert all(len(ids) == 1 for ids in found.values()), [
            v for v in found.values() if len(v) > 1][:3]
        outcome = {json.loads(causes[c].to_bytes())["data"]["application_id"]: t
                   for c, ids in found.items() for _, t in ids}
        wrong = [(p, apps) for p, apps in (first_order | second_order).items()
                 if (outcome[apps[0]], outcome[apps[1]]) != (RECEIVED, REJECTED)]
        assert wrong == []
        assert Counter(outcome.values()) == {RECEIVED: 300, REJECTED: 300}
    finally:
        stack.web_ports.update(shared_ports)
        stop_all({k: v for k, v in replicas.items() if v.poll() is None})
        await asyncio.sleep(0)
