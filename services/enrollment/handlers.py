"""Enrollment handlers: load, decide with the domain, save, emit; all in the caller's transaction."""
from __future__ import annotations

from shared.contracts import Envelope
from shared.contracts.channels import EnrollmentApplicationSubmitted, EnrollmentReviewDecided
from shared.contracts.enrollment import RequestRejected
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.messaging.consumer import HandlerContext
from services.enrollment import repository as repo
from services.enrollment.domain import enrollment as rules
from services.enrollment.domain.errors import RuleViolation


def _reject(ctx: HandlerContext, reference: str, person_id: str | None, err: RuleViolation) -> None:
    ctx.emit(RequestRejected(reference=reference, person_id=person_id, rule=err.rule,
                             reason=err.reason), key=person_id or reference)


async def _save(ctx: HandlerContext, env: Envelope, outcome: rules.Outcome, person_id: str) -> None:
    if outcome.person is not None:
        await repo.save_person(ctx.conn, outcome.person)
    if outcome.application is not None:
        await repo.save_application(ctx.conn, outcome.application)
        await repo.record_history(ctx.conn, person_id, outcome.application.application_id,
                                  f"application {outcome.application.state}",
                                  {"reasons": outcome.application.reasons}, env.id, env.type)
    if outcome.status_change is not None:
        c = outcome.status_change
        await repo.record_history(ctx.conn, person_id, person_id, "status changed",
                                  c.model_dump(mode="json", exclude={"person_id"}), env.id, env.type)
    for payload in outcome.events:
        ctx.emit(payload, key=person_id, subject=person_id)


async def on_application_submitted(ctx: HandlerContext, env: Envelope,
                                   cmd: EnrollmentApplicationSubmitted) -> None:
    if await repo.load_application(ctx.conn, cmd.application_id) is not None:
        return _reject(ctx, cmd.application_id, cmd.person_id, RuleViolation(
            "duplicate_application", f"application_id {cmd.application_id} was already used"))
    person = await repo.load_person(ctx.conn, cmd.person_id)
    latest = await repo.latest_application(ctx.conn, cmd.person_id)
    try:
        outcome = rules.submit_application(cmd, person, latest, ctx.region)
    except RuleViolation as err:
        return _reject(ctx, cmd.application_id, cmd.person_id, err)
    await _save(ctx, env, outcome, cmd.person_id)


async def on_review_decided(ctx: HandlerContext, env: Envelope,
                            cmd: EnrollmentReviewDecided) -> None:
    application = await repo.load_application(ctx.conn, cmd.application_id)
    person = await repo.load_person(ctx.conn, application.person_id) if application else None
    try:
        outcome = rules.review_application(cmd, application, person)
    except RuleViolation as err:
        return _reject(ctx, cmd.application_id, cmd.person_id, err)
    await _save(ctx, env, outcome, application.person_id)  # type: ignore[union-attr]


async def on_payment_confirmed(ctx: HandlerContext, env: Envelope,
                               cmd: ContributionPaymentConfirmed) -> None:
    # The tax authority may resend a payment under a new event id: the reference decides.
    if await repo.payment_exists(ctx.conn, cmd.payment_ref):
        return
    person = await repo.load_person(ctx.conn, cmd.person_id)
    application = (await repo.load_application(ctx.conn, cmd.application_id)
                   if cmd.application_id else None)
    outcome = rules.confirm_payment(cmd, person, application)
    await repo.save_payment(ctx.conn, cmd.payment_ref, cmd.person_id, cmd.application_id,
                            (cmd.period_start, cmd.period_end), cmd.amount_fen,
                            "parked" if outcome.parked_reason else "applied", outcome.parked_reason)
    await repo.record_history(ctx.conn, cmd.person_id, cmd.payment_ref,
                              "payment parked" if outcome.parked_reason else "payment applied",
                              {"amount_fen": cmd.amount_fen, "period_end": cmd.period_end,
                               "reason": outcome.parked_reason}, env.id, env.type)
    await _save(ctx, env, outcome, cmd.person_id)


ROUTES = {
    EnrollmentApplicationSubmitted.event_type: on_application_submitted,
    EnrollmentReviewDecided.event_type: on_review_decided,
    ContributionPaymentConfirmed.event_type: on_payment_confirmed,
}
