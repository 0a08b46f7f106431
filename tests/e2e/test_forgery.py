"""Forged events of every producer kind are refused by the running workers and change nothing."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contracts.bank import PaymentResultReported
from shared.contracts.base import Payload
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.civil_affairs import DeathRecorded
from shared.contracts.envelope import Envelope
from shared.contracts.partner import PartnerTransferAcknowledged
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.topics import DEAD_LETTER, physical
from shared.contracts.transfer import TransferCompleted
from shared.db.sealed import resident_keys
from shared.devstack import people
from shared.messaging.admin import bootstrap_servers
from shared.messaging.publisher import publish
from shared.settings import PlatformSettings
from shared.status import collect_status
from shared.trust import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    Keyring,
    SigningKey,
    TrustStore,
    create_key,
    generate_key,
    sign_headers,
)
from tests.conftest import REGION, TestStack
from tests.helpers import envelope, header, poll, read_dead_letters

JINAN, WEIHAI = "370100", "371000"


def key_of(producer: str) -> SigningKey:
    key = Keyring(PlatformSettings().keyring_dir).current(producer)
    assert key is not None, producer
    return key


def impostor(producer: str) -> SigningKey:
    """A key that claims a real producer's current key id but is someone else's."""
    real = key_of(producer)
    return SigningKey(real.producer, real.key_id, generate_key(producer).private)


async def send_raw(stack: TestStack, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(stack.broker_url))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers or None)
    finally:
        await producer.stop()


def topic_of(namespace: str, event: Payload | Envelope, region: str = REGION) -> str:
    """The topic of a payload, or of an envelope's event type, in `region`."""
    from shared.contracts import EVENT_TYPES

    name = event.topic if isinstance(event, Payload) else EVENT_TYPES[event.type].topic
    return physical(name, region=region, namespace=namespace)


async def enrollment(stack: TestStack, namespace: str, person: str) -> dict[str, Any]:
    found = await collect_status(stack.settings(namespace), person)
    return found.get("enrollment", {}) if found else {}


async def enroll(stack: TestStack, namespace: str) -> str:
    """Apply, approve and pay, each signed by its rightful producer: an active person."""
    person, app_id, now = people.resident_id(), f"APP-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    for payload in (
            EnrollmentApplicationSubmitted(
                application_id=app_id, person_id=person, name="张静", insurance_type="resident",
                mobile=people.mobile(), channel="wechat", region_code=REGION,
                submitted_at=now),
            EnrollmentReviewDecided(application_id=app_id, person_id=person,
                                    decision="approve", reviewer="s1", decided_at=now),
            ContributionPaymentConfirmed(
                payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person,
                application_id=app_id, insurance_type="resident",
                period_start=date(now.year, 1, 1), period_end=date(now.year, 12, 31),
                amount_fen=40_000, paid_at=now)):
        await publish(stack.broker_url, topic_of(namespace, payload), [envelope(payload)])
    await poll(lambda: enrollment(stack, namespace, person),
               lambda e: e.get("person", {}).get("status") == "active")
    return person


def fingerprint(value: bytes, headers: Any) -> tuple[bytes, str | None]:
    """A sent message as its dead letter shows it: the bytes and the signature they carried
    (dead letters keep the signature headers), so cases with the same bytes stay apart."""
    found = dict(headers or ())
    signature = found.get(SIGNATURE_HEADER)
    return value, signature.decode(errors="replace") if signature is not None else None


async def dead_letters(stack: TestStack, namespace: str,
                       wanted: set[tuple[bytes, str | None]]
                       ) -> dict[tuple[bytes, str | None], list[Any]]:
    dlq = physical(DEAD_LETTER, region=REGION, namespace=namespace)
    records = await read_dead_letters(
        stack.broker_url, dlq,
        lambda rs: wanted <= {fingerprint(r.value, r.headers) for r in rs}, timeout=60)
    found: dict[tuple[bytes, str | None], list[Any]] = {}
    for r in records:
        mark = fingerprint(r.value, r.headers)
        if mark in wanted:
            found.setdefault(mark, []).append(r)
    return found


async def processed(stack: TestStack, namespace: str, service: str, ids: list[str]) -> int:
    conn = await stack.connect(service, namespace)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM processed_messages WHERE event_id = ANY($1)", ids))
    finally:
        await conn.close()


async def test_forged_events_of_every_producer_kind_are_refused_and_change_nothing(
        stack: TestStack, isolated_workers: tuple[str, dict[str, Any]],
        tmp_path: Path) -> None:
    namespace, _ = isolated_workers
    person = await enroll(stack, namespace)
    now = datetime.now(UTC)
    death = envelope(DeathRecorded(record_ref=f"MZ-{uuid.uuid4().hex[:6]}", person_id=person,
                                   date_of_death=now.date()))
    payment = envelope(ContributionPaymentConfirmed(
        payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id="APP-X",
        insurance_type="resident", period_start=date(now.year, 1, 1),
        period_end=date(now.year, 12, 31), amount_fen=40_000, paid_at=now))
    approval = envelope(EnrollmentReviewDecided(
        application_id="APP-FORGED", person_id=person, decision="approve", reviewer="s1",
        decided_at=now))
    ack = PartnerTransferAcknowledged(
        transfer_id="T-FORGED", person_id=person, from_region=REGION, to_region=WEIHAI,
        credited_months=12, credited_balance_fen=1, accepted_on=now.date())
    completed = TransferCompleted(transfer_id="T-FORGED", person_id=person, from_region=REGION,
                                  to_region=JINAN, contribution_months=12,
                                  account_balance_fen=1, completed_on=now.date())
    bank = envelope(PaymentResultReported(
        idempotency_key="CLM-X:1", claim_id="CLM-FORGED", person_id=person, succeeded=True,
        reported_at=now))

    # A key that is registered and then revoked.
    store = TrustStore(PlatformSettings().trust_dir)
    revoked, _ = create_key("civil-affairs", tmp_path / "keys", store)
    store.revoke(revoked.name, "test: compromised")
    await asyncio.sleep(2.5)  # workers re-read the trust store every 2 s

    def replayed_under_new_id(env: Envelope, producer: str) -> tuple[bytes, list[Any]]:
        original = env.to_bytes()
        headers = sign_headers(original, key_of(producer))
        doc = json.loads(original)
        doc["id"] = str(uuid.uuid4())
        return json.dumps(doc).encode(), headers

    def tampered(env: Envelope, producer: str) -> tuple[bytes, list[Any]]:
        original = env.to_bytes()
        headers = sign_headers(original, key_of(producer))
        return original.replace(b'"decision":"approve"', b'"decision":"approve" '), headers

    def signed_by(env: Envelope, key: SigningKey) -> tuple[bytes, list[Any]]:
        value = env.to_bytes()
        return value, sign_headers(value, key)

    death_topic = topic_of(namespace, death)
    stale_death = death.model_copy(update={"id": str(uuid.uuid4()),
                                           "time": now - timedelta(days=200)})
    partner_topic = topic_of(namespace, ack)
    events_topic = topic_of(namespace, completed)
    in_region = {REGION: envelope(completed, region=REGION), JINAN: envelope(completed,
                                                                          region=JINAN)}
    other_region_ack = envelope(ack, region=JINAN)  # Jinan signs, but Weihai answered
    foreign_code_ack = envelope(ack, region=WEIHAI)  # Jinan signs with Weihai's code
    cases: list[tuple[str, str, bytes, list[Any], str]] = [
        # (what, topic, value, headers, expected reason prefix)
        ("unsigned death", death_topic, death.to_bytes(), [], "unauthenticated: not signed"),
        ("death, key nobody registered", death_topic,
         *signed_by(death, generate_key("civil-affairs")), "unauthenticated: unknown key"),
        ("death, civil affairs' key id, impostor's private key",
         death_topic,
         *signed_by(death, impostor("civil-affairs")), "unauthenticated: signature"),
        ("death, revoked civil-affairs key",
         death_topic,
         *signed_by(death, revoked), "unauthenticated: key civil-affairs/"),
        ("death signed by the tax authority",
         death_topic,
         *signed_by(death, key_of("tax")), "forbidden: tax may not send"),
        ("payment signed by the bank",
         topic_of(namespace, payment),
         *signed_by(payment, key_of("bank")), "forbidden: bank may not send"),
        ("payment result signed by the tax authority",
         topic_of(namespace, bank),
         *signed_by(bank, key_of("tax")), "forbidden: tax may not send"),
        ("staff approval signed by a channel", topic_of(namespace, approval),
         *signed_by(approval, key_of("channels")), "forbidden: channels may not send"),
        ("staff approval signed by the employers' gateway",
         topic_of(namespace, approval),
         *signed_by(approval, key_of("employer-gateway")), "forbidden"),
        ("death signed by a hospital",
         death_topic,
         *signed_by(death, key_of("hospital")), "forbidden: hospital may not send"),
        ("staff approval tampered after signing",
         topic_of(namespace, approval),
         *tampered(approval, "review-desk"), "unauthenticated: signature"),
        ("civil affairs' death replayed under a new id",
         death_topic,
         *replayed_under_new_id(death, "civil-affairs"), "unauthenticated: signature"),
        # Rightly signed, but older than the ids are remembered (a capture sent again after
        # pruning would otherwise be applied as new).
        ("civil affairs' death signed 200 days ago", death_topic,
         *signed_by(stale_death, key_of("civil-affairs")), "unauthenticated: signed at"),
        ("partner answers with another region's code", partner_topic,
         *signed_by(foreign_code_ack, key_of(f"region-{JINAN}")),
         f"forbidden: region-{JINAN} may not speak for region {WEIHAI}"),
        ("partner answers for another region's transfer", partner_topic,
         *signed_by(other_region_ack, key_of(f"region-{JINAN}")),
         f"forbidden: region-{JINAN} is not the sending end"),
        ("partner signs Dalian's own internal event", events_topic,
         *signed_by(in_region[REGION], key_of(f"region-{JINAN}")),
         f"forbidden: region-{JINAN} may not speak for region {REGION}"),
        ("partner's internal event injected into Dalian", events_topic,
         *signed_by(in_region[JINAN], key_of(f"region-{JINAN}")),
         "forbidden: cn.medins.transfer.completed.v1 of region 370100 is not for region"),
        ("transfer office key on a partner message", partner_topic,
         *signed_by(other_region_ack, key_of("transfer-office")), "forbidden"),
    ]
    for _, topic, value, headers, _ in cases:
        await send_raw(stack, topic, value, person.encode(), headers)
    letters = await dead_letters(stack, namespace, {fingerprint(c[2], c[3]) for c in cases})
    for what, topic, value, headers, expected in cases:
        reasons = [header(r, "dlq-reason") or "" for r in letters[fingerprint(value, headers)]
                   if header(r, "dlq-topic") == topic]
        assert reasons and all(r.startswith(expected) for r in reasons), (what, reasons)
    # Nothing was applied: the person is still active, the forged ids were never processed.
    found = await enrollment(stack, namespace, person)
    assert found["person"]["status"] == "active"
    assert [h["what"] for h in found["history"]][-1] != "deceased"
    ids = [death.id, stale_death.id, payment.id, approval.id, bank.id, other_region_ack.id,
           foreign_code_ack.id, in_region[REGION].id, in_region[JINAN].id]
    for service in ("enrollment", "transfer", "reimbursement", "notify"):
        assert await processed(stack, namespace, service, ids) == 0, service

    # The control: the same death, signed by civil affairs, is applied.
    await publish(stack.broker_url, death_topic,
                  [death])
    await poll(lambda: enrollment(stack, namespace, person),
               lambda e: e.get("person", {}).get("status") == "terminated")
    # The audit names who caused each change: the verified key, and for a staff decision the
    # member of staff (the history's cause_id is the event id).
    conn = await stack.connect("enrollment", namespace)
    try:
        rows = await conn.fetch(
            "SELECT p.event_type, p.signed_by, p.actor FROM processed_messages p"
            " JOIN history h ON h.cause_id = p.event_id"
            " WHERE h.person_key = ANY($1::text[])", resident_keys(person))
    finally:
        await conn.close()
    who = {r["event_type"]: (r["signed_by"].split("/")[0], r["actor"]) for r in rows}
    assert who["cn.gov.civil-affairs.death.recorded.v1"] == ("civil-affairs", None)
    assert who["cn.medins.review.enrollment.decided.v1"] == ("review-desk", "s1")


async def test_raw_clients_sign_with_the_documented_helper(
        stack: TestStack, isolated_workers: tuple[str, dict[str, Any]]) -> None:
    """What a partner system does with its own aiokafka client: sign_headers, nothing else."""
    person = people.resident_id()
    env = envelope(EnrollmentApplicationSubmitted(
        application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=person, name="陈静",
        insurance_type="resident", mobile=people.mobile(), channel="wechat",
        region_code=REGION, submitted_at=datetime.now(UTC)))
    value = env.to_bytes()
    headers = sign_headers(value, key_of("channels"))
    assert [k for k, _ in headers] == [KEY_HEADER, SIGNATURE_HEADER]
    namespace, _ = isolated_workers
    await send_raw(stack, topic_of(namespace, env), value, person.encode(), headers)
    await poll(lambda: enrollment(stack, namespace, person),
               lambda e: bool(e.get("applications")))


def refused_forbidden(stack: TestStack, namespace: str, service: str, topic: str) -> float:
    """The worker's `medins_events_refused_total` for forbidden events on one topic."""
    import re
    import urllib.request

    port = stack.web_ports[f"{service}@{namespace}"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for labels, value in re.findall(r"^medins_events_refused_total\{([^}]*)\} (\S+)$", text,
                                    re.MULTILINE):
        if f'topic="{topic}"' in labels and 'reason="forbidden"' in labels:
            total += float(value)
    return total


async def test_a_rightful_key_on_another_producers_topic_is_refused_and_changes_nothing(
        stack: TestStack, isolated_workers: tuple[str, dict[str, Any]]) -> None:
    """Type on topic: each topic has one producer kind, so a well-signed event of a type that
    is not its topic's, or on a topic its signer does not write, is forbidden."""
    from shared.contracts.topics import (
        ENROLLMENT_FROM_CHANNELS,
        ENROLLMENT_FROM_CIVIL_AFFAIRS,
        REIMBURSEMENT_FROM_CHANNELS,
    )

    namespace, _ = isolated_workers
    person = await enroll(stack, namespace)
    now = datetime.now(UTC)
    channels_topic = physical(ENROLLMENT_FROM_CHANNELS, region=REGION, namespace=namespace)
    deaths_topic = physical(ENROLLMENT_FROM_CIVIL_AFFAIRS, region=REGION, namespace=namespace)
    claims_topic = physical(REIMBURSEMENT_FROM_CHANNELS, region=REGION, namespace=namespace)
    death = envelope(DeathRecorded(record_ref=f"MZ-{uuid.uuid4().hex[:6]}", person_id=person,
                                   date_of_death=now.date()))
    approval = envelope(EnrollmentReviewDecided(
        application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=person, decision="approve",
        reviewer="s1", decided_at=now))
    payment = envelope(ContributionPaymentConfirmed(
        payment_ref=f"TAX-{uuid.uuid4().hex[:8]}", person_id=person, application_id="APP-X",
        insurance_type="resident", period_start=date(now.year, 1, 1),
        period_end=date(now.year, 12, 31), amount_fen=40_000, paid_at=now))
    newcomer = people.resident_id()
    application = envelope(EnrollmentApplicationSubmitted(
        application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=newcomer, name="陈静",
        insurance_type="resident", mobile=people.mobile(), channel="wechat",
        region_code=REGION, submitted_at=now))

    def signed_by(env: Envelope, producer: str) -> tuple[bytes, list[Any]]:
        value = env.to_bytes()
        return value, sign_headers(value, key_of(producer))

    before = refused_forbidden(stack, namespace, "enrollment", channels_topic)
    cases: list[tuple[str, str, bytes, list[Any], str, str]] = [
        # (what, topic, value, headers, consuming service, expected reason)
        ("death on the channels' topic, the channels' key", channels_topic,
         *signed_by(death, "channels"), "enrollment",
         "forbidden: channels may not send cn.gov.civil-affairs.death.recorded.v1"),
        ("death on the channels' topic, civil affairs' own key", channels_topic,
         *signed_by(death, "civil-affairs"), "enrollment",
         "forbidden: civil-affairs may not write enrollment.from-channels "
         "(the topic of channels)"),
        ("staff approval on the channels' topic, the review desk's key", channels_topic,
         *signed_by(approval, "review-desk"), "enrollment",
         "forbidden: review-desk may not write enrollment.from-channels "
         "(the topic of channels)"),
        ("tax payment on civil affairs' topic, the tax authority's key", deaths_topic,
         *signed_by(payment, "tax"), "enrollment",
         "forbidden: tax may not write enrollment.from-civil-affairs "
         "(the topic of civil-affairs)"),
        ("an application on the channels' claims topic, the channels' key", claims_topic,
         *signed_by(application, "channels"), "reimbursement",
         "forbidden: cn.medins.channels.enrollment.submitted.v1 does not belong on "
         "reimbursement.from-channels (its topic is enrollment.from-channels)"),
    ]
    for _, topic, value, headers, _, _ in cases:
        await send_raw(stack, topic, value, person.encode(), headers)
    letters = await dead_letters(stack, namespace, {fingerprint(c[2], c[3]) for c in cases})
    for what, topic, value, headers, service, expected in cases:
        found = [r for r in letters[fingerprint(value, headers)]
                 if header(r, "dlq-topic") == topic]
        assert [header(r, "dlq-service") for r in found] == [service], what
        assert [header(r, "dlq-reason") for r in found] == [expected], what
    # Counted like every refusal (and so alerted: EventsRefused).
    after = await poll(lambda: asyncio.to_thread(refused_forbidden, stack, namespace,
                                                 "enrollment", channels_topic),
                       lambda n: n >= before + 3)
    assert after == before + 3

    # Nothing changed: the person is active, no forged id was processed anywhere, the
    # newcomer is unknown.
    found = await enrollment(stack, namespace, person)
    assert found["person"]["status"] == "active"
    ids = [death.id, approval.id, payment.id, application.id]
    for service in ("enrollment", "transfer", "reimbursement", "notify"):
        assert await processed(stack, namespace, service, ids) == 0, service
    assert not await enrollment(stack, namespace, newcomer)

    # The control: the same death record on civil affairs' own topic is applied.
    await publish(stack.broker_url, deaths_topic, [death])
    await poll(lambda: enrollment(stack, namespace, person),
               lambda e: e.get("person", {}).get("status") == "terminated")
