"""The local SMSC the tests and `medins up` use: a submission it cannot read is refused, and it
goes on serving the next."""
from __future__ import annotations

import asyncio

import smpp34

from shared.devstack.broker import free_port
from shared.devstack.smsc import LocalSmsc


async def test_an_unreadable_submission_is_refused_and_the_next_is_taken() -> None:
    smsc = await LocalSmsc(free_port()).start()
    client = smpp34.Client("127.0.0.1", smsc.port, "medins", "medins", bind_type="TRX")
    try:
        session = await client.connect()
        # Five bytes are no UCS-2 text: before, the serve loop died on them and every later
        # submission went unanswered.
        odd = await asyncio.wait_for(session.submit_sm(
            "13800001111", b"hello", source_addr="10690000", data_coding=8), 5)
        assert odd.command_status == smpp34.ESME_RINVMSGLEN
        fine = await asyncio.wait_for(session.submit_sm(
            "13800002222", "您好".encode("utf-16-be"), source_addr="10690000",
            data_coding=8), 5)
        assert fine.is_success
        assert [m.to for m in smsc.received] == ["13800002222"]
    finally:
        await client.stop()
        await smsc.stop()
