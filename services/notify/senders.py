"""Channel adapters: email over SMTP (aiosmtplib) and SMS over SMPP (smpp34)."""
from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import smpp34

from services.notify.domain.sms import UCS2, encode_ucs2, parse_delivery_receipt
from shared.observability.logging import get_logger

log = get_logger(__name__)


class PermanentSendError(Exception):
    """The recipient or message is refused for good: retrying cannot help."""


class OutcomeUnknown(Exception):
    """The message may or may not have gone out (connection lost after handing it over)."""


@dataclass(frozen=True)
class SendResult:
    provider_ids: list[str] = field(default_factory=list)


class Sender(Protocol):
    async def send(self, recipient: str, subject: str | None, body: str,
                   key: str) -> SendResult: ...


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

    async def send(self, recipient: str, subject: str | None, body: str,
                   key: str) -> SendResult:
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
            await smtp.connect()
            if self.username:
                await smtp.login(self.username, self.password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ConnectionError(f"SMTP relay unavailable: {exc}") from exc
        try:
            await smtp.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentSendError(f"recipient refused: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise PermanentSendError(f"SMTP {exc.code}: {exc.message}") from exc
            raise ConnectionError(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise OutcomeUnknown(f"SMTP connection lost while sending: {exc}") from exc
        finally:
            try:
                await smtp.quit()
            except Exception:
                smtp.close()
        return SendResult([msg["Message-ID"]])


ReceiptCallback = Callable[[str, str], Awaitable[None]]

# SMSC answers that retrying will not change.
PERMANENT_SMPP_STATUS = frozenset({
    smpp34.ESME_RINVDSTADR, smpp34.ESME_RINVSRCADR, smpp34.ESME_RINVMSGLEN,
})


class SmppSmsSender:
    """One bound transceiver session to the operator's SMSC, re-bound when it drops.

    Receipts (deliver_sm with esm_class 0x04) arrive on the same session and are handed to
    `on_receipt(message_id, stat)`.
    """

    def __init__(self, host: str, port: int, system_id: str, password: str, source_addr: str,
                 on_receipt: ReceiptCallback | None = None,
                 submit_timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.submit_timeout = submit_timeout
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
                                       bind_type="TRX", connect_timeout_ms=5000)
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

    async def send(self, recipient: str, subject: str | None, body: str,
                   key: str) -> SendResult:
        session = await self._bound()
        parts = encode_ucs2(body, zlib.crc32(key.encode()))
        ids: list[str] = []
        for index, part in enumerate(parts):
            try:
                resp = await asyncio.wait_for(session.submit_sm(
                    recipient, part.payload, source_addr=self.source_addr, data_coding=UCS2,
                    esm_class=part.esm_class, registered_delivery=1), self.submit_timeout)
            except Exception as exc:
                # The PDU may have reached the SMSC: resending could message the person twice.
                await self._discard_session()
                raise OutcomeUnknown(
                    f"no answer from the SMSC for part {index + 1}/{len(parts)}: {exc!r}"
                ) from exc
            if not resp.is_success:
                if index > 0:
                    raise OutcomeUnknown(f"part {index + 1}/{len(parts)} refused with status "
                                         f"{resp.command_status:#x} after earlier parts went")
                if resp.command_status in PERMANENT_SMPP_STATUS:
                    raise PermanentSendError(f"SMSC refused: status {resp.command_status:#x}")
                raise ConnectionError(f"SMSC busy: status {resp.command_status:#x}")
            ids.append(resp.message_id or "")
        return SendResult(ids)

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
