"""Operators repair from the command line: dead letters listed, shown masked and replayed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contracts.topics import DEAD_LETTER, ENROLLMENT_FROM_CHANNELS, physical
from shared.db import sealed
from shared.devstack import people
from shared.messaging.admin import bootstrap_servers
from shared.messaging.dead_letters import seal_letter
from tests.conftest import REGION, TestStack
from tests.helpers import poll


def medins(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], env=env,
                          capture_output=True, text=True, cwd=cwd, timeout=120)


async def test_a_dead_letter_is_listed_shown_masked_and_replayed(
        tmp_path: Path, stack: TestStack, workers: dict[str, Any]) -> None:
    person = people.resident_id()
    marker = uuid.uuid4().hex[:8]
    topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=stack.namespace)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(stack.broker_url))
    await producer.start()
    try:
        # Not an event: an id, but no type, source or data (other tests read ids off the
        # dead-letter topic).
        await producer.send_and_wait(topic, json.dumps(
            {"id": f"bad-{marker}", "note": marker, "person_id": person}).encode(),
            key=person.encode())
    finally:
        await producer.stop()
    env = stack.env()

    async def ours() -> list[dict[str, Any]]:
        listed = medins(env, tmp_path, "deadletters", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return [d for d in json.loads(listed.stdout) if d["original_topic"] == topic
                and d["key"] == f"{person[:4]}**********{person[-4:]}"]

    [letter] = await poll(ours, lambda found: len(found) == 1, timeout=60)
    assert letter["service"] == "enrollment" and letter["reason"]
    shown = medins(env, tmp_path, "deadletters", "show", letter["ref"], "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)["body"]
    assert marker in body and person not in body  # the ID number is masked

    replayed = medins(env, tmp_path, "deadletters", "replay", letter["ref"])
    assert replayed.returncode == 0, replayed.stderr
    # Still not an event after all: the consumer refuses it again, a second dead letter.
    again = await poll(ours, lambda found: len(found) == 2, timeout=60)
    assert {d["original_offset"] for d in again} != {letter["original_offset"]}


def test_an_unreachable_database_is_one_line_on_stderr(tmp_path: Path, stack: TestStack) -> None:
    env = stack.env(MEDINS_DATABASE_URL="postgresql://postgres@127.0.0.1:9/none")
    result = medins(env, tmp_path, "outbox", "stuck")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("medins: ")
    version = medins(env, tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("medins ")


async def test_status_answers_in_json_masked(tmp_path: Path, stack: TestStack,
                                            workers: dict[str, Any]) -> None:
    from tests.e2e.test_enrollment_stories import enroll

    person, mobile = await enroll(stack)
    shown = medins(stack.env(), tmp_path, "status", person, "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["enrollment"]["person"]["status"] == "active"
    assert person not in shown.stdout and mobile not in shown.stdout
    unknown = medins(stack.env(), tmp_path, "status", people.resident_id(), "--json")
    assert unknown.returncode == 1 and "nothing known" in unknown.stderr


async def test_a_data_key_that_sealed_dead_letters_is_kept_until_they_expire(
        tmp_path: Path, stack: TestStack) -> None:
    # A namespace and key file of its own: the session's workers keep their keys.
    namespace = f"{stack.namespace}dlk{uuid.uuid4().hex[:4]}_"
    keys_file = tmp_path / "data-keys"
    shutil.copy(os.environ["MEDINS_DATA_KEYS_FILE"], keys_file)
    env = stack.env(namespace, MEDINS_DATA_KEYS_FILE=str(keys_file))
    sealed.configure(None, keys_file)
    try:
        old = sealed.keys().current_seal.key_id
        origin = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=namespace)
        person = people.resident_id()
        value, extra = seal_letter(b'{"note": "refused"}', person.encode(), origin, 0, 41)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(stack.broker_url))
        await producer.start()
        try:
            await producer.send_and_wait(
                physical(DEAD_LETTER, region=REGION, namespace=namespace), value,
                headers=[(k, v.encode()) for k, v in (
                    ("dlq-reason", "not an event"), ("dlq-service", "enrollment"),
                    ("dlq-topic", origin), ("dlq-partition", "0"), ("dlq-offset", "41"),
                    *extra)])
        finally:
            await producer.stop()

        assert medins(env, tmp_path, "data-keys", "rotate").returncode == 0
        refused = medins(env, tmp_path, "data-keys", "retire", old)
        assert refused.returncode == 1, refused.stderr
        assert "1 dead letter(s) are sealed under" in refused.stdout
        # The old key still opens the letter for the operator.
        shown = medins(env, tmp_path, "deadletters", "list", "--json")
        assert shown.returncode == 0, shown.stderr
        [letter] = json.loads(shown.stdout)
        assert letter["key"] == f"{person[:4]}**********{person[-4:]}"
    finally:
        sealed.use_keys(None)
