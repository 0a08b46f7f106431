"""Each topic has one producer kind: contracts, the authorisation table, the ACLs and the check."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shared.contracts import EVENT_TYPES
from shared.contracts.base import Payload
from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.contracts.civil_affairs import DeathRecorded
from shared.contracts.topics import ALL_TOPICS, DEAD_LETTER, logical, physical
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, RawMessage
from shared.settings import PlatformSettings
from shared.trust import (
    DEFAULT_TABLE,
    Authorisation,
    Keyring,
    Refused,
    TrustStore,
    Verifier,
    ensure_keys,
    sign_headers,
)
from tests.helpers import envelope

ROOT = Path(__file__).resolve().parents[2]
TABLE = Authorisation.load(DEFAULT_TABLE)
REGION = "210200"


def allowed(producer: str, event_type: str) -> bool:
    grant = TABLE.grants[producer]
    return TABLE._matches(event_type, grant.types + grant.internal)


def test_every_contract_topic_has_exactly_one_producer_that_may_send_its_types() -> None:
    for event_type, model in EVENT_TYPES.items():
        assert model.topic in ALL_TOPICS, (event_type, model.topic)
        writers = [n for n, g in TABLE.grants.items() if model.topic in g.topics]
        assert len(writers) == 1, (event_type, model.topic, writers)
        assert allowed(writers[0], event_type), (event_type, writers[0])


def test_no_topic_is_written_by_two_producers_and_every_input_has_a_writer() -> None:
    from services.enrollment.app import spec as enrollment
    from services.notify.app import spec as notify
    from services.reimbursement.app import spec as reimbursement
    from services.transfer.app import spec as transfer

    listed = [t for g in TABLE.grants.values() for t in g.topics]
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == set(ALL_TOPICS) - {DEAD_LETTER}
    for spec in (enrollment(), transfer(), reimbursement(), notify()):
        for topic in spec.consumes:
            assert TABLE.writer_of(topic) is not None, (spec.name, topic)
    # The old shared topics are gone: nothing may still publish to them.
    assert not {"enrollment.requests", "reimbursement.requests",
                "transfer.requests"} & set(ALL_TOPICS)


def test_the_broker_acls_grant_each_producer_exactly_its_topics_in_the_table() -> None:
    script = (ROOT / "deploy/kafka/acls.sh").read_text(encoding="utf-8")
    granted: dict[str, set[str]] = {}
    for who, topic in re.findall(r"^\s*writes\s+\"?([\w${}-]+)\"?\s+([\w.-]+)\s*$", script,
                                  re.MULTILINE):
        granted.setdefault(who, set()).add(topic)
    outside = {n: set(g.topics) for n, g in TABLE.grants.items() if not n.endswith("*")}
    assert {n: granted.get(n, set()) for n in outside} == outside
    # A partner region's principal writes only our inbox for it.
    assert granted["region-${partner}"] == {"transfer.partner"}


def test_the_regions_own_principal_writes_only_its_outputs_and_replay_has_its_own() -> None:
    script = (ROOT / "deploy/kafka/acls.sh").read_text(encoding="utf-8")

    def loop(verb: str) -> set[str]:
        found = re.search(r"for topic in ([^;]+); do\s+" + verb + r" ", script)
        assert found, verb
        return set(found.group(1).replace("\\", " ").split())

    region = TABLE.grants["region-*"]
    # Its outputs and dead letters: never an outside producer's topic.
    assert loop("owns") == (set(region.topics) - {"transfer.partner"}) | {DEAD_LETTER}
    # (Beyond them only partners' inboxes, in other regions' names.)
    assert not re.search(r'acl "\$SVC" --operation (All|Write)[^\n]*--topic "\$\{?P', script)
    # The operator's replay may write back every topic a letter can come from, and no output.
    inputs = {t for n, g in TABLE.grants.items() if n != "region-*" for t in g.topics}
    assert loop("replays") == inputs | {"transfer.partner"}


def test_a_physical_name_gives_back_its_region_and_logical_topic() -> None:
    name = physical("enrollment.from-channels", region=REGION, namespace="t1_")
    assert logical(name, "t1_") == (REGION, "enrollment.from-channels")
    assert logical(name, "t2_") is None
    assert logical("medins.21.enrollment.from-channels") is None
    assert logical("something.else") is None


@pytest.fixture
def consumer(tmp_path: Path) -> EventConsumer:
    """A verifying consumer (no database: only admission is tried) and the producers' keys."""
    trust, keys = tmp_path / "trust", tmp_path / "keys"
    ensure_keys(["channels", "civil-affairs", "review-desk", f"region-{REGION}"], keys,
                TrustStore(trust))
    settings = PlatformSettings(region=REGION, namespace="u_", trust_dir=trust,
                                keyring_dir=keys)
    return EventConsumer("enrollment", settings, None, {},  # type: ignore[arg-type]
                         verifier=Verifier.from_folder(trust, REGION))


def record(consumer: EventConsumer, topic: str, payload: Payload,
           producer: str) -> RawMessage:
    value = envelope(payload, region=REGION).to_bytes()
    key = Keyring(consumer.settings.keyring_dir).current(producer)
    assert key is not None
    return RawMessage(physical(topic, region=REGION, namespace="u_"), 0, 0, b"k", value,
                      tuple(sign_headers(value, key)))


def death() -> DeathRecorded:
    return DeathRecorded(record_ref="MZ-1", person_id=people.resident_id(),
                         date_of_death=date(2026, 11, 1))


def application() -> EnrollmentApplicationSubmitted:
    return EnrollmentApplicationSubmitted(
        application_id="APP-1", person_id=people.resident_id(), name="张静",
        insurance_type="resident", mobile=people.mobile(), channel="wechat",
        region_code=REGION, submitted_at=datetime.now(UTC))


def test_the_rightful_producer_on_its_own_topic_is_admitted(consumer: EventConsumer) -> None:
    env, _, signed_by, _ = consumer._admit(record(consumer, "enrollment.from-civil-affairs",
                                                  death(), "civil-affairs"))
    assert signed_by is not None and signed_by.startswith("civil-affairs/")
    consumer._admit(record(consumer, "enrollment.from-channels", application(), "channels"))


@pytest.mark.parametrize(("topic", "producer", "expected"), [
    # Signed by civil affairs, allowed deaths, but written on the channels' topic.
    ("enrollment.from-channels", "civil-affairs",
     "forbidden: civil-affairs may not write enrollment.from-channels (the topic of channels)"),
    # The channels' key on the channels' topic: not a type channels may send.
    ("enrollment.from-channels", "channels", "forbidden: channels may not send "
                                             "cn.gov.civil-affairs.death.recorded.v1"),
    # Civil affairs on the review desk's topic.
    ("enrollment.from-review-desk", "civil-affairs",
     "forbidden: civil-affairs may not write enrollment.from-review-desk"),
    # On the right producer's topic of another service: not this topic's type.
    ("reimbursement.from-hospitals", "civil-affairs", "forbidden: civil-affairs may not write"),
    # A topic that is not one of the platform's at all.
    ("enrollment.requests", "civil-affairs", "forbidden: civil-affairs may not write "
                                             "enrollment.requests"),
])
def test_a_signed_death_off_its_topic_is_forbidden(consumer: EventConsumer, topic: str,
                                                   producer: str, expected: str) -> None:
    with pytest.raises(Refused) as refused:
        consumer._admit(record(consumer, topic, death(), producer))
    assert refused.value.kind == "forbidden"
    assert refused.value.reason.startswith(expected), refused.value.reason


def test_a_type_on_the_right_producers_other_topic_is_forbidden(
        consumer: EventConsumer) -> None:
    """Channels write both topics, but an application belongs on enrollment's only."""
    with pytest.raises(Refused) as refused:
        consumer._admit(record(consumer, "reimbursement.from-channels", application(),
                               "channels"))
    assert refused.value.reason == (
        "forbidden: cn.medins.channels.enrollment.submitted.v1 does not belong on "
        "reimbursement.from-channels (its topic is enrollment.from-channels)")


def test_another_regions_topic_name_is_not_one_of_ours(consumer: EventConsumer) -> None:
    value = envelope(death(), region=REGION).to_bytes()
    key = Keyring(consumer.settings.keyring_dir).current("civil-affairs")
    assert key is not None
    msg = RawMessage(physical("enrollment.from-civil-affairs", region="370100",
                              namespace="u_"), 0, 0, b"k", value, tuple(sign_headers(value, key)))
    with pytest.raises(Refused, match="forbidden: the topic is not one of this platform's"):
        consumer._admit(msg)


def test_a_fetch_is_handed_over_in_written_order_each_partitions_order_kept() -> None:
    """The application (channels' topic) before the decision on it (the desk's), as written,
    where Faust's round robin would start with whichever topic it listed first."""
    from types import SimpleNamespace

    from faust.types import TP

    from shared.messaging.app import WrittenOrder

    desk, channels = TP("enrollment.from-review-desk", 0), TP("enrollment.from-channels", 0)
    records = {
        desk: [SimpleNamespace(timestamp=20, name="decide A"),
               SimpleNamespace(timestamp=40, name="decide B")],
        # A skewed sender clock inside one partition: its order is still kept.
        channels: [SimpleNamespace(timestamp=10, name="apply A"),
                   SimpleNamespace(timestamp=50, name="apply C"),
                   SimpleNamespace(timestamp=30, name="apply B")],
    }
    order = [r.name for _, r in WrittenOrder().iterate(records)]
    assert order == ["apply A", "decide A", "decide B", "apply C", "apply B"]


def test_a_dead_letter_from_a_retired_shared_topic_is_replayed_to_its_types_topic() -> None:
    from shared.ops_cli import DeadLetter, replay_topic

    def letter(topic: str, value: bytes) -> DeadLetter:
        return DeadLetter(0, 0, "", "enrollment", "", topic, "0", "0", None, value)

    death_bytes = envelope(death(), region=REGION).to_bytes()
    old = letter(f"u_medins.{REGION}.enrollment.requests", death_bytes)
    assert replay_topic(old, "u_") == f"u_medins.{REGION}.enrollment.from-civil-affairs"
    # A letter from a current topic goes back where it came from, refused or not.
    current = letter(f"u_medins.{REGION}.enrollment.from-channels", death_bytes)
    assert replay_topic(current, "u_") == current.original_topic
    garbage = letter(f"u_medins.{REGION}.enrollment.requests", b"\xff not json")
    assert replay_topic(garbage, "u_") == garbage.original_topic
