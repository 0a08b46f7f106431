"""Every template of the catalogue, sent by a notify worker and read back from the local servers."""
from __future__ import annotations

import re
import uuid
from collections import defaultdict
from typing import Any

from services.notify.app import CATALOGUE
from services.notify.domain.catalogue import Catalogue, Contact, Message
from shared.contracts import EVENT_TYPES
from shared.contracts.enrollment import ContactRecorded
from shared.devstack import people
from shared.devstack.mailserver import read_mailbox
from shared.devstack.smsc import read_received
from shared.messaging.publisher import publish
from shared.policy.reference import Reference
from tests.conftest import REGION, TestStack, stop_all, wait_healthy
from tests.e2e.test_forgery import topic_of
from tests.e2e.test_words_received import _latin
from tests.helpers import envelope, poll
from tests.unit.test_notify_words import sample

MASKED_ID = re.compile(r"\d{4}\*+\d{3}[\dX]")


def _mobile(to: str) -> str:
    return to.lstrip("+").removeprefix("86")


async def test_every_template_reaches_a_person_as_the_catalogue_says(stack: TestStack) -> None:
    """One person per template and channel, with a mobile and an email of their own: the
    template's event (realistic data, signed as the region) goes through the broker to a notify
    worker of its own namespace, and each message must arrive at the local SMSC or SMTP
    server word for word as the catalogue renders it, in Chinese. The session's received.md
    then holds one SMS and one email of every template."""
    namespace = f"{stack.namespace}words_"
    await stack.prepare(namespace)
    ports = dict(stack.web_ports)
    procs = {"notify": stack.start_worker("notify", namespace=namespace)}
    try:
        wait_healthy(stack, procs)
        stack.web_ports.update(ports)
        reference = Reference.load(stack.settings(namespace).policy_folders())
        catalogue = Catalogue.load(CATALOGUE, reference)
        by_topic: dict[str, list[Any]] = defaultdict(list)
        expected: list[Message] = []
        quoted: dict[str, list[str]] = {}  # template -> the references its text may quote
        for template in catalogue.templates:
            person, mobile = people.resident_id(), people.mobile()
            email = f"w{uuid.uuid4().hex[:10]}@example.cn"
            data = sample(template.event_type, template, catalogue) | {"person_id": person}
            event = EVENT_TYPES[template.event_type].model_validate(data)
            contact = ContactRecorded(person_id=person, name="王秀英", mobile=mobile, email=email)
            for payload in (contact, event):
                by_topic[topic_of(namespace, payload)].append(envelope(payload))
            messages = catalogue.messages_for(template.event_type, event.model_dump(mode="json"),
                                              Contact(person, "王秀英", mobile, email), REGION)
            assert {m.channel for m in messages} == set(template.channels), template.key
            assert all(m.problem is None for m in messages), template.key
            expected += messages
            quoted[template.key] = [str(v) for k, v in data.items()
                                    if (k.endswith("_id") or k == "reference") and v]
        for topic, envelopes in by_topic.items():
            await publish(stack.broker_url, topic, envelopes)

        async def arrived() -> list[Message]:
            sms = {(_mobile(m["to"]), m["text"]) for m in read_received(stack.sms_dir)}
            mails = {(to, m.subject, m.body.strip()) for m in read_mailbox(stack.mail.folder)
                     for to in m.recipients}
            return [m for m in expected if (
                (_mobile(m.recipient), m.body) in sms if m.channel == "sms"
                else (m.recipient, m.subject, m.body.strip()) in mails)]

        got = await poll(arrived, lambda found: len(found) == len(expected), timeout=120)
        assert {(m.template, m.channel) for m in got} == {
            (t.key, c) for t in catalogue.templates for c in t.channels}
        for m in got:  # Latin only in a reference quoted back or a masked ID's check digit
            text = MASKED_ID.sub("", f"{m.subject or ''}{m.body}")
            for reference in quoted[m.template]:
                text = text.replace(reference, "")
            assert not _latin(text), f"{m.template}: {m.body}"
    finally:
        stop_all(procs)
