"""An event's names never reach the log, even when a handler or a refusal quotes them."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from shared.contracts.channels import EnrollmentApplicationSubmitted
from shared.db.migrations import MESSAGING_MIGRATIONS, discover, migrate
from shared.db.pool import Database, connect
from shared.devstack import people
from shared.messaging.consumer import EventConsumer, HandlerContext, RawMessage
from shared.observability.logging import configure_logging, get_logger
from tests.conftest import REGION, TestStack
from tests.helpers import envelope


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging binds the captured stderr: put the defaults back after the test, or
    later tests would log to a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_names_quoted_by_a_handler_and_a_dead_letter_reason_are_masked(
        stack: TestStack, capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    schema = f"{stack.namespace}masked_{uuid.uuid4().hex[:6]}"
    conn = await connect(stack.database_url)
    try:
        await migrate(conn, schema, discover("messaging", MESSAGING_MIGRATIONS))
    finally:
        await conn.close()
    db = Database(stack.database_url, schema)
    await db.start()
    mobile = people.mobile()
    spaced = f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}"

    async def quotes_the_name(ctx: HandlerContext, env: Any, payload: Any) -> None:
        # A handler's own log line and its exception both quote the person in free text.
        get_logger("probe").warning("checking", detail=f"申请人{payload.name}资料不全")
        raise ValueError(f"{payload.name}（手机 {spaced}）资料不全")

    try:
        configure_logging("json", "INFO")
        consumer = EventConsumer("probe", stack.settings(), db,
                                 {EnrollmentApplicationSubmitted.event_type: quotes_the_name})
        env = envelope(EnrollmentApplicationSubmitted(
            application_id=f"APP-{uuid.uuid4().hex[:8]}", person_id=people.resident_id(),
            name="周杰伦", insurance_type="resident", mobile=mobile, channel="window",
            region_code=REGION, submitted_at=datetime.now(UTC)))
        await consumer.process([RawMessage("t", 0, 7, b"k", env.to_bytes())])
        async with db.pool.acquire() as conn:
            [letter] = await conn.fetch("SELECT headers FROM outbox")
    finally:
        await db.stop()
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"checking", "handler failed", "dead-lettered"} <= {line["event"] for line in lines}
    assert "周杰伦" not in err and "杰伦" not in err and spaced not in err
    assert "周**" in err and f"{mobile[:3]}****{mobile[-4:]}" in err
    # The letter itself keeps the whole reason for the operator; `medins deadletters` masks it.
    assert "周杰伦" in dict(json.loads(letter["headers"]))["dlq-reason"]
