"""Enrollment handlers: load, decide with the domain, save, emit, in the caller's transaction."""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from services.enrollment import repository as repo
from services.enrollment.domain import benefits, coverage, filings, lifecycle, review
from services.enrollment.domain import enrollment as rules
from services.enrollment.domain.coverage import Period
from services.enrollment.domain.errors import RuleViolation
from services.enrollment.domain.model import STATUS_NAMES, Application, InsuredStatus, Person
from services.enrollment.work import Direct, Store, UnitOfWork
from shared.clock import SenderClockError, china_date
from shared.contracts import Envelope, parse_event
from shared.contracts.channels import (
    AccidentInjuryFiled,
    ChronicDiseaseApplied,
    ChronicDiseaseReviewed,
    DeathCancellationApplied,
    DeathCancellationReviewed,
    EnrollmentApplicationSubmitted,
    EnrollmentReviewDecided,
    FamilyAidAuthorised,
    FamilyAidRevoked,
    RemoteTreatmentFilingApplied,
    RemoteTreatmentFilingEnded,
    StaffDecision,
    StopContributionRequested,
)
from shared.contracts.civil_affairs import DeathRecorded
from shared.contracts.common import own_reference, request_id
from shared.contracts.employer import (
    CivilServantBenefitApplied,
    CivilServantBenefitReviewed,
    EmployerRegistered,
    EmployerRosterSubmitted,
)
from shared.contracts.enrollment import (
    AccidentInjuryAccepted,
    ChronicDiseaseRecognised,
    CivilServantBenefitDecided,
    ContactRecorded,
    ContributionStopAccepted,
    CoverageChanged,
    DeathCancellationDecided,
    DesignatedInstitutionChanged,
    EmployerEnrolled,
    FamilyAidAccepted,
    FamilyAidEnded,
    InsuredStatusChanged,
    PaymentParked,
    PersonDeceased,
    RemoteFilingAccepted,
    RemoteFilingEnded,
    RequestRejected,
    RosterProcessed,
    RosterRowProcessed,
)
from shared.contracts.hospital import EmergencyAdmissionFlagged, TreatmentRecorded
from shared.contracts.tax import ContributionPaymentConfirmed
from shared.contracts.transfer import CoverageEndRequested, TransferCompleted, TransferInCompleted
from shared.db.sealed import resident_key
from shared.messaging.consumer import BatchItem, Handler, HandlerContext, batch_handler
from shared.policy import Limit, NoPolicyInForce, PolicyBook
from shared.settings import EnrollmentSettings
from shared.workdays import due_date


def _store(ctx: HandlerContext, store: Store | None) -> Store:
    return store if store is not None else Direct(ctx.conn)


async def _reject(ctx: HandlerContext, reference: str, person_id: str | None,
                  err: RuleViolation, store: Store | None = None) -> None:
    ctx.emit(RequestRejected(reference=reference, person_id=person_id, rule=err.rule,
                             reason=err.reason), key=person_id or reference)
    await _record_refusal(ctx, reference, person_id, err, store)


async def _record_refusal(ctx: HandlerContext, reference: str, person_id: str | None,
                          err: RuleViolation, store: Store | None = None) -> None:
    """A refused request is kept per person (the event alone leaves with the outbox): their
    progress view lists it with its rule; one about no person has no place there."""
    if person_id is not None:
        await _store(ctx, store).record_refusal(person_id, reference, ctx.cause.type,
                                                err.rule, err.reason, ctx.cause.id)


def _received_on(ctx: HandlerContext, claimed: datetime, name: str = "submitted_at") -> date:
    """The day the platform received the request (never the sender's date for it)."""
    try:
        return ctx.filed_on(claimed, name)
    except SenderClockError as err:
        raise RuleViolation(err.rule, err.reason) from None


def _today(ctx: HandlerContext) -> date:
    return china_date(ctx.received_at)


def _settings(ctx: HandlerContext) -> EnrollmentSettings:
    return ctx.settings if isinstance(ctx.settings, EnrollmentSettings) else EnrollmentSettings()


async def _save_coverage(ctx: HandlerContext, env: Envelope, person_id: str,
                         before: list[Period], after: list[Period], cause: str,
                         store: Store | None = None) -> None:
    """Keep the new periods, in the history with their cause, and tell the other services."""
    if sorted(after, key=repr) == sorted(before, key=repr):
        return
    store = _store(ctx, store)
    await store.save_periods(person_id, after)
    contract = [p.to_contract() for p in sorted(after, key=lambda p: (p.start, p.reference))]
    await store.record_history(person_id, person_id, "coverage changed",
                               {"cause": cause,
                                "periods": [c.model_dump(mode="json") for c in contract]},
                               env.id, env.type)
    ctx.emit(CoverageChanged(person_id=person_id, periods=contract, cause=cause),
             key=person_id, subject=person_id)


async def _save(ctx: HandlerContext, env: Envelope, outcome: rules.Outcome, person_id: str,
                store: Store) -> None:
    if outcome.person is not None:
        await store.save_person(outcome.person)
    if outcome.application is not None:
        await store.save_application(outcome.application)
        detail: dict[str, Any] = {"reasons": outcome.application.reasons}
        if ctx.actor is not None:  # a staff decision: who decided, as the review desk signed
            detail["decided_by"] = ctx.decided_by()
        await store.record_history(person_id, outcome.application.application_id,
                                   f"application {outcome.application.state}", detail, env.id,
                                   env.type)
    if outcome.status_change is not None:
        c = outcome.status_change
        await store.record_history(person_id, person_id, "status changed",
                                   c.model_dump(mode="json", exclude={"person_id"}), env.id,
                                   env.type)
    for payload in outcome.events:
        ctx.emit(payload, key=person_id, subject=person_id)


# The three main handlers decide against a store: the database itself (`Direct`, one event at
# a time) or a batch's unit of work (`UnitOfWork`: loaded at once, written once per table);
# the same code decides both ways, so a batch leaves what one event at a time leaves.

async def _submit(ctx: HandlerContext, env: Envelope, cmd: EnrollmentApplicationSubmitted,
                  store: Store) -> None:
    held = await store.application_for(cmd.application_id, cmd.person_id)
    if held is not None and held.person_id == cmd.person_id:
        return await _reject(ctx, cmd.application_id, cmd.person_id, RuleViolation(
            "duplicate_application", f"application_id {cmd.application_id} was already used"),
            store)
    channel_ref = None
    if held is not None:
        # Another person's application has this number (a channel's numbers are unique per
        # person only): this one is an application of its own, under an id of its own.
        channel_ref = cmd.application_id
        cmd = cmd.model_copy(update={"application_id": own_reference(channel_ref, env.id)})
    person = await store.person(cmd.person_id)
    latest = await store.latest_application(cmd.person_id)
    try:
        outcome = rules.submit_application(cmd, person, latest, ctx.region)
    except RuleViolation as err:
        return await _reject(ctx, cmd.application_id, cmd.person_id, err, store)
    if outcome.application is not None:
        outcome.application.channel_ref = channel_ref
    await _save(ctx, env, outcome, cmd.person_id, store)


async def on_application_submitted(ctx: HandlerContext, env: Envelope,
                                   cmd: EnrollmentApplicationSubmitted) -> None:
    await _submit(ctx, env, cmd, Direct(ctx.conn))


async def _await_application(ctx: HandlerContext, env: Envelope, application_id: str,
                             person_id: str | None, store: Store | None = None) -> None:
    """A decision that arrived before the application or case it decides: the review desk and
    the channels write different topics, so their order is not guaranteed. It waits, whole and
    with who signed it, and is decided by its own handler when the application arrives."""
    # Written at once either way: no unit of work holds this table.
    if not await repo.save_early_decision(ctx.conn, env.id, env.type, application_id,
                                          person_id, env.to_bytes(), ctx.received_at,
                                          ctx.signed_by, ctx.actor):
        # It waited, the application came and was refused (nothing to decide): refused too.
        await _reject(ctx, application_id, person_id, RuleViolation(
            "unknown_application", f"application_id {application_id} is not known here"),
            store)


async def _resume_early_decisions(ctx: HandlerContext, application_id: str,
                                  person_id: str | None, store: Store | None = None) -> None:
    """The decisions that waited for the person's application or case under this number
    (and those naming no person), each by its own handler."""
    store = _store(ctx, store)
    for row in await store.take_early_decisions(application_id, person_id):
        envelope, payload = parse_event(bytes(row["envelope"]))
        original = HandlerContext(ctx.conn, envelope, ctx.service, ctx.region, ctx.namespace,
                                  ctx.emitted, ctx.settings, row["received_at"], ctx.policy,
                                  row["signed_by"], row["actor"])
        if row["event_type"] == EnrollmentReviewDecided.event_type:
            await _review(original, envelope, payload, store)
            continue
        # Another kind's decision under this id (its own case never came, or it would have
        # been decided then): its handler reads and writes the database, which first gets
        # everything decided so far.
        await store.flush()
        await PER_EVENT[row["event_type"]](original, envelope, payload)


async def _review(ctx: HandlerContext, env: Envelope, cmd: EnrollmentReviewDecided,
                  store: Store) -> None:
    application = await store.application_for(cmd.application_id, cmd.person_id)
    if application is None or application.person_id != cmd.person_id:
        # Not here yet, or only another person's under this number (numbers are the
        # person's): the decision waits for this person's application.
        return await _await_application(ctx, env, cmd.application_id, cmd.person_id, store)
    # Named by the channel's number or by its own id: decided under its own id.
    cmd = cmd.model_copy(update={"application_id": application.application_id})
    person = await store.person(application.person_id)
    try:
        outcome = rules.review_application(cmd, application, person)
    except RuleViolation as err:
        return await _reject(ctx, cmd.application_id, cmd.person_id, err, store)
    await _save(ctx, env, outcome, cmd.person_id, store)
    if outcome.application is not None and outcome.person is not None:
        await _apply_parked_payments(ctx, env, outcome.person, outcome.application, store)


async def on_review_decided(ctx: HandlerContext, env: Envelope,
                            cmd: EnrollmentReviewDecided) -> None:
    await _review(ctx, env, cmd, Direct(ctx.conn))


async def _apply_parked_payments(ctx: HandlerContext, env: Envelope, person: Person,
                                 application: Application, store: Store) -> None:
    """A payment that arrived before the approval was parked; the approval releases it."""
    for row in await store.parked_payments(person.person_id):
        # A payment names the application by its id or by the channel's number for it.
        if row["application_id"] not in (None, application.application_id,
                                         application.channel_ref):
            continue
        payment = ContributionPaymentConfirmed(
            payment_ref=row["payment_ref"], person_id=person.person_id,
            application_id=row["application_id"] and application.application_id,
            insurance_type=application.insurance_type,  # type: ignore[arg-type]
            period_start=row["period_start"], period_end=row["period_end"],
            amount_fen=row["amount_fen"],
            # (The rules do not read it; one parked in this batch has no stored time yet.)
            paid_at=row["recorded_at"] or ctx.received_at)
        before = await store.periods(person.person_id)
        outcome = rules.confirm_payment(payment, person, application, before, _today(ctx),
                                       _settings(ctx).coverage_grace_days)
        if outcome.parked_reason:
            continue
        await store.mark_payment_applied(row["payment_ref"])
        await store.record_history(person.person_id, row["payment_ref"],
                                   "parked payment applied", {"amount_fen": row["amount_fen"]},
                                   env.id, env.type)
        await _save(ctx, env, outcome, person.person_id, store)
        await _after_payment(ctx, env, outcome, person.person_id, before, row["payment_ref"],
                             store)


async def _after_payment(ctx: HandlerContext, env: Envelope, outcome: rules.Outcome,
                         person_id: str, before: list[Period], payment_ref: str,
                         store: Store) -> None:
    if outcome.periods is not None:
        await _save_coverage(ctx, env, person_id, before, outcome.periods,
                             f"contribution {payment_ref} confirmed by the tax authority", store)
    if outcome.activate_on is not None:
        # Paid ahead: active from the first day of the paid period, not before.
        await store.schedule_change(person_id, InsuredStatus.ACTIVE.value,
                                    outcome.activate_on, env.id, env.correlationid)
        await store.record_history(person_id, payment_ref, "activation scheduled",
                                   {"active_from": outcome.activate_on}, env.id, env.type)


async def _confirm(ctx: HandlerContext, env: Envelope, cmd: ContributionPaymentConfirmed,
                   store: Store) -> None:
    # The tax authority may resend a payment under a new event id: the reference decides.
    if await store.payment_exists(cmd.payment_ref):
        return
    person = await store.person(cmd.person_id)
    application = (await store.application_for(cmd.application_id, cmd.person_id)
                   if cmd.application_id else None)
    before = await store.periods(cmd.person_id)
    try:
        ctx.filed_on(cmd.paid_at, "paid_at")
    except SenderClockError as err:
        outcome = rules.Outcome(events=[PaymentParked(
            payment_ref=cmd.payment_ref, person_id=cmd.person_id, reason=err.reason)],
            parked_reason=err.reason)
    else:
        outcome = rules.confirm_payment(cmd, person, application, before, _today(ctx),
                                        _settings(ctx).coverage_grace_days)
    await store.save_payment(cmd.payment_ref, cmd.person_id, cmd.application_id,
                             (cmd.period_start, cmd.period_end), cmd.amount_fen,
                             "parked" if outcome.parked_reason else "applied",
                             outcome.parked_reason)
    await store.record_history(cmd.person_id, cmd.payment_ref,
                               "payment parked" if outcome.parked_reason else "payment applied",
                               {"amount_fen": cmd.amount_fen, "period_end": cmd.period_end,
                                "reason": outcome.parked_reason}, env.id, env.type)
    await _save(ctx, env, outcome, cmd.person_id, store)
    await _after_payment(ctx, env, outcome, cmd.person_id, before, cmd.payment_ref, store)


async def on_payment_confirmed(ctx: HandlerContext, env: Envelope,
                               cmd: ContributionPaymentConfirmed) -> None:
    await _confirm(ctx, env, cmd, Direct(ctx.conn))


# --- set-based: a batch's events of one type at once (issue 15) -------------------------------

async def _decide_all(items: list[BatchItem],
                      decide: Callable[[HandlerContext, Envelope, Any, Store], Awaitable[None]],
                      **preload: list[str]) -> None:
    """Load what the group needs with one query per table, decide each event in order
    against the state in memory (a later event sees what an earlier one did), then write
    once per table. What each event emits goes out through its own context."""
    work = UnitOfWork(items[0][0].conn)
    await work.preload(**preload)
    # Periods are read only where a payment is applied: those of persons with one parked.
    await work.preload(periods_of=work.persons_with_parked_payments())
    for ctx, env, cmd in items:
        await decide(ctx, env, cmd, work)
    await work.flush()


async def _submit_then_decide_early(ctx: HandlerContext, env: Envelope,
                                    cmd: EnrollmentApplicationSubmitted, store: Store) -> None:
    await _submit(ctx, env, cmd, store)
    await _resume_early_decisions(ctx, cmd.application_id, cmd.person_id, store)


@batch_handler
async def on_applications_submitted(items: list[BatchItem]) -> None:
    cmds = [cmd for _, _, cmd in items]
    persons = [c.person_id for c in cmds]
    await _decide_all(items, _submit_then_decide_early, persons=persons, latest_of=persons,
                      applications=[c.application_id for c in cmds],
                      early_for=[(c.application_id, c.person_id) for c in cmds])


@batch_handler
async def on_reviews_decided(items: list[BatchItem]) -> None:
    cmds = [cmd for _, _, cmd in items]
    approved = [c.person_id for c in cmds if c.decision == "approve"]
    # An approval releases the person's parked payments, which changes their periods.
    await _decide_all(items, _review, applications=[c.application_id for c in cmds],
                      persons=[c.person_id for c in cmds], parked_of=approved)


@batch_handler
async def on_payments_confirmed(items: list[BatchItem]) -> None:
    cmds = [cmd for _, _, cmd in items]
    persons = [c.person_id for c in cmds]
    await _decide_all(items, _confirm, payments=[c.payment_ref for c in cmds],
                      persons=persons, periods_of=persons,
                      applications=[c.application_id for c in cmds if c.application_id])


ROUTES: dict[str, Handler] = {
    EnrollmentApplicationSubmitted.event_type: on_applications_submitted,
    EnrollmentReviewDecided.event_type: on_reviews_decided,
    ContributionPaymentConfirmed.event_type: on_payments_confirmed,
}
# The same, one event at a time: what the set-based handlers must match, and what a resumed
# event runs.
PER_EVENT: dict[str, Handler] = {
    EnrollmentApplicationSubmitted.event_type: on_application_submitted,
    EnrollmentReviewDecided.event_type: on_review_decided,
    ContributionPaymentConfirmed.event_type: on_payment_confirmed,
}


# --- lifecycle: stop contributions, employers, death (SPEC enrollment 2-4) ----------------

async def _change_side_effects(ctx: HandlerContext, env: Envelope, person_id: str,
                               change: InsuredStatusChanged) -> list[str]:
    """A status change ends open filings (and, on death, family aid); returns ended ids."""
    await repo.record_history(ctx.conn, person_id, person_id, "status changed",
                              change.model_dump(mode="json", exclude={"person_id"}),
                              env.id, env.type)
    ctx.emit(change, key=person_id, subject=person_id)
    ended = filings.filings_ended_by_status(await repo.open_filings(ctx.conn, person_id),
                                            InsuredStatus(change.to_status))
    for filing in ended:
        filing.state = "ended"
        await repo.save_filing(ctx.conn, filing, "remote")
        ctx.emit(RemoteFilingEnded(filing_id=filing.filing_id, person_id=person_id,
                                   reason=f"参保状态变更为{STATUS_NAMES[change.to_status]}"),
                 key=person_id)
    if benefits.family_aid_ends(InsuredStatus(change.to_status)):
        # The account holder is no longer insured here: relatives may not spend from it.
        held = await repo.held_family_aid(ctx.conn, person_id)
        await repo.end_family_aid(ctx.conn, held)
        for auth_id in held:
            ctx.emit(FamilyAidEnded(authorisation_id=auth_id, person_id=person_id,
                                    reason="授权人已不在本地参保"),
                     key=person_id)
    return [f.filing_id for f in ended]


async def on_stop_requested(ctx: HandlerContext, env: Envelope,
                            cmd: StopContributionRequested) -> None:
    person = await repo.load_person(ctx.conn, cmd.person_id)
    try:
        today = _received_on(ctx, cmd.requested_at, "requested_at")
        suspended_from = lifecycle.stop_contributions(person, today)
    except RuleViolation as err:
        return await _reject(ctx, cmd.request_id, cmd.person_id, err)
    await repo.schedule_change(ctx.conn, cmd.person_id, InsuredStatus.SUSPENDED.value,
                               suspended_from, env.id, env.correlationid)
    await repo.record_history(ctx.conn, cmd.person_id, cmd.request_id, "stop requested",
                              {"suspended_from": suspended_from}, env.id, env.type)
    ctx.emit(ContributionStopAccepted(request_id=cmd.request_id, person_id=cmd.person_id,
                                      suspended_from=suspended_from), key=cmd.person_id)
    if suspended_from <= today:
        await apply_due_changes(ctx, today)


async def apply_due_changes(ctx: HandlerContext, today: date, limit: int = 500) -> int:
    """What falls due by date (also run by a timer): scheduled suspensions and activations,
    paid periods that ended with nothing paid after them, deferred institution changes."""
    due = await repo.due_changes(ctx.conn, today, limit)
    for row in due:
        person = await repo.load_person(ctx.conn, row["person_id"])
        await repo.mark_applied(ctx.conn, row["id"])
        if person is None:
            continue
        if row["to_status"] == InsuredStatus.ACTIVE.value:
            periods = await repo.load_periods(ctx.conn, person.person_id)
            change = rules.apply_scheduled_activation(person, periods, row["effective_on"])
        else:
            change = lifecycle.apply_scheduled_suspension(person, row["effective_on"])
        if change is None:
            continue
        await repo.save_person(ctx.conn, person)
        scoped = _caused_by(ctx, row["cause_id"], row["correlation_id"])
        await _change_side_effects(scoped, scoped.cause, person.person_id, change)
    lapsed = await _apply_lapses(ctx, today, limit)
    moved = await repo.apply_due_institution_changes(ctx.conn, today)
    return len(due) + lapsed + moved


def _caused_by(ctx: HandlerContext, cause_id: str, correlation_id: str) -> HandlerContext:
    """A context whose events are caused by an earlier event (a scheduled change's cause)."""
    cause = ctx.cause.model_copy(update={"id": cause_id, "correlationid": correlation_id})
    return HandlerContext(ctx.conn, cause, ctx.service, ctx.region, ctx.namespace, ctx.emitted,
                          ctx.settings, ctx.received_at)


async def _apply_lapses(ctx: HandlerContext, today: date, limit: int) -> int:
    grace = _settings(ctx).coverage_grace_days
    count = 0
    for person_id in await repo.lapse_candidates(ctx.conn, today, grace, limit):
        person = await repo.load_person(ctx.conn, person_id)
        periods = await repo.load_periods(ctx.conn, person_id)
        if person is None:
            continue
        change = rules.apply_lapse(person, periods, today, grace)
        if change is None:
            continue
        await repo.save_person(ctx.conn, person)
        # One lapse per person and ended period: the same ids if the timer runs it again.
        # The person is named by the keyed hash: the cause id is kept in the history.
        who = resident_key(person_id)
        scoped = _caused_by(ctx, f"lapse:{who}:{change.effective_on.isoformat()}",
                            f"lapse:{who}")
        await _change_side_effects(scoped, scoped.cause, person_id, change)
        count += 1
    return count


async def on_employer_registered(ctx: HandlerContext, env: Envelope,
                                 cmd: EmployerRegistered) -> None:
    if cmd.region_code != ctx.region:
        return await _reject(ctx, cmd.employer_code, None, RuleViolation(
            "wrong_region", f"region_code {cmd.region_code} is not this agency's region"))
    if await repo.save_employer(ctx.conn, cmd.employer_code, cmd.name, cmd.contact_email):
        ctx.emit(EmployerEnrolled(employer_code=cmd.employer_code, name=cmd.name),
                 key=cmd.employer_code)


async def on_roster(ctx: HandlerContext, env: Envelope, cmd: EmployerRosterSubmitted) -> None:
    if not await repo.employer_exists(ctx.conn, cmd.employer_code):
        return await _reject(ctx, cmd.roster_id, None, RuleViolation(
            "unknown_employer", f"employer_code {cmd.employer_code} is not enrolled here"))
    accepted = 0
    for row in cmd.rows:
        person = await repo.load_person(ctx.conn, row.person_id)
        try:
            # Each row in its own savepoint: a failing row leaves no trace, the others stand.
            async with ctx.conn.transaction():
                outcome = lifecycle.apply_roster_row(row, person, cmd.employer_code)
                assert outcome.person is not None
                await repo.save_person(ctx.conn, outcome.person)
                before = await repo.load_periods(ctx.conn, row.person_id)
                after = coverage.employment_changed(before, row.action, row.effective_on,
                                                    cmd.employer_code, cmd.roster_id)
                await _save_coverage(ctx, env, row.person_id, before, after,
                                     f"roster {cmd.roster_id} row {row.row}: {row.action}")
                for event in outcome.events:
                    if isinstance(event, InsuredStatusChanged):
                        await _change_side_effects(ctx, env, row.person_id, event)
                    else:
                        ctx.emit(event, key=row.person_id)
                await repo.record_history(ctx.conn, row.person_id, cmd.roster_id,
                                          f"roster {row.action}", {"row": row.row},
                                          env.id, env.type)
        except RuleViolation as err:
            reason, ok = err.reason, False
        else:
            reason, ok = outcome.reason, True
            accepted += 1
            if row.action == "increase":
                ctx.emit(ContactRecorded(person_id=row.person_id, name=outcome.person.name,
                                         mobile=outcome.person.mobile,
                                         email=outcome.person.email), key=row.person_id)
        ctx.emit(RosterRowProcessed(roster_id=cmd.roster_id, employer_code=cmd.employer_code,
                                    row=row.row, person_id=row.person_id, action=row.action,
                                    accepted=ok, reason=reason), key=cmd.employer_code)
    ctx.emit(RosterProcessed(roster_id=cmd.roster_id, employer_code=cmd.employer_code,
                             rows=len(cmd.rows), accepted=accepted,
                             rejected=len(cmd.rows) - accepted), key=cmd.employer_code)


async def on_civil_servant_applied(ctx: HandlerContext, env: Envelope,
                                   cmd: CivilServantBenefitApplied) -> None:
    if not await repo.employer_exists(ctx.conn, cmd.employer_code):
        return await _reject(ctx, cmd.application_id, None, RuleViolation(
            "unknown_employer", f"employer_code {cmd.employer_code} is not enrolled here"))
    own = await _own_case_id(ctx, cmd.application_id, cmd.employer_code)
    if own is not None:
        await repo.save_case(ctx.conn, own, "civil_servant_benefit", cmd.employer_code,
                             "submitted", cmd.model_dump(mode="json"), [],
                             _channel_ref(own, cmd.application_id))


async def _decision_recorded(ctx: HandlerContext, env: Envelope, subject: str, case_id: str,
                             approved: bool, reasons: list[str]) -> None:
    """A staff decision on a case goes into the history with who decided it."""
    await repo.record_history(ctx.conn, subject, case_id,
                              "case approved" if approved else "case rejected",
                              {"reasons": reasons, "decided_by": ctx.decided_by()}, env.id,
                              env.type)


async def _reviewed_case(ctx: HandlerContext, cmd: StaffDecision, kind: str, subject: str,
                         person_id: str | None
                         ) -> tuple[str, dict[str, Any], list[str]] | None:
    """The case's own id, its submitted data and the reasons to record, or None if the review
    is refused (the refusal is already emitted). The decision names the case by its id or by
    the number the subject's channel sent it under."""
    case = await repo.case_for(ctx.conn, cmd.application_id, subject)
    if case is None or case["subject"] != subject:
        # Not here yet, or only another subject's under this number: it waits for theirs.
        await _await_application(ctx, ctx.cause, cmd.application_id, person_id)
        return None
    try:
        reasons = review.decide(case, kind, subject, cmd.decision, cmd.reasons)
    except RuleViolation as err:
        await _reject(ctx, cmd.application_id, person_id, err)
        return None
    assert case is not None
    return case["case_id"], json.loads(case["data"]), reasons


async def _own_case_id(ctx: HandlerContext, reference: str, subject: str) -> str | None:
    """The id a case sent under `reference` about `subject` takes (`request_id`)."""
    return request_id(reference, ctx.cause.id,
                      await repo.case_holder(ctx.conn, reference, subject))


def _channel_ref(own: str, reference: str) -> str | None:
    """The channel's number, kept when the item's own id differs from it."""
    return reference if own != reference else None


async def on_civil_servant_reviewed(ctx: HandlerContext, env: Envelope,
                                    cmd: CivilServantBenefitReviewed) -> None:
    reviewed = await _reviewed_case(ctx, cmd, "civil_servant_benefit", cmd.employer_code, None)
    if reviewed is None:
        return
    case_id, _, reasons = reviewed
    cmd = cmd.model_copy(update={"application_id": case_id})
    approved = cmd.decision == "approve"
    await repo.save_case(ctx.conn, cmd.application_id, "civil_servant_benefit",
                         cmd.employer_code, "approved" if approved else "rejected", {}, reasons)
    await _decision_recorded(ctx, env, cmd.employer_code, cmd.application_id, approved, reasons)
    if approved:
        await repo.set_civil_servant_benefit(ctx.conn, cmd.employer_code)
    ctx.emit(CivilServantBenefitDecided(application_id=cmd.application_id,
                                        employer_code=cmd.employer_code, approved=approved,
                                        reasons=reasons), key=cmd.employer_code)


async def _terminate(ctx: HandlerContext, env: Envelope, person: Person, date_of_death: date,
                     source: str) -> None:
    change = lifecycle.record_death(person, date_of_death, source)
    await repo.save_person(ctx.conn, person)
    before = await repo.load_periods(ctx.conn, person.person_id)
    await _save_coverage(ctx, env, person.person_id, before,
                         coverage.end_all(before, date_of_death), f"死亡（{source}）")
    ended_filings = await _change_side_effects(ctx, env, person.person_id, change)
    ended_aid = await repo.active_family_aid(ctx.conn, person.person_id)
    await repo.end_family_aid(ctx.conn, ended_aid)
    ended_bindings = await repo.end_recognitions(ctx.conn, person.person_id, date_of_death)
    for auth_id in ended_aid:
        ctx.emit(FamilyAidEnded(authorisation_id=auth_id, person_id=person.person_id,
                                reason="授权人或被授权亲属已身故"),
                 key=person.person_id)
    ctx.emit(PersonDeceased(person_id=person.person_id, date_of_death=date_of_death,
                            source=source, ended_filings=ended_filings,
                            ended_authorisations=ended_aid,
                            ended_chronic_bindings=ended_bindings), key=person.person_id)


async def on_death_recorded(ctx: HandlerContext, env: Envelope, cmd: DeathRecorded) -> None:
    person = await repo.load_person(ctx.conn, cmd.person_id)
    if person is None or person.status == InsuredStatus.TERMINATED:
        return  # no record here to end, or already ended: nothing to tell anyone
    await _terminate(ctx, env, person, cmd.date_of_death, f"民政部门死亡登记{cmd.record_ref}")


async def on_death_cancellation_applied(ctx: HandlerContext, env: Envelope,
                                        cmd: DeathCancellationApplied) -> None:
    own = await _own_case_id(ctx, cmd.application_id, cmd.person_id)
    if own is None:
        return
    channel_ref = _channel_ref(own, cmd.application_id)
    cmd = cmd.model_copy(update={"application_id": own})
    person = await repo.load_person(ctx.conn, cmd.person_id)
    try:
        lifecycle.check_death_applicant(person, cmd.applicant, cmd.employer_code)
    except RuleViolation as err:
        await _record_refusal(ctx, cmd.application_id, cmd.person_id, err)
        ctx.emit(DeathCancellationDecided(
            application_id=cmd.application_id, person_id=cmd.person_id, approved=False,
            reasons=[err.reason], applicant_email=cmd.applicant_email), key=cmd.person_id)
        return
    await repo.save_case(ctx.conn, cmd.application_id, "death_cancellation", cmd.person_id,
                         "submitted", cmd.model_dump(mode="json"), [], channel_ref)


async def on_death_cancellation_reviewed(ctx: HandlerContext, env: Envelope,
                                         cmd: DeathCancellationReviewed) -> None:
    reviewed = await _reviewed_case(ctx, cmd, "death_cancellation", cmd.person_id,
                                    cmd.person_id)
    if reviewed is None:
        return
    case_id, data, reasons = reviewed
    cmd = cmd.model_copy(update={"application_id": case_id})
    approved = cmd.decision == "approve"
    if approved:
        person = await repo.load_person(ctx.conn, cmd.person_id)
        try:
            assert person is not None
            await _terminate(ctx, env, person, date.fromisoformat(data["date_of_death"]),
                             f"死亡注销申请{cmd.application_id}")
        except RuleViolation as err:
            approved, reasons = False, [err.reason]
    await repo.save_case(ctx.conn, cmd.application_id, "death_cancellation", cmd.person_id,
                         "approved" if approved else "rejected", {}, reasons)
    await _decision_recorded(ctx, env, cmd.person_id, cmd.application_id, approved, reasons)
    ctx.emit(DeathCancellationDecided(application_id=cmd.application_id,
                                      person_id=cmd.person_id, approved=approved,
                                      reasons=reasons, applicant_email=data["applicant_email"]),
             key=cmd.person_id)


# --- filings: remote treatment, accident injury (SPEC enrollment 5 and 8) -----------------

def _temporary_filing_days(ctx: HandlerContext) -> int:
    if isinstance(ctx.settings, EnrollmentSettings):
        return ctx.settings.temporary_filing_days
    return filings.TEMPORARY_VALID_DAYS


async def _accept_filing(ctx: HandlerContext, env: Envelope, filing: filings.Filing,
                         channel_ref: str | None = None) -> None:
    await repo.save_filing(ctx.conn, filing, "remote", channel_ref=channel_ref)
    await repo.record_history(ctx.conn, filing.person_id, filing.filing_id,
                              f"{filing.kind} filing accepted", {"source": filing.source},
                              env.id, env.type)
    ctx.emit(RemoteFilingAccepted(
        filing_id=filing.filing_id, person_id=filing.person_id, kind=filing.kind,
        source=filing.source, treatment_area=filing.treatment_area,
        start_date=filing.start_date, end_date=filing.end_date,
        benefit_level=filing.benefit_level, chronic_diseases=filing.chronic_diseases),
        key=filing.person_id)


async def on_remote_filing(ctx: HandlerContext, env: Envelope,
                           cmd: RemoteTreatmentFilingApplied) -> None:
    own = await _own_filing_id(ctx, cmd.filing_id, cmd.person_id)
    if own is None:
        return
    channel_ref = _channel_ref(own, cmd.filing_id)
    cmd = cmd.model_copy(update={"filing_id": own})
    person = await repo.load_person(ctx.conn, cmd.person_id)
    try:
        filing = filings.accept_remote_filing(cmd, person, ctx.region,
                                              _temporary_filing_days(ctx),
                                              _received_on(ctx, cmd.submitted_at))
    except RuleViolation as err:
        return await _reject(ctx, cmd.filing_id, cmd.person_id, err)
    await _accept_filing(ctx, env, filing, channel_ref)


async def _own_filing_id(ctx: HandlerContext, reference: str, person_id: str) -> str | None:
    """As `_own_case_id`, for a filing."""
    return request_id(reference, ctx.cause.id,
                      await repo.filing_holder(ctx.conn, reference, person_id))


async def on_remote_filing_ended(ctx: HandlerContext, env: Envelope,
                                 cmd: RemoteTreatmentFilingEnded) -> None:
    open_ones = await repo.open_filings(ctx.conn, cmd.person_id, cmd.filing_id)
    if not open_ones:
        return await _reject(ctx, cmd.filing_id, cmd.person_id, RuleViolation(
            "no_open_filing", f"filing_id {cmd.filing_id}: no open filing to change"))
    filing = open_ones[0]
    filing.state = "ended"
    await repo.save_filing(ctx.conn, filing, "remote")
    ctx.emit(RemoteFilingEnded(filing_id=filing.filing_id, person_id=cmd.person_id,
                               reason="本人申请终止"), key=cmd.person_id)


async def on_emergency_admission(ctx: HandlerContext, env: Envelope,
                                 cmd: EmergencyAdmissionFlagged) -> None:
    person = await repo.load_person(ctx.conn, cmd.person_id)
    try:
        # At a hospital of the person's own city nothing is remote: no filing, no message.
        filing = filings.emergency_filing(cmd, person, _temporary_filing_days(ctx), ctx.region)
    except RuleViolation as err:
        return await _reject(ctx, cmd.admission_id, cmd.person_id, err)
    if filing is not None and not await repo.filing_exists(ctx.conn, filing.filing_id):
        await _accept_filing(ctx, env, filing)


async def on_accident_filed(ctx: HandlerContext, env: Envelope, cmd: AccidentInjuryFiled) -> None:
    own = await _own_filing_id(ctx, cmd.filing_id, cmd.person_id)
    if own is None:
        return
    channel_ref = _channel_ref(own, cmd.filing_id)
    cmd = cmd.model_copy(update={"filing_id": own})
    person = await repo.load_person(ctx.conn, cmd.person_id)
    try:
        filed_on = _received_on(ctx, cmd.submitted_at)
        # The limits in force on the day of admission [002 十三], from the policy book.
        applied = _book(ctx).accident_filing_limits(cmd.admitted_on)
        deadline = filings.accept_accident_filing(cmd, person, applied.value, _count_due,
                                                  filed_on)
    except RuleViolation as err:
        return await _reject(ctx, cmd.filing_id, cmd.person_id, err)
    except NoPolicyInForce as missing:
        return await _await_policy(ctx, env, cmd.filing_id, cmd.person_id, missing)
    accident = filings.Filing(cmd.filing_id, cmd.person_id, "inpatient", "application", "",
                              cmd.admitted_on, None, state="accepted")
    limit = applied.value.limit(cmd.in_city)
    detail = {"hospital_code": cmd.hospital_code, "in_city": cmd.in_city,
              "deadline": deadline.on, "deadline_provisional": deadline.provisional,
              "limit": {"count": limit.count, "unit": limit.unit},
              "policy": applied.record()}
    await repo.save_filing(ctx.conn, accident, "accident", detail, channel_ref)
    await repo.record_history(ctx.conn, cmd.person_id, cmd.filing_id, "accident filing accepted",
                              detail, env.id, env.type)
    ctx.emit(AccidentInjuryAccepted(filing_id=cmd.filing_id, person_id=cmd.person_id,
                                    admitted_on=cmd.admitted_on, deadline=deadline.on,
                                    deadline_provisional=deadline.provisional),
             key=cmd.person_id)


def _count_due(start: date, limit: Limit) -> tuple[date, bool]:
    """A limit's last day; working days past the holiday schedules count weekdays only and
    are provisional, so no request is ever refused or stranded for a missing schedule."""
    if limit.unit != "working_days":
        return limit.due(start), False
    due = due_date(start, limit.count)
    return due.on, due.provisional


async def confirm_provisional_deadlines(ctx: HandlerContext) -> int:
    """Accident-filing deadlines counted past the holiday schedules are counted again once
    the year's schedule is there (the filing was accepted either way)."""
    confirmed = 0
    for row in await repo.provisional_accident_filings(ctx.conn):
        detail = row["detail"]
        due = due_date(row["start_date"], int(detail["limit"]["count"]))
        if due.provisional:
            continue
        await repo.set_filing_detail(ctx.conn, row["filing_id"], detail | {
            "deadline": due.on.isoformat(), "deadline_provisional": False})
        await repo.record_history(ctx.conn, row["person_id"], row["filing_id"],
                                  "accident deadline confirmed", {"deadline": due.on},
                                  ctx.cause.id, ctx.cause.type)
        confirmed += 1
    return confirmed


def _book(ctx: HandlerContext) -> PolicyBook:
    if ctx.policy is not None:
        return ctx.policy  # type: ignore[no-any-return]
    settings = _settings(ctx)
    return PolicyBook.load(ctx.region, settings.policy_folders())


async def _await_policy(ctx: HandlerContext, env: Envelope, reference: str,
                        person_id: str | None, missing: NoPolicyInForce) -> None:
    """No policy version covers the fact's day: the request waits, whole and visible, and is
    decided by the same handler once the agency adds the policy (never with another
    period's rules)."""
    await repo.save_awaiting_policy(ctx.conn, env.id, env.type, person_id, reference,
                                    env.to_bytes(), ctx.received_at, missing.day, str(missing))
    if person_id is not None:
        await repo.record_history(ctx.conn, person_id, reference, "awaiting policy",
                                  {"reason": str(missing), "day": missing.day}, env.id,
                                  env.type)


async def resume_awaiting_policy(ctx: HandlerContext, book: PolicyBook, limit: int = 200) -> int:
    """Requests that waited for a policy whose day is now covered are decided, with the
    date of receipt they had."""
    resumed = 0
    for row in await repo.awaiting_policy(ctx.conn, limit):
        if book.version_on(row["fact_date"]) is None:
            continue
        envelope, payload = parse_event(bytes(row["envelope"]))
        handler = PER_EVENT[row["event_type"]]
        original = HandlerContext(ctx.conn, envelope, ctx.service, ctx.region, ctx.namespace,
                                  ctx.emitted, ctx.settings, row["received_at"], book)
        await repo.mark_resumed(ctx.conn, row["event_id"])
        await handler(original, envelope, payload)
        resumed += 1
    return resumed


# --- benefits: chronic disease, family aid (SPEC enrollment 6 and 7) ----------------------

async def on_chronic_applied(ctx: HandlerContext, env: Envelope,
                             cmd: ChronicDiseaseApplied) -> None:
    own = await _own_case_id(ctx, cmd.application_id, cmd.person_id)
    if own is None:
        return
    channel_ref = _channel_ref(own, cmd.application_id)
    cmd = cmd.model_copy(update={"application_id": own})
    person = await repo.load_person(ctx.conn, cmd.person_id)
    current = await repo.recognition(ctx.conn, cmd.person_id, cmd.disease)
    try:
        today = _received_on(ctx, cmd.submitted_at)
        benefits.check_chronic_application(cmd, person, current)
        book = _book(ctx)
        change_rule = book.chronic_change_rule(today) if cmd.action == "change_institution" \
            else None
        postponed = book.recognition_postponement(today) if change_rule is None else None
    except RuleViolation as err:
        return await _reject(ctx, cmd.application_id, cmd.person_id, err)
    except NoPolicyInForce as missing:
        return await _await_policy(ctx, env, cmd.application_id, cmd.person_id, missing)
    if change_rule is not None:
        # At once, or from the 1st of next month after a reimbursement this month [002 六].
        effective = change_rule.value.effective_on(today, cmd.reimbursed_this_month)
        await repo.record_history(ctx.conn, cmd.person_id, cmd.application_id,
                                  "institution change accepted",
                                  {"effective_from": effective,
                                   "policy": change_rule.record()}, env.id, env.type)
        if effective > today:
            # The present institution stays designated until the change takes effect.
            await repo.schedule_institution_change(ctx.conn, cmd.person_id, cmd.disease,
                                                   cmd.institution_code, effective)
        else:
            await repo.save_recognition(ctx.conn, cmd.person_id, cmd.disease,
                                        cmd.institution_code, effective, False)
        await repo.save_case(ctx.conn, cmd.application_id, "chronic_change", cmd.person_id,
                             "approved", cmd.model_dump(mode="json"), [], channel_ref)
        ctx.emit(DesignatedInstitutionChanged(
            application_id=cmd.application_id, person_id=cmd.person_id, disease=cmd.disease,
            institution_code=cmd.institution_code, effective_from=effective), key=cmd.person_id)
        return
    data = cmd.model_dump(mode="json")
    if postponed is not None and not postponed.value.is_urgent(cmd.disease):
        # Recognition postponed by an emergency measure, except the urgent kinds [002 八].
        data["review_from"] = postponed.value.recognition_from(today, cmd.disease).isoformat()
        data["postponement"] = postponed.record()
        await repo.record_history(ctx.conn, cmd.person_id, cmd.application_id,
                                  "recognition postponed",
                                  {"review_from": data["review_from"],
                                   "policy": postponed.record()}, env.id, env.type)
    await repo.save_case(ctx.conn, cmd.application_id, "chronic_recognition", cmd.person_id,
                         "submitted", data, [], channel_ref)


async def on_chronic_reviewed(ctx: HandlerContext, env: Envelope,
                              cmd: ChronicDiseaseReviewed) -> None:
    reviewed = await _reviewed_case(ctx, cmd, "chronic_recognition", cmd.person_id,
                                    cmd.person_id)
    if reviewed is None:
        return
    case_id, data, reasons = reviewed
    cmd = cmd.model_copy(update={"application_id": case_id})
    effective = _today(ctx)
    review_from = data.get("review_from")
    if review_from and effective < date.fromisoformat(review_from):
        return await _reject(ctx, cmd.application_id, cmd.person_id, RuleViolation(
            "recognition_postponed", f"decided_at: recognition of {data['disease']} is "
            f"postponed by measure {data['postponement']['measure']} until {review_from}"))
    approved = cmd.decision == "approve"
    await repo.save_case(ctx.conn, cmd.application_id, "chronic_recognition", cmd.person_id,
                         "approved" if approved else "rejected", {}, reasons)
    await _decision_recorded(ctx, env, cmd.person_id, cmd.application_id, approved, reasons)
    if not approved:
        return await _reject(ctx, cmd.application_id, cmd.person_id,
                       RuleViolation("chronic_rejected", "；".join(reasons)))
    await repo.save_recognition(ctx.conn, cmd.person_id, data["disease"],
                                data["institution_code"], effective, False)
    ctx.emit(ChronicDiseaseRecognised(
        reference=cmd.application_id, person_id=cmd.person_id, disease=data["disease"],
        institution_code=data["institution_code"], effective_from=effective,
        without_application=False,
        prescription_months=_prescription_months(ctx, effective, data["disease"])),
        key=cmd.person_id)


def _prescription_months(ctx: HandlerContext, day: date, disease: str) -> int | None:
    """The longest prescription the policy in force allows (told with the recognition)."""
    try:
        return _book(ctx).prescription_limit(day, disease).value
    except NoPolicyInForce:
        return None


async def on_treatment_recorded(ctx: HandlerContext, env: Envelope,
                                cmd: TreatmentRecorded) -> None:
    disease = benefits.AUTOMATIC_RECOGNITION[cmd.treatment]
    person = await repo.load_person(ctx.conn, cmd.person_id)
    if person is None or person.status != InsuredStatus.ACTIVE:
        return  # not insured here: the hospital's record grants nothing
    if await repo.recognition(ctx.conn, cmd.person_id, disease) is not None:
        return
    await repo.save_recognition(ctx.conn, cmd.person_id, disease, cmd.hospital_code,
                                cmd.treated_on, True)
    ctx.emit(ChronicDiseaseRecognised(
        reference=cmd.treatment_id, person_id=cmd.person_id, disease=disease,
        institution_code=cmd.hospital_code, effective_from=cmd.treated_on,
        without_application=True,
        prescription_months=_prescription_months(ctx, cmd.treated_on, disease)),
        key=cmd.person_id)


async def on_family_aid_authorised(ctx: HandlerContext, env: Envelope,
                                   cmd: FamilyAidAuthorised) -> None:
    person = await repo.load_person(ctx.conn, cmd.person_id)
    try:
        benefits.check_family_aid(cmd, person, ctx.region)
    except RuleViolation as err:
        return await _reject(ctx, cmd.authorisation_id, cmd.person_id, err)
    await repo.save_family_aid(ctx.conn, cmd.authorisation_id, cmd.person_id, cmd.relative_id,
                               cmd.relationship, "active")
    await repo.record_history(ctx.conn, cmd.person_id, cmd.authorisation_id,
                              "family aid authorised", {"relationship": cmd.relationship},
                              env.id, env.type)
    ctx.emit(FamilyAidAccepted(authorisation_id=cmd.authorisation_id, person_id=cmd.person_id,
                               relative_id=cmd.relative_id, relationship=cmd.relationship),
             key=cmd.person_id)


async def on_family_aid_revoked(ctx: HandlerContext, env: Envelope,
                                cmd: FamilyAidRevoked) -> None:
    if not await repo.holds_family_aid(ctx.conn, cmd.authorisation_id, cmd.person_id):
        return await _reject(ctx, cmd.authorisation_id, cmd.person_id, RuleViolation(
            "no_authorisation", "authorisation_id: no active authorisation of this person"))
    await repo.end_family_aid(ctx.conn, [cmd.authorisation_id])
    ctx.emit(FamilyAidEnded(authorisation_id=cmd.authorisation_id, person_id=cmd.person_id,
                            reason="授权人已撤销授权"), key=cmd.person_id)


async def on_transfer_completed(ctx: HandlerContext, env: Envelope,
                                event: TransferCompleted) -> None:
    """The transfer service here completed a transfer-out: the person is transferred_out."""
    if event.from_region != ctx.region:
        return
    person = await repo.load_person(ctx.conn, event.person_id)
    try:
        change = lifecycle.record_transfer_out(person, event.transfer_id, event.to_region,
                                               event.completed_on)
    except RuleViolation as err:
        return await _reject(ctx, event.transfer_id, event.person_id, err)
    if change is None or person is None:
        return
    await repo.save_person(ctx.conn, person)
    await _change_side_effects(ctx, env, person.person_id, change)
    before = await repo.load_periods(ctx.conn, person.person_id)
    await _save_coverage(ctx, env, person.person_id, before,
                         coverage.end_all(before, event.completed_on),
                         f"医保关系已转往{event.to_region}（转移编号{event.transfer_id}）")


async def on_coverage_end_requested(ctx: HandlerContext, env: Envelope,
                                    event: CoverageEndRequested) -> None:
    """An automatic intra-province transfer: the person is insured in the new region from the
    day after `last_day`, so coverage here ends that day and the person is suspended (the
    transfer-out then starts by itself): neither a gap nor an overlap."""
    if event.from_region != ctx.region:
        return
    person = await repo.load_person(ctx.conn, event.person_id)
    if person is None:
        return
    before = await repo.load_periods(ctx.conn, event.person_id)
    cause = (f"自{event.last_day + timedelta(days=1)}起在{event.to_region}参保"
             f"（转移编号{event.transfer_id}）")
    await _save_coverage(ctx, env, event.person_id, before,
                         coverage.end_all(before, event.last_day), cause)
    change = lifecycle.end_coverage_here(person, event.last_day, _today(ctx), cause)
    await repo.save_person(ctx.conn, person)
    if change is not None:
        await _change_side_effects(ctx, env, event.person_id, change)
    elif person.status == InsuredStatus.ACTIVE:
        await repo.schedule_change(ctx.conn, event.person_id, InsuredStatus.SUSPENDED.value,
                                   event.last_day + timedelta(days=1), env.id,
                                   env.correlationid)


async def on_transfer_in_completed(ctx: HandlerContext, env: Envelope,
                                   event: TransferInCompleted) -> None:
    """This region took the person in: the months and balance are credited to their record."""
    if event.to_region != ctx.region:
        return
    accepted_on = event.accepted_on or _today(ctx)
    if not await repo.save_transfer_credit(
            ctx.conn, event.transfer_id, event.person_id, event.from_region,
            event.insurance_type, event.credited_months, event.credited_balance_fen,
            accepted_on, event.mode):
        return
    await repo.record_history(ctx.conn, event.person_id, event.transfer_id,
                              "transfer-in credited",
                              {"from_region": event.from_region,
                               "credited_months": event.credited_months,
                               "credited_balance_fen": event.credited_balance_fen,
                               "mode": event.mode}, env.id, env.type)


PER_EVENT.update({
    CoverageEndRequested.event_type: on_coverage_end_requested,
    TransferInCompleted.event_type: on_transfer_in_completed,
    TransferCompleted.event_type: on_transfer_completed,
    StopContributionRequested.event_type: on_stop_requested,
    EmployerRegistered.event_type: on_employer_registered,
    EmployerRosterSubmitted.event_type: on_roster,
    CivilServantBenefitApplied.event_type: on_civil_servant_applied,
    CivilServantBenefitReviewed.event_type: on_civil_servant_reviewed,
    DeathRecorded.event_type: on_death_recorded,
    DeathCancellationApplied.event_type: on_death_cancellation_applied,
    DeathCancellationReviewed.event_type: on_death_cancellation_reviewed,
    RemoteTreatmentFilingApplied.event_type: on_remote_filing,
    RemoteTreatmentFilingEnded.event_type: on_remote_filing_ended,
    EmergencyAdmissionFlagged.event_type: on_emergency_admission,
    AccidentInjuryFiled.event_type: on_accident_filed,
    ChronicDiseaseApplied.event_type: on_chronic_applied,
    ChronicDiseaseReviewed.event_type: on_chronic_reviewed,
    TreatmentRecorded.event_type: on_treatment_recorded,
    FamilyAidAuthorised.event_type: on_family_aid_authorised,
    FamilyAidRevoked.event_type: on_family_aid_revoked,
})


def _then_decide_early(handler: Handler) -> Handler:
    """After an application or case is handled (taken or refused), the decisions that arrived
    before it are decided by their own handler."""
    async def run(ctx: HandlerContext, env: Envelope, cmd: Any) -> None:
        await handler(ctx, env, cmd)
        await _resume_early_decisions(ctx, cmd.application_id, getattr(cmd, "person_id", None))
    return run


for _applied in (EnrollmentApplicationSubmitted, CivilServantBenefitApplied,
                 DeathCancellationApplied, ChronicDiseaseApplied):
    PER_EVENT[_applied.event_type] = _then_decide_early(PER_EVENT[_applied.event_type])
# The other kinds stay one event at a time; the main ones are set-based (their per-event
# forms above give the same results).
ROUTES.update({t: h for t, h in PER_EVENT.items() if t not in ROUTES})
