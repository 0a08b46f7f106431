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
    `lose_answer_at` = n takes the n-th submission from now (records it, sends its receipt)
    but its answer never reaches the client (a submit_sm_resp lost on the way back; 1: the
    next one, 2: the next but one, e.g. a message's second part); `answer_delay` holds
    each answer back that long (a slow gateway).

    Like a real SMSC, a receipt whose session is gone goes to another bound session able to
    receive, or waits for the next one that binds.
    """

    port: int
    folder: Path | None = None
    reject_prefixes: tuple[str, ...] = ()
    send_receipts: bool = True
    throttle_next: int = 0
    vanish_next: bool = False
    lose_answer_at: int = 0
    answer_delay: float = 0.0
    received: list[ReceivedSms] = field(default_factory=list)
    submissions: list[float] = field(default_factory=list)
    _server: Any = None
    _sessions: dict[str, Any] = field(default_factory=dict)
    _pending_parts: dict[tuple[str, int], dict[int, tuple[str, str]]] = field(
        default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _unanswered: list[Any] = field(default_factory=list)
    # Receipts no session could take: (session, destination, source, message id).
    _undelivered: list[tuple[str, str, str, str]] = field(default_factory=list)

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
                waiting, self._undelivered = self._undelivered, []
                for _, *receipt in waiting:
                    asyncio.create_task(self._receipt(event.session_id, *receipt))
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
        try:
            concat, text = decode_part(event.short_message, event.esm_class)
        except (ValueError, IndexError):
            # Not UCS-2 (or a broken concatenation header): refused as a gateway refuses a
            # message it cannot read, and the next submission is served as usual.
            event.reject(smpp34.ESME_RINVMSGLEN)
            return
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
        lose = self.lose_answer_at == 1
        self.lose_answer_at = max(0, self.lose_answer_at - 1)
        if lose:
            self._unanswered.append(event)  # taken, but the client never hears so
        else:
            event.accept(message_id)
        if self.send_receipts and event.registered_delivery & 1:
            asyncio.create_task(self._receipt(event.session_id, event.destination_addr,
                                              event.source_addr, message_id))

    def _receivers(self, session_id: str) -> list[Any]:
        """The session the message came on first, then any other bound one that receives."""
        first = self._sessions.get(session_id)
        others = [e for e in self._sessions.values() if e is not first]
        return [e for e in (first, *others) if e is not None and e.can_receive]

    async def _receipt(self, session_id: str, destination: str, source: str,
                       message_id: str) -> None:
        stamp = time.strftime("%y%m%d%H%M")
        text = (f"id:{message_id} sub:001 dlvrd:001 submit date:{stamp} done date:{stamp} "
                f"stat:DELIVRD err:000 text:")
        for attempt in range(5):  # like a real SMSC, retry a receipt the ESME could not take
            for esme in self._receivers(session_id):
                try:
                    resp = await asyncio.wait_for(esme.deliver_sm(
                        source or "10690000", text.encode("ascii"), esm_class=0x04,
                        source_addr=destination), 5)
                    if resp.is_success:
                        return
                except Exception:
                    continue
            await asyncio.sleep(0.05 * 2 ** attempt)
        # Nobody took it: kept for the next session that binds, as an SMSC stores receipts.
        self._undelivered.append((session_id, destination, source, message_id))

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


class ReceivedTail:
    """The messages a LocalSmsc folder records, read as the file grows: each call returns only
    those written since the last (a poller re-reading the whole file every 0.2 s took a fifth
    of a core at 200 SMS/s, from the machine it was measuring)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "received.jsonl"
        self._offset = 0

    def new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data.rfind(b"\n") + 1  # a line still being written waits for next time
        self._offset += complete
        return [json.loads(line) for line in data[:complete].splitlines() if line.strip()]


def read_received(folder: Path) -> list[dict[str, Any]]:
    """Every message the folder records so far."""
    return ReceivedTail(folder).new()


def serve_forever(port: int, folder: Path) -> None:
    """Run the local SMSC in this process until it is killed (fault tests kill it)."""
    async def run() -> None:
        await LocalSmsc(port, folder).start()
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    import sys

    serve_forever(int(sys.argv[1]), Path(sys.argv[2]))
