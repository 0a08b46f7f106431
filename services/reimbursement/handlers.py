"""Reimbursement handlers: track insured status, take in claims as `submitted` or refuse them."""
from __future__ import annotations

from services.reimbursement import repository as repo
from services.reimbursement.domain.claims import ClaimRefused, accept_claim
from shared.contracts import Envelope
from shared.contracts.channels import ClaimSubmitted
from shared.contracts.enrollment import InsuredStatusChanged
from shared.contracts.reimbursement import ClaimReceived, ClaimRejected
from shared.messaging.consumer import HandlerContext


async def on_status_changed(ctx: HandlerContext, env: Envelope,
                            event: InsuredStatusChanged) -> None:
    await repo.set_insured_status(ctx.conn, event.person_id, event.insurance_type,
                                  event.to_status)


async def on_claim_submitted(ctx: HandlerContext, env: Envelope, cmd: ClaimSubmitted) -> None:
    if await repo.claim_exists(ctx.conn, cmd.claim_id):
        return
    try:
        accept_claim(
            insured_status=await repo.insured_status(ctx.conn, cmd.person_id),
            expense_date=cmd.expense_date, filed_on=cmd.submitted_at.date(),
            earlier_claim_for_receipt=await repo.claim_for_receipt(
                ctx.conn, cmd.invoice_no, cmd.institution_code),
        )
        stage, reasons = "submitted", []
    except ClaimRefused as refused:
        stage, reasons = "rejected", refused.reasons
    await repo.save_claim(ctx.conn, claim_id=cmd.claim_id, person_id=cmd.person_id,
                          invoice_no=cmd.invoice_no, institution_code=cmd.institution_code,
                          expense_date=cmd.expense_date, amount_fen=cmd.amount_fen, stage=stage,
                          reasons=reasons, cause_id=env.id)
    if reasons:
        ctx.emit(ClaimRejected(claim_id=cmd.claim_id, person_id=cmd.person_id, reasons=reasons),
                 key=cmd.person_id)
    else:
        ctx.emit(ClaimReceived(claim_id=cmd.claim_id, person_id=cmd.person_id,
                               amount_fen=cmd.amount_fen, stage=stage), key=cmd.person_id)


ROUTES = {
    InsuredStatusChanged.event_type: on_status_changed,
    ClaimSubmitted.event_type: on_claim_submitted,
}
