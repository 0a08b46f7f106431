"""Channel adapters: email over SMTP (aiosmtplib) and SMS over SMPP (smpp34)."""
from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, NoReturn, Protocol

import aiosmtplib
import smpp34

from services.notify.domain.sms import UCS2, encode_ucs2, parse_delivery_receipt
from shared.observability.logging import get_logger

log = get_logger(__name__)


class PermanentSendError(Exception):
    """The recipient or message is refused for good: retrying cannot help."""


class _NotSent(Exception):
    """Failed before the message was handed over: safe to retry."""


class OutcomeUnknown(Exception):
    """The message may or may not have gone out (connection lost after handing it over)."""

    def __init__(self, message: str, provider_ids: list[str] | None = None) -> None:
        super().__init__(message)
        # Gateway ids of the parts the SMSC did accept: proof that something went out.
        self.provider_ids = provider_ids or []


@dataclass(frozen=True)
class SendResult:
    provider_ids: list[str] = field(default_factory=list)


HandOver = Callable[[], None]


def _nothing() -> None:
    return None


class Sender(Protocol):
    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: HandOver = _nothing) -> SendResult:
        """`handing_over()` is called just before the step after which the message may have
        gone out; until then a failure means it certainly did not."""
        ...


@dataclass
class SmtpEmailSender:
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
    _sessions: asyncio.Semaphore | None = field(default=None, repr=False)

    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: HandOver = _nothing) -> SendResult:
        if self._sessions is None:
            self._sessions = asyncio.Semaphore(self.max_connections)
        async with self._sessions:
            return await self._send(recipient, subject, body, key, handing_over)

    async def _send(self, recipient: str, subject: str | None, body: str, key: str,
                    handing_over: HandOver) -> SendResult:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = recipient
        msg["Subject"] = subject or ""
        # Derived from the idempotency key, so a relay can spot a resend of the same message.
        msg["Message-ID"] = f"<{key.replace(':', '.')}@medins>"
        msg.set_content(body)
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.use_tls,
                               start_tls=self.start_tls, timeout=self.timeout)
        try:
            # Up to and including the envelope nothing is handed over: any failure is safe
            # to retry, a 5xx is a refusal.
            try:
                await smtp.connect()
                if self.username:
                    await smtp.login(self.username, self.password or "")
                await smtp.mail(self.sender)
                await smtp.rcpt(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    raise PermanentSendError(f"SMTP {exc.code}: {exc.message}") from exc
                raise _NotSent(f"SMTP {exc.code}: {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise _NotSent(f"SMTP relay unavailable: {exc}") from exc
            handing_over()
            try:
                await smtp.data(msg.as_bytes())
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    raise PermanentSendError(f"SMTP {exc.code}: {exc.message}") from exc
                raise _NotSent(f"SMTP {exc.code}: {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise OutcomeUnknown(f"SMTP connection lost while sending: {exc}") from exc
        except _NotSent as exc:
            raise ConnectionError(str(exc)) from exc.__cause__
        finally:
            try:
                await asyncio.wait_for(smtp.quit(), 5)
            except Exception:
                smtp.close()
        return SendResult([msg["Message-ID"]])


ReceiptCallback = Callable[[str, str], Awaitable[None]]

# SMSC answers that retrying will not change.
PERMANENT_SMPP_STATUS = frozenset({
    smpp34.ESME_RINVDSTADR, smpp34.ESME_RINVSRCADR, smpp34.ESME_RINVMSGLEN,
})
# SMSC answers that mean "not now": named in the log so an operator sees which it was.
TRANSIENT_SMPP_REASONS = {
    smpp34.ESME_RTHROTTLED: "throttled", smpp34.ESME_RMSGQFUL: "queue full",
    smpp34.ESME_RSYSERR: "system error",
}


class SmppSmsSender:
    """One bound transceiver session to the operator's SMSC, re-bound when it drops.

    Receipts (deliver_sm with esm_class 0x04) arrive on the same session and are handed to
    `on_receipt(message_id, stat)`.
    """

    def __init__(self, host: str, port: int, system_id: str, password: str, source_addr: str,
                 on_receipt: ReceiptCallback | None = None,
                 submit_timeout: float = 10.0, window: int = 10) -> None:
        self.host, self.port = host, port
        self.submit_timeout = submit_timeout
        # SMSCs accept a bounded number of unanswered PDUs; more are refused outright.
        self.window = window
        self._in_flight = asyncio.Semaphore(window)
        self.system_id, self.password = system_id, password
        self.source_addr = source_addr
        self.on_receipt = on_receipt
        self._client: Any = None
        self._session: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _bound(self) -> Any:
        async with self._lock:
            if self._session is None:
                client = smpp34.Client(self.host, self.port, self.system_id, self.password,
                                       bind_type="TRX", connect_timeout_ms=5000,
                                       window_size=self.window, inbound_capacity=4096)
                try:
                    self._session = await client.connect()
                except Exception as exc:
                    raise ConnectionError(f"SMSC unavailable: {exc}") from exc
                self._client = client
                self._reader = asyncio.create_task(self._read_receipts(self._session))
            return self._session

    async def _read_receipts(self, session: Any) -> None:
        while True:
            try:
                event = await session.next()
            except Exception:
                event = None
            if event is None or isinstance(event, smpp34.Disconnected):
                if self._session is session:
                    self._session = None
                return
            if not event.esm_class & 0x04 or self.on_receipt is None:
                continue  # a mobile-originated message: not ours to handle
            parsed = parse_delivery_receipt(event.short_message.decode("ascii", "replace"))
            if parsed is not None:
                try:
                    await self.on_receipt(*parsed)
                except Exception as exc:
                    log.warning("receipt not recorded", error=repr(exc))

    async def send(self, recipient: str, subject: str | None, body: str, key: str,
                   handing_over: HandOver = _nothing) -> SendResult:
        session = await self._bound()
        parts = encode_ucs2(body, zlib.crc32(key.encode()))
        ids: list[str] = []
        for index, part in enumerate(parts):
            resp: Any = None
            try:
                async with self._in_flight:
                    # Another send saw this session drop while this one queued for the
                    # window: nothing of this message was handed over yet.
                    if self._session is session:
                        if index == 0:
                            handing_over()
                        resp = await asyncio.wait_for(session.submit_sm(
                            recipient, part.payload, source_addr=self.source_addr,
                            data_coding=UCS2, esm_class=part.esm_class,
                            registered_delivery=1), self.submit_timeout)
            except smpp34.SmppError as exc:
                # A NAK from the SMSC comes back as a response with its status; an error
                # raised here is the client's own (session unbound or dropped before the
                # answer): the PDU may have gone, so it is a late answer, not a refusal.
                await self._discard_session()
                raise OutcomeUnknown(
                    f"no answer from the SMSC for part {index + 1}/{len(parts)}: {exc}", ids
                ) from exc
            except Exception as exc:
                # The PDU may have reached the SMSC: resending could message the person twice.
                await self._discard_session()
                raise OutcomeUnknown(
                    f"no answer from the SMSC for part {index + 1}/{len(parts)}: {exc!r}", ids
                ) from exc
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

    async def _discard_session(self) -> None:
        """Drop a session that stopped answering; the next send binds afresh."""
        client, self._client, self._session = self._client, None, None
        if self._reader:
            self._reader.cancel()
        if client is not None:
            try:
                await asyncio.wait_for(client.stop(), 2)
            except Exception as exc:
                log.warning("SMPP client did not stop cleanly", error=repr(exc))

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        if self._session is not None:
            try:
                await self._session.unbind()
            except Exception:
                pass
        if self._client is not None:
            await self._client.stop()
