"""`medins demo` against the test stack: every story finishes and no text is held back."""
from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from shared.devstack.demo import run_demo
from tests.conftest import TestStack
from tests.helpers import poll


async def test_demo_runs_every_story_and_every_text_can_be_sent(
        stack: TestStack, workers: dict[str, Any]) -> None:
    out = io.StringIO()
    conn = await stack.connect("notify")
    try:
        started = await conn.fetchval("SELECT now()")
        code = await run_demo(stack.settings(), Console(file=out, width=200), proactive_size=20)
        text = out.getvalue()
        assert code == 0, text
        assert "20 records → claims" in text and "total paid" in text, text
        # The outage hospital comes from the reference data, so its texts name it and none is
        # parked for a missing name (a made-up code would be).
        paid = await poll(lambda: conn.fetch(
            "SELECT template, status, last_error FROM deliveries WHERE created_at >= $1"
            " AND template LIKE 'reimbursement.%'", started),
            lambda rows: len(rows) >= 20 and all(r["status"] not in ("pending", "sending")
                                                 for r in rows), timeout=60)
        held = [dict(r) for r in paid if r["status"] != "sent"]
        assert held == [], held
    finally:
        await conn.close()
