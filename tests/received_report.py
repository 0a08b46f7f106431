"""After a test session: one SMS and one email per template, as the local servers received them."""
from __future__ import annotations

from pathlib import Path

import asyncpg

from services.notify.repository import ADDRESSEE, BODY, SUBJECT
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
            f'SELECT template, channel, subject, body, person_ref, source_event_id'
            f' FROM "{schema}".deliveries WHERE status = \'sent\' ORDER BY id')
        for r in rows:
            key = (r["template"], r["channel"])
            if key in seen:
                continue
            # Sealed at rest, bound to the person, event and channel.
            row = (ADDRESSEE.open(r["person_ref"]), r["source_event_id"], r["channel"])
            body = BODY.open(r["body"], *row) or ""
            subject = SUBJECT.open(r["subject"], *row)
            if r["channel"] == "sms" and body in sms_texts:
                seen[key] = body
            elif r["channel"] == "email" and (subject, body.strip()) in mails:
                seen[key] = f"{subject}\n\n{body.strip()}"
    lines = ["# Received by the local SMSC and SMTP server, one per template and channel", ""]
    for (template, channel), text in sorted(seen.items()):
        lines += [f"## {template} ({channel})", "", "```", text, "```", ""]
    out.write_text("\n".join(lines), encoding="utf-8")
    return len(seen)
