"""Channel adapters: email over SMTP (aiosmtplib) and SMS over SMPP (smpp34)."""
from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.header import Header
from email.mime.text import MIMEText
from typing import Any, NoReturn, Protocol

import aiosmtplib
import smpp34

from services.notify.batching import GroupCommit
from services.notify.domain.sms import UCS2, Receipt, encode_ucs2, parse_delivery_receipt
from shared.observability.logging import get_logger

log = get_logger(__name__)


class PermanentSendError(Exception):
    """The recipient or message is refused for good: retrying cannot help."""


class OutcomeUnknown(Exception):
    """The message may or may not have gone out (connection lost after handing it over)."""

    def __init__(self, message: str, provider_ids: list[str] | None = None) -> None:
        super().__init__(message)
        # Gateway ids of the parts the SMSC did accept: proof that something went out.
        self.provider_ids = provider_ids or []


@dataclass(frozen=True)
class SendResult:
    provider_ids: list[str] = field(default_factory=list)


HandOver = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


class Sender(Protocol):
    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: HandOver = _nothing) -> SendResult:
        """`await handing_over()` runs just before the step after which the message may have
        gone out; until then a failure means it certainly did not."""
        ...


class _Stale(Exception):
    """A pooled connection the relay had already closed: nothing of this message went."""


def _smtp_refusal(exc: aiosmtplib.SMTPResponseException) -> Exception:
    """An SMTP answer that refuses: 5xx is final (park), anything else is worth a retry."""
    text = f"SMTP {exc.code}: {exc.message}"
    return PermanentSendError(text) if exc.code >= 500 else ConnectionError(text)


@dataclass
class SmtpEmailSender:
    """A pool of persistent SMTP sessions: each one carries message after message (the next
    MAIL FROM after an accepted DATA, RSET after a refusal) and is replaced when it fails."""

    host: str
    port: int
    sender: str
    start_tls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    # Sessions open at once: relays limit them, and each one mid-DATA when the worker dies
    # is a message whose outcome is unknown.
    max_connections: int = 4
    # Relays drop sessions idle for a while; one idle longer than this is closed, not reused.
    idle_seconds: float = 30.0
    connections_opened: int = 0
    _sessions: asyncio.Semaphore | None = field(default=None, repr=False)
    _idle: list[tuple[aiosmtplib.SMTP, float]] = field(default_factory=list, repr=False)

    @property
    def capacity(self) -> int:
        """Messages that can be in hand-over at once."""
        return self.max_connections

    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: HandOver = _nothing) -> SendResult:
        if self._sessions is None:
            self._sessions = asyncio.Semaphore(self.max_connections)
        # The compat32 MIME classes: the same message as EmailMessage.set_content makes (UTF-8,
        # base64, encoded-word subject) for an eighth of its CPU.
        msg = MIMEText(body if body.endswith("\n") else body + "\n", "plain", "utf-8")
        msg["From"] = self.sender
        msg["To"] = recipient
        msg["Subject"] = Header(subject or "", "utf-8") if not (subject or "").isascii() else (
            subject or "")
        # Derived from the idempotency key, so a relay can spot a resend of the same message.
        message_id = f"<{key.replace(':', '.')}@medins>"
        msg["Message-ID"] = message_id
        async with self._sessions:
            await self._send(msg.as_bytes(), recipient, handing_over)
        return SendResult([message_id])

    async def _send(self, msg: bytes, recipient: str, handing_over: HandOver) -> None:
        smtp = self._take_idle()
        if smtp is not None:
            try:
                await self._envelope(smtp, recipient, reused=True)
            except _Stale:
                smtp.close()
                smtp = None
        if smtp is None:
            smtp = await self._open()
            await self._envelope(smtp, recipient, reused=False)
        # The envelope is open on `smtp`: from here every path either returns it to the pool
        # in a clean state or closes it.
        try:
            await handing_over()
        except BaseException:
            smtp.close()
            raise
        try:
            await smtp.data(msg)
        except aiosmtplib.SMTPResponseException as exc:
            # A final answer to DATA ends the transaction: the session is clean for the next.
            await self._keep(smtp, reset=True)
            raise _smtp_refusal(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise OutcomeUnknown(f"SMTP connection lost while sending: {exc}") from exc
        except BaseException:
            smtp.close()  # cancelled mid-DATA: the session's state is unknown
            raise
        await self._keep(smtp, reset=False)

    async def _envelope(self, smtp: aiosmtplib.SMTP, recipient: str, reused: bool) -> None:
        """MAIL FROM and RCPT TO: nothing is handed over yet, any failure is safe to retry and
        a 5xx is a refusal. On a reused session a dropped connection (or 421, closing) only
        means the relay let it go: the caller opens a fresh one."""
        try:
            await smtp.mail(self.sender)
            await smtp.rcpt(recipient)
        except aiosmtplib.SMTPResponseException as exc:
            if reused and exc.code == 421:
                raise _Stale() from exc
            await self._keep(smtp, reset=True)
            raise _smtp_refusal(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            if reused:
                raise _Stale() from exc
            smtp.close()
            raise ConnectionError(f"SMTP relay unavailable: {exc}") from exc
        except BaseException:
            smtp.close()
            raise

    async def _open(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.use_tls,
                               start_tls=self.start_tls, timeout=self.timeout)
        try:
            await smtp.connect()
            if self.username:
                await smtp.login(self.username, self.password or "")
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            raise _smtp_refusal(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise ConnectionError(f"SMTP relay unavailable: {exc}") from exc
        except BaseException:
            smtp.close()
            raise
        self.connections_opened += 1
        return smtp

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since < self.idle_seconds:
                return smtp
            asyncio.create_task(self._quit(smtp))
        return None

    async def _keep(self, smtp: aiosmtplib.SMTP, reset: bool) -> None:
        """Back to the pool; after a refusal the open transaction is reset first (RSET), and a
        session that cannot even do that is closed."""
        if reset:
            try:
                await smtp.rset()
            except Exception:
                smtp.close()
                return
        if smtp.is_connected:
            self._idle.append((smtp, time.monotonic()))

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        try:
            await asyncio.wait_for(smtp.quit(), 5)
        except Exception:
            smtp.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(smtp) for smtp, _ in idle))


# Called with (gateway message id, receipt stat) pairs, as many as came in together.
ReceiptCallback = Callable[[list[tuple[str, str]]], Awaitable[None]]

# SMSC answers that retrying will not change.
PERMANENT_SMPP_STATUS = frozenset({
    smpp34.ESME_RINVDSTADR, smpp34.ESME_RINVSRCADR, smpp34.ESME_RINVMSGLEN,
})
# SMSC answers that mean "not now": named in the log so an operator sees which it was.
TRANSIENT_SMPP_REASONS = {
    smpp34.ESME_RTHROTTLED: "throttled", smpp34.ESME_RMSGQFUL: "queue full",
    smpp34.ESME_RSYSERR: "system error",
}


class _Bind:
    """One bound transceiver session and its window of unanswered submit_sm."""

    def __init__(self, window: int) -> None:
        # SMSCs accept a bounded number of unanswered PDUs; more are refused outright.
        self.window = asyncio.Semaphore(window)
        self.client: Any = None
        self.session: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.load = 0  # sends queued on or in flight over this bind


# Receipts a session's client holds until the reader takes them. At 4,096, a burst of
# receipts at window 50 filled it while the event loop was busy, and the session died with
# every submit in flight on it (60,000 SMS flooded: 4,500 of unknown outcome; none at 65,536).
RECEIPTS_BUFFERED = 65_536


class SmppSmsSender:
    """Bound transceiver sessions to the operator's SMSC (`sessions` of them), each keeping up
    to `window` submit_sm unanswered at once (the client matches answers by sequence number);
    a session that drops or stops answering is re-bound by the next send.

    Receipts (deliver_sm with esm_class 0x04) arrive on the sessions and are handed to
    `on_receipts([(message_id, stat), ...])`, those that came in meanwhile together, while the
    reader goes on reading.
    """

    def __init__(self, host: str, port: int, system_id: str, password: str, source_addr: str,
                 on_receipts: ReceiptCallback | None = None,
                 submit_timeout: float = 10.0, window: int = 10, sessions: int = 1) -> None:
        self.host, self.port = host, port
        self.submit_timeout = submit_timeout
        self.window = window
        self.system_id, self.password = system_id, password
        self.source_addr = source_addr
        self.on_receipts = on_receipts
        self._binds = [_Bind(window) for _ in range(max(1, sessions))]
        self._receipts = GroupCommit[tuple[str, str]](self._hand_receipts)
        self.binds_made = 0

    @property
    def capacity(self) -> int:
        """Messages that can be in hand-over at once."""
        return self.window * len(self._binds)

    async def _bound(self, bind: _Bind) -> Any:
        async with bind.lock:
            if bind.session is None:
                if bind.client is not None:
                    # The session dropped by itself (the reader saw it): free its client.
                    old, bind.client = bind.client, None
                    try:
                        await asyncio.wait_for(old.stop(), 2)
                    except Exception as exc:
                        log.warning("SMPP client did not stop cleanly", error=repr(exc))
                client = smpp34.Client(self.host, self.port, self.system_id, self.password,
                                       bind_type="TRX", connect_timeout_ms=5000,
                                       window_size=self.window,
                                       inbound_capacity=RECEIPTS_BUFFERED)
                try:
                    bind.session = await client.connect()
                except Exception as exc:
                    raise ConnectionError(f"SMSC unavailable: {exc}") from exc
                self.binds_made += 1
                bind.client = client
                bind.reader = asyncio.create_task(self._read_receipts(bind, bind.session))
            return bind.session

    async def _read_receipts(self, bind: _Bind, session: Any) -> None:
        while True:
            try:
                event = await session.next()
            except Exception as exc:
                event, why = None, repr(exc)
            else:
                why = "disconnected" if isinstance(event, smpp34.Disconnected) else ""
            if event is None or isinstance(event, smpp34.Disconnected):
                if bind.session is session:
                    # The next send binds afresh; what was in flight on it gets no answer.
                    log.warning("SMPP session lost; the next message binds a new one",
                                reason=why, in_flight=bind.load)
                    bind.session = None
                return
            if not event.esm_class & 0x04 or self.on_receipts is None:
                continue  # a mobile-originated message: not ours to handle
            parsed = parse_delivery_receipt(event.short_message.decode("ascii", "replace"))
            if parsed is not None:
                # The handset (the receipt's source address) links a receipt whose submit
                # response was lost to the message it is about.
                written = self._receipts.enqueue([Receipt(*parsed, event.source_addr or None)])
                if self._receipts.queued > 4096:
                    await asyncio.wait([written])  # back-pressure: the writes fell behind

    async def _hand_receipts(self, receipts: list[tuple[str, str]]) -> None:
        try:
            assert self.on_receipts is not None
            await self.on_receipts(receipts)
        except Exception as exc:
            log.warning("receipts not recorded", count=len(receipts), error=repr(exc))

    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: HandOver = _nothing) -> SendResult:
        bind = min(self._binds, key=lambda b: b.load)
        bind.load += 1
        try:
            return await self._send(bind, recipient, body, key, handing_over)
        finally:
            bind.load -= 1

    async def _send(self, bind: _Bind, recipient: str, body: str, key: str,
                    handing_over: HandOver) -> SendResult:
        session = await self._bound(bind)
        parts = encode_ucs2(body, zlib.crc32(key.encode()))
        ids: list[str] = []
        for index, part in enumerate(parts):
            resp: Any = None
            async with bind.window:
                if bind.session is not session and index == 0:
                    # Another send saw this session drop while this one queued for the
                    # window: nothing of this message went yet, so it may use a new one.
                    session = await self._bound(bind)
                if bind.session is session:
                    if index == 0:
                        await handing_over()  # a failure here: nothing was handed over
                    try:
                        resp = await asyncio.wait_for(session.submit_sm(
                            recipient, part.payload, source_addr=self.source_addr,
                            data_coding=UCS2, esm_class=part.esm_class,
                            registered_delivery=1), self.submit_timeout)
                    except Exception as exc:
                        # A NAK from the SMSC comes back as a response with its status; an
                        # error raised here is the client's own (session unbound or dropped,
                        # or no answer in time): the PDU may have gone, so it is a late
                        # answer, not a refusal, and resending could message the person twice.
                        await self._discard(bind, session)
                        detail = str(exc) if isinstance(exc, smpp34.SmppError) else repr(exc)
                        raise OutcomeUnknown(f"no answer from the SMSC for part {index + 1}/"
                                             f"{len(parts)}: {detail}", ids) from exc
            if resp is None:
                if index == 0:
                    raise ConnectionError("SMSC session dropped before this message went")
                raise OutcomeUnknown(f"SMSC session dropped after {index}/{len(parts)} parts",
                                     ids)
            if not resp.is_success:
                self._refused(resp.command_status, index, len(parts), ids)
            ids.append(resp.message_id or "")
        return SendResult(ids)

    @staticmethod
    def _refused(status: int, index: int, total: int, ids: list[str]) -> NoReturn:
        """The SMSC answered no: permanent or worth retrying, unless earlier parts went."""
        if index > 0:
            raise OutcomeUnknown(f"part {index + 1}/{total} refused with status {status:#x} "
                                 "after earlier parts went", ids)
        if status in PERMANENT_SMPP_STATUS:
            raise PermanentSendError(f"SMSC refused: status {status:#x}")
        reason = TRANSIENT_SMPP_REASONS.get(status, "refused for now")
        raise ConnectionError(f"SMSC {reason}: status {status:#x}")

    async def _discard(self, bind: _Bind, session: Any) -> None:
        """Drop a session that stopped answering; the next send binds afresh. Only that
        session: another send may already have bound a new one in its place."""
        if bind.session is not session and bind.client is None:
            return
        if bind.session is not None and bind.session is not session:
            return
        # Every other message in flight on it fails with it (the client answers each with
        # ESME_RSYSERR) and is of unknown outcome: the operator sees why they came together.
        log.warning("SMPP session dropped after a request failed; its messages in flight are of"
                    " unknown outcome", in_flight=bind.load)
        client, bind.client, bind.session = bind.client, None, None
        if bind.reader:
            bind.reader.cancel()
        if client is not None:
            try:
                await asyncio.wait_for(client.stop(), 2)
            except Exception as exc:
                log.warning("SMPP client did not stop cleanly", error=repr(exc))

    async def close(self) -> None:
        for bind in self._binds:
            if bind.reader:
                bind.reader.cancel()
            if bind.session is not None:
                try:
                    await bind.session.unbind()
                except Exception:
                    pass
            if bind.client is not None:
                await bind.client.stop()
            bind.client = bind.session = None
        if self._receipts.busy:
            # Receipts already acknowledged to the SMSC: give their writes a moment.
            try:
                await asyncio.wait_for(self._receipts.wait_idle(), 3)
            except TimeoutError:
                log.warning("stopped with delivery receipts not yet written",
                            count=self._receipts.queued)
