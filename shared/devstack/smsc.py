"""A local SMSC (the SMPP server from smpp34) that records what it receives and sends receipts."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import smpp34

from services.notify.domain.sms import decode_part


@dataclass
class ReceivedSms:
    to: str
    sender: str
    text: str
    parts: int
    message_ids: list[str]
    data_coding: int
    at: float


@dataclass
class LocalSmsc:
    """Accepts submit_sm, reassembles concatenated parts, answers with DELIVRD receipts.

    Test knobs: destinations starting with a `reject_prefixes` entry are refused
    permanently (invalid destination); `throttle_next` refuses that many submissions as
    throttled; `vanish_next` never answers the next submission (a response lost on the way);
    `answer_delay` holds each answer back that long (a slow gateway).
    """

    port: int
    folder: Path | None = None
    reject_prefixes: tuple[str, ...] = ()
    send_receipts: bool = True
    throttle_next: int = 0
    vanish_next: bool = False
    answer_delay: float = 0.0
    received: list[ReceivedSms] = field(default_factory=list)
    submissions: list[float] = field(default_factory=list)
    _server: Any = None
    _sessions: dict[str, Any] = field(default_factory=dict)
    _pending_parts: dict[tuple[str, int], dict[int, tuple[str, str]]] = field(
        default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _unanswered: list[Any] = field(default_factory=list)

    async def start(self) -> LocalSmsc:
        self._server = smpp34.Server("127.0.0.1", self.port, system_id="local-smsc",
                                    inbound_capacity=4096)
        await self._server.start()
        self._task = asyncio.create_task(self._serve())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._server:
            await self._server.stop()

    async def _serve(self) -> None:
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self._sessions[event.session_id] = event
            elif isinstance(event, smpp34.Unbound):
                self._sessions.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                if self.answer_delay:
                    asyncio.create_task(self._later(event))
                else:
                    await self._on_submit(event)

    async def _later(self, event: Any) -> None:
        await asyncio.sleep(self.answer_delay)
        await self._on_submit(event)

    async def _on_submit(self, event: Any) -> None:
        self.submissions.append(time.monotonic())
        if self.vanish_next:
            self.vanish_next = False
            # Held without an answer: the client never hears back about this submission.
            self._unanswered.append(event)
            return
        if any(event.destination_addr.startswith(p) for p in self.reject_prefixes):
            event.reject(smpp34.ESME_RINVDSTADR)
            return
        if self.throttle_next > 0:
            self.throttle_next -= 1
            event.reject(smpp34.ESME_RTHROTTLED)
            return
        message_id = uuid.uuid4().hex[:16]
        concat, text = decode_part(event.short_message, event.esm_class)
        if concat is None:
            self._record(event, text, [message_id])
        else:
            ref, total, seq = concat
            key = (event.destination_addr, ref)
            parts = self._pending_parts.setdefault(key, {})
            parts[seq] = (text, message_id)
            if len(parts) == total:
                del self._pending_parts[key]
                ordered = [parts[i] for i in sorted(parts)]
                self._record(event, "".join(t for t, _ in ordered), [m for _, m in ordered])
        # Recorded before answering, as a real SMSC stores before it acknowledges: whoever
        # saw the answer finds the message here.
        event.accept(message_id)
        if self.send_receipts and event.registered_delivery & 1:
            esme = self._sessions.get(event.session_id)
            if esme is not None and esme.can_receive:
                asyncio.create_task(self._receipt(esme, event.destination_addr,
                                                  event.source_addr, message_id))

    async def _receipt(self, esme: Any, destination: str, source: str, message_id: str) -> None:
        stamp = time.strftime("%y%m%d%H%M")
        text = (f"id:{message_id} sub:001 dlvrd:001 submit date:{stamp} done date:{stamp} "
                f"stat:DELIVRD err:000 text:")
        for attempt in range(5):  # like a real SMSC, retry a receipt the ESME could not take
            try:
                resp = await esme.deliver_sm(source or "10690000", text.encode("ascii"),
                                             esm_class=0x04, source_addr=destination)
                if resp.is_success:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.05 * 2 ** attempt)

    def _record(self, event: Any, text: str, message_ids: list[str]) -> None:
        sms = ReceivedSms(event.destination_addr, event.source_addr, text, len(message_ids),
                          message_ids, event.data_coding, time.time())
        self.received.append(sms)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "received.jsonl", "a", encoding="utf-8") as out:
                out.write(json.dumps(sms.__dict__, ensure_ascii=False) + "\n")


class ThreadedSmsc:
    """Runs a LocalSmsc on its own event loop in a thread (for `medins up` and tests)."""

    def __init__(self, port: int, folder: Path | None = None) -> None:
        self.smsc = LocalSmsc(port, folder)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.smsc.port

    def start(self) -> ThreadedSmsc:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.smsc.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.smsc.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def read_received(folder: Path) -> list[dict[str, Any]]:
    path = folder / "received.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the last line while it is being written
    return out


def serve_forever(port: int, folder: Path) -> None:
    """Run the local SMSC in this process until it is killed (fault tests kill it)."""
    async def run() -> None:
        await LocalSmsc(port, folder).start()
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    import sys

    serve_forever(int(sys.argv[1]), Path(sys.argv[2]))
