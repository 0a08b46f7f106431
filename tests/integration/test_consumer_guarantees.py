"""Idempotent consumer and dead letters, through the real broker, PostgreSQL and workers."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.topics import (
    DEAD_LETTER,
    ENROLLMENT_EVENTS,
    ENROLLMENT_FROM_CHANNELS,
    physical,
)
from shared.devstack import people
from shared.messaging.publisher import publish
from shared.status import collect_status
from tests.conftest import REGION, TestStack
from tests.helpers import (
    data_of,
    envelope,
    header,
    poll,
    read_dead_letters,
    read_topic,
    signed,
)


def application(person: str, app_id: str) -> EnrollmentApplicationSubmitted:
    return EnrollmentApplicationSubmitted(
        application_id=app_id, person_id=person, name="陈静", insurance_type="flexible",
        mobile=people.mobile(), channel="national_app", region_code=REGION,
        submitted_at=datetime.now(UTC))


async def test_same_event_twice_changes_state_once_and_emits_once(
        stack: TestStack, workers: dict[str, Any]) -> None:
    person, app_id = people.resident_id(), f"APP-{uuid.uuid4().hex[:8]}"
    env = envelope(application(person, app_id))
    topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=stack.namespace)
    await publish(stack.broker_url, topic, [env])
    await publish(stack.broker_url, topic, [env])  # a redelivery: same event id
    # A later event for the same person proves both copies were consumed before we count.
    marker = envelope(application(person, f"{app_id}-2"))
    await publish(stack.broker_url, topic, [marker])
    events_topic = physical(ENROLLMENT_EVENTS, region=REGION, namespace=stack.namespace)
    records = await read_topic(stack.broker_url, events_topic, lambda rs: any(
        data_of(r).get("causationid") == marker.id for r in rs))
    caused = [data_of(r) for r in records if data_of(r).get("causationid") == env.id]
    assert sorted(e["type"] for e in caused) == [
        "cn.medins.enrollment.application.received.v1", "cn.medins.enrollment.contact.recorded.v1"]
    found = await collect_status(stack.settings(), person)
    assert [a["application_id"] for a in found["enrollment"]["applications"]] == [app_id]
    assert [h["what"] for h in found["enrollment"]["history"]] == ["application submitted"]
    conn = await stack.connect("enrollment")
    try:
        assert await conn.fetchval("SELECT count(*) FROM processed_messages WHERE event_id = $1",
                                   env.id) == 1
    finally:
        await conn.close()


async def test_malformed_and_invalid_events_are_dead_lettered_and_the_next_is_processed(
        stack: TestStack, workers: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    from shared.messaging.admin import bootstrap_servers

    topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=stack.namespace)
    person = people.resident_id()
    key = person.encode()  # same partition: the valid event comes after both bad ones
    garbage = b"\xff{not json " + uuid.uuid4().hex.encode()
    invalid = json.loads(envelope(application(person, "APP-BAD")).to_bytes())
    invalid["data"]["person_id"] = person[:-1] + ("0" if person[-1] != "0" else "1")
    valid = envelope(application(person, f"APP-{uuid.uuid4().hex[:8]}"))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(stack.broker_url))
    await producer.start()
    try:
        for value in (garbage, json.dumps(invalid).encode(), valid.to_bytes()):
            await producer.send_and_wait(topic, value, key=key, headers=signed(value))
    finally:
        await producer.stop()

    found = await poll(lambda: collect_status(stack.settings(), person),
                       lambda f: bool(f.get("enrollment", {}).get("applications")))
    assert found["enrollment"]["applications"][0]["application_id"] == valid.data[
        "application_id"]
    dlq = physical(DEAD_LETTER, region=REGION, namespace=stack.namespace)
    records = await read_dead_letters(stack.broker_url, dlq, lambda rs: sum(
        r.value in (garbage, json.dumps(invalid).encode()) for r in rs) == 2)
    reasons = {r.value: header(r, "dlq-reason") for r in records}
    assert "not JSON" in (reasons[garbage] or "")
    assert "data.person_id" in (reasons[json.dumps(invalid).encode()] or "")
    assert "checksum" in (reasons[json.dumps(invalid).encode()] or "")
    assert all(header(r, "dlq-topic") == topic for r in records if r.value == garbage)
    # On the topic itself the letters keep neither the body nor the key (the person's ID) in
    # clear: a letter is kept for months, its input's copy for days.
    ours = [r for r in records if r.value in (garbage, json.dumps(invalid).encode())]
    raw = {(r.partition, r.offset): r for r in await read_topic(
        stack.broker_url, dlq, lambda rs: len(rs) >= len(records))}
    for r in ours:
        stored = raw[r.partition, r.offset]
        assert r.key == key and stored.key is None
        assert person.encode() not in stored.value and b"not json" not in stored.value
