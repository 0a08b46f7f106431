"""Channel adapters: email over SMTP (aiosmtplib), SMS to a file-backed logging gateway."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from shared.observability.logging import get_logger

log = get_logger(__name__)


class PermanentSendError(Exception):
    """The recipient or message is refused for good: retrying cannot help."""


class Sender(Protocol):
    async def send(self, recipient: str, subject: str | None, body: str, key: str) -> str: ...


@dataclass
class SmtpEmailSender:
    host: str
    port: int
    sender: str
    start_tls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: str | None = None

    async def send(self, recipient: str, subject: str | None, body: str, key: str) -> str:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = recipient
        msg["Subject"] = subject or ""
        # The idempotency key travels with the message so the relay can spot a resend.
        msg["Message-ID"] = f"<{key.replace(':', '.')}@medins>"
        msg.set_content(body)
        try:
            await aiosmtplib.send(msg, hostname=self.host, port=self.port,
                                  start_tls=self.start_tls, use_tls=self.use_tls,
                                  username=self.username, password=self.password, timeout=10)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentSendError(f"recipient refused: {exc}") from exc
        return msg["Message-ID"]


@dataclass
class FileSmsGateway:
    """Stands in for the operator's SMPP gateway until the notify issue brings SMPP."""

    folder: Path

    async def send(self, recipient: str, subject: str | None, body: str, key: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "sms.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps({"to": recipient, "text": body, "key": key,
                                  "at": time.time()}, ensure_ascii=False) + "\n")
        log.info("sms handed to gateway", to=recipient, key=key)
        return key


def read_sms(folder: Path) -> list[dict[str, str]]:
    path = folder / "sms.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
