"""After a test session: one SMS and one email per template, as the local servers received them."""
from __future__ import annotations

from pathlib import Path

import asyncpg

from shared.devstack.mailserver import read_mailbox
from shared.devstack.smsc import read_received


async def write_received_report(conn: asyncpg.Connection, notify_schemas: list[str],
                                sms_dir: Path, mail_dir: Path, out: Path) -> int:
    """Pair each template's sent messages with what the SMSC and the SMTP server hold, and
    write the first received one per (template, channel); returns how many were written.

    The texts come from the servers, not from notify's table: the table only says which
    template a text was rendered from."""
    sms_texts = {m["text"] for m in read_received(sms_dir)}
    mails = {(m.subject, m.body.strip()) for m in read_mailbox(mail_dir)}
    seen: dict[tuple[str, str], str] = {}
    for schema in notify_schemas:
        rows = await conn.fetch(
            f'SELECT template, channel, subject, body FROM "{schema}".deliveries'
            " WHERE status = 'sent' ORDER BY id")
        for r in rows:
            key = (r["template"], r["channel"])
            if key in seen:
                continue
            if r["channel"] == "sms" and r["body"] in sms_texts:
                seen[key] = r["body"]
            elif r["channel"] == "email" and (r["subject"], r["body"].strip()) in mails:
                seen[key] = f"{r['subject']}\n\n{r['body'].strip()}"
    lines = ["# Received by the local SMSC and SMTP server, one per template and channel", ""]
    for (template, channel), text in sorted(seen.items()):
        lines += [f"## {template} ({channel})", "", "```", text, "```", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return len(seen)
