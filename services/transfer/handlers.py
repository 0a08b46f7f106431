"""Transfer handlers: track insured status from enrollment, accept or refuse transfer-outs."""
from __future__ import annotations

from services.transfer import repository as repo
from services.transfer.domain.transfer import (
    Transfer,
    TransferRefused,
    TransferStage,
    request_transfer_out,
)
from shared.contracts import Envelope
from shared.contracts.channels import TransferOutRequested
from shared.contracts.enrollment import InsuredStatusChanged
from shared.contracts.transfer import TransferRequestReceived, TransferRequestRejected
from shared.messaging.consumer import HandlerContext


async def on_status_changed(ctx: HandlerContext, env: Envelope,
                            event: InsuredStatusChanged) -> None:
    await repo.set_insured_status(ctx.conn, event.person_id, event.insurance_type,
                                  event.to_status)


async def on_transfer_requested(ctx: HandlerContext, env: Envelope,
                                cmd: TransferOutRequested) -> None:
    if await repo.transfer_exists(ctx.conn, cmd.transfer_id):
        return
    status = await repo.insured_status(ctx.conn, cmd.person_id)
    try:
        transfer = request_transfer_out(cmd.transfer_id, cmd.person_id, status, ctx.region,
                                        cmd.to_region)
    except TransferRefused as refused:
        rejected = Transfer(cmd.transfer_id, cmd.person_id, ctx.region, cmd.to_region,
                            TransferStage.REJECTED)
        await repo.save_transfer(ctx.conn, rejected, refused.reason, env.id)
        ctx.emit(TransferRequestRejected(transfer_id=cmd.transfer_id, person_id=cmd.person_id,
                                         reason=refused.reason), key=cmd.person_id)
        return
    await repo.save_transfer(ctx.conn, transfer, None, env.id)
    ctx.emit(TransferRequestReceived(transfer_id=transfer.transfer_id,
                                     person_id=transfer.person_id,
                                     from_region=transfer.from_region,
                                     to_region=transfer.to_region), key=cmd.person_id)


ROUTES = {
    InsuredStatusChanged.event_type: on_status_changed,
    TransferOutRequested.event_type: on_transfer_requested,
}
