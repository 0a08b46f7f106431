"""A local SMTP server (aiosmtpd) that keeps every received message as a file in a folder."""
from __future__ import annotations

import email
import email.policy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _SaveToFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        # A local stand-in for a relay that knows some mailboxes do not exist.
        if address.split("@", 1)[0].startswith("bounce"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        stamp = f"{time.time_ns()}"
        (self.folder / f"{stamp}.eml").write_bytes(envelope.original_content or envelope.content)
        # The metadata names a mail as complete: written aside and renamed into place, so a
        # reader never finds it half-written.
        meta = self.folder / f"{stamp}.json.tmp"
        meta.write_text(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos}),
                        encoding="utf-8")
        meta.replace(self.folder / f"{stamp}.json")
        return "250 Message accepted for delivery"


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    subject: str
    body: str


def read_mailbox(folder: Path) -> list[ReceivedMail]:
    out = []
    for eml in sorted(folder.glob("*.eml")):
        meta_path = eml.with_suffix(".json")
        if not meta_path.exists():
            continue  # still being written
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        out.append(ReceivedMail(meta["from"], meta["to"], str(msg["subject"]), body))
    return out


class MailServer:
    """SMTP on loopback; the folder is where `medins up` tells users to look."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self._controller = Controller(_SaveToFolder(folder), hostname="127.0.0.1", port=port)

    def start(self) -> MailServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


if __name__ == "__main__":
    import sys
    import threading

    # A relay in its own process, so a fault test can kill it like a real one going down.
    MailServer(Path(sys.argv[2]), int(sys.argv[1])).start()
    threading.Event().wait()
