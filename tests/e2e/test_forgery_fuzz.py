"""Fuzz: random, truncated, oversized and mis-signed messages to every input topic.

What went in equals what was processed plus what was dead-lettered (per consuming service),
nothing refused was applied, and the workers keep running. MEDINS_FUZZ_COUNT sets the number
of messages (CI: 2,000).
"""
from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.topics import DEAD_LETTER, ENROLLMENT_FROM_CHANNELS, physical
from shared.devstack import people
from shared.messaging.admin import bootstrap_servers
from shared.trust import KEY_HEADER, SIGNATURE_HEADER, generate_key, sign_headers
from tests.conftest import REGION, TestStack
from tests.e2e.test_forgery import key_of
from tests.helpers import envelope, header, poll, read_dead_letters

COUNT = int(os.environ.get("MEDINS_FUZZ_COUNT", "2000"))
CONTROL_EVERY = 25  # one rightful, valid application in this many messages


def consumers_by_topic() -> dict[str, list[str]]:
    """Logical topic → the services consuming it, from the services' own wiring."""
    from services.enrollment.app import spec as enrollment
    from services.notify.app import spec as notify
    from services.reimbursement.app import spec as reimbursement
    from services.transfer.app import spec as transfer

    found: dict[str, list[str]] = {}
    for spec in (enrollment(), transfer(), reimbursement(), notify()):
        for topic in spec.consumes:
            found.setdefault(topic, []).append(spec.name)
    return found


def valid_application(person: str) -> bytes:
    return envelope(EnrollmentApplicationSubmitted(
        application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=person, name="陈静",
        insurance_type="resident", mobile=people.mobile(), channel="wechat",
        region_code=REGION, submitted_at=datetime.now(UTC))).to_bytes()


def hostile(rng: random.Random, kind: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """One message no worker may apply, of the given kind."""
    person = people.resident_id()
    good = valid_application(person)
    if kind == "random":
        return rng.randbytes(rng.randrange(0, 2048)), []
    if kind == "random-signed":  # authentic garbage: passes the signature, fails the contract
        value = rng.randbytes(rng.randrange(1, 2048))
        return value, sign_headers(value, key_of("channels"))
    if kind == "truncated-after-signing":
        return good[:rng.randrange(1, len(good))], sign_headers(good, key_of("channels"))
    if kind == "truncated-then-signed":
        value = good[:rng.randrange(1, len(good))]
        return value, sign_headers(value, key_of("channels"))
    if kind == "oversized":
        doc = json.loads(good)
        doc["data"]["name"] = "陈" * rng.randrange(30_000, 100_000)
        value = json.dumps(doc, ensure_ascii=False).encode()
        return value, sign_headers(value, key_of("channels"))
    if kind == "wrong-producer":  # the tax authority applying for someone
        return good, sign_headers(good, key_of("tax"))
    if kind == "unknown-key":
        return good, sign_headers(good, generate_key("channels"))
    if kind == "bad-headers":
        return good, [(KEY_HEADER, rng.randbytes(20)), (SIGNATURE_HEADER, rng.randbytes(30))]
    if kind == "random-json-signed":
        value = json.dumps({"id": str(uuid.uuid4()), "type": "cn.medins.x.v1",
                            "data": {"n": rng.random()}}).encode()
        return value, sign_headers(value, key_of("channels"))
    raise AssertionError(kind)


KINDS = ("random", "random-signed", "truncated-after-signing", "truncated-then-signed",
         "oversized", "wrong-producer", "unknown-key", "bad-headers", "random-json-signed")


async def test_fuzzed_input_is_all_accounted_for_and_nothing_refused_is_applied(
        stack: TestStack, isolated_workers: tuple[str, dict[str, Any]]) -> None:
    namespace, workers = isolated_workers
    rng = random.Random(12)
    run = uuid.uuid4().hex[:8]
    by_topic = consumers_by_topic()
    logical = sorted(by_topic)
    sent: Counter[tuple[str, str]] = Counter()  # (physical topic, service) -> hostile sent
    controls: list[str] = []
    kinds: Counter[str] = Counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(stack.broker_url),
                                max_request_size=2_000_000, linger_ms=20)
    await producer.start()
    started = time.monotonic()
    try:
        for i in range(COUNT):
            key = f"fuzz-{run}-{i}".encode()
            if i % CONTROL_EVERY == 0:
                value = valid_application(people.resident_id())
                controls.append(json.loads(value)["id"])
                topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=namespace)
                await producer.send(topic, value, key=key,
                                    headers=sign_headers(value, key_of("channels")))
                continue
            kind = KINDS[i % len(KINDS)]
            kinds[kind] += 1
            value, headers = hostile(rng, kind)
            name = logical[i % len(logical)]
            topic = physical(name, region=REGION, namespace=namespace)
            await producer.send(topic, value, key=key, headers=headers or None)
            for service in by_topic[name]:
                sent[(topic, service)] += 1
        await producer.flush()
    finally:
        await producer.stop()

    expected = sum(sent.values())
    dlq = physical(DEAD_LETTER, region=REGION, namespace=namespace)
    prefix = f"fuzz-{run}-".encode()

    def ours(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key and r.key.startswith(prefix)]

    records = ours(await read_dead_letters(stack.broker_url, dlq,
                                           lambda rs: len(ours(rs)) >= expected, timeout=240))
    elapsed = time.monotonic() - started
    got = Counter((header(r, "dlq-topic"), header(r, "dlq-service")) for r in records)
    assert got == sent  # every hostile message dead-lettered once by each of its consumers
    reasons = Counter((header(r, "dlq-reason") or "").split(":", 1)[0] for r in records)

    # The rightful controls were processed, once each; nothing refused was.
    conn = await stack.connect("enrollment", namespace)
    try:
        async def done() -> int:
            return int(await conn.fetchval(
                "SELECT count(*) FROM processed_messages WHERE event_id = ANY($1)", controls))

        await poll(done, lambda n: n == len(controls), timeout=60)
        refused_ids = [json.loads(r.value)["id"] for r in records
                       if r.value.startswith(b"{") and _has_id(r.value)]
        leaked = await conn.fetchval(
            "SELECT count(*) FROM processed_messages WHERE event_id = ANY($1)"
            " AND NOT event_id = ANY($2)", refused_ids, controls)
        assert leaked == 0
    finally:
        await conn.close()
    for name, proc in workers.items():
        assert proc.poll() is None, f"{name} worker died"
    print(f"\nfuzz: {COUNT} messages ({len(controls)} rightful, {COUNT - len(controls)} "
          f"hostile to {len(logical)} topics), {expected} refusals expected and dead-lettered "
          f"in {elapsed:.1f}s; kinds {dict(kinds)}; reasons {dict(reasons)}")


def _has_id(value: bytes) -> bool:
    try:
        doc = json.loads(value)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("id"), str)
