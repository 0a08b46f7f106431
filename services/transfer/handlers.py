"""Transfer handlers: requests and office commands here, partner messages, enrollment's news."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from structlog.contextvars import bound_contextvars

from services.transfer import repository as repo
from services.transfer.domain import transfer as rules
from services.transfer.domain.deadlines import Clock, DeadlineRules
from services.transfer.domain.transfer import Answer, Stage, Transfer, TransferRefused
from services.transfer.metrics import ANSWERS_IGNORED, set_overdue
from services.transfer.work import Needs, Work
from shared.clock import SenderClockError
from shared.contracts import Envelope
from shared.contracts.channels import TransferOutRequested
from shared.contracts.common import own_reference
from shared.contracts.enrollment import InsuredStatusChanged, PersonDeceased
from shared.contracts.envelope import derived_id
from shared.contracts.partner import (
    PartnerPersonEnrolled,
    PartnerTransferAcknowledged,
    PartnerTransferCancelled,
    PartnerTransferOut,
    PartnerTransferRejected,
)
from shared.contracts.transfer import (
    CoverageEndRequested,
    TransferCancelled,
    TransferCommandRefused,
    TransferCompleted,
    TransferDispatched,
    TransferDueDateUpdated,
    TransferFailed,
    TransferInCompleted,
    TransferOverdue,
    TransferRequestReceived,
    TransferRequestRejected,
)
from shared.contracts.transfer_office import (
    PaperTransferInRecorded,
    TransferCommand,
    TransferFundsReceived,
    TransferInfoSheetIssued,
    TransferLetterTracked,
    TransferMaterialsRequested,
    TransferMaterialsSupplied,
    TransferPaperReplyRecorded,
)
from shared.identity import same_province
from shared.messaging.consumer import BatchItem, Handler, HandlerContext, batch_handler
from shared.observability.logging import get_logger
from shared.policy import NoPolicyInForce
from shared.settings import TransferSettings
from shared.workdays import ScheduleFileError, default_calendar, refresh_days_left

log = get_logger(__name__)


def _settings(ctx: HandlerContext) -> TransferSettings:
    if isinstance(ctx.settings, TransferSettings):
        return ctx.settings
    return TransferSettings(region=ctx.region, namespace=ctx.namespace)


def deadline_rules(settings: TransferSettings) -> DeadlineRules:
    return DeadlineRules(
        cross_province=Clock(settings.total_days_cross_province,
                                   settings.out_leg_days_cross_province,
                                   settings.in_leg_days_cross_province),
        intra_province=Clock(settings.total_days_intra_province,
                                   settings.out_leg_days_intra_province,
                                   settings.in_leg_days_intra_province))


def _clock(ctx: HandlerContext, from_region: str, to_region: str, day: date) -> Clock:
    """The statutory clocks of the policy book in force on the transfer's first day (notice
    003's 15 / 9 working days and the practice legs); the settings' figures where the book
    has no version that day, said in the log."""
    fallback = deadline_rules(_settings(ctx)).clock_for(from_region, to_region)
    if ctx.policy is None:
        return fallback
    try:
        applied = ctx.policy.transfer_deadlines(day)
    except NoPolicyInForce:
        log.warning("no policy version in force: transfer deadlines from settings",
                    day=day.isoformat(), region=ctx.region)
        return fallback
    same = same_province(from_region, to_region)
    out_leg, in_leg = applied.value.legs(same)
    return Clock(applied.value.total(same), out_leg, in_leg, source=(
        f"policy {applied.policy_version}, measure {applied.measure_id}"))


def _refuse_command(ctx: HandlerContext, cmd: TransferCommand, err: TransferRefused) -> None:
    log.warning("transfer command refused", transfer_id=cmd.transfer_id,
                person_id=cmd.person_id, rule=err.rule, reason=err.reason)
    ctx.emit(TransferCommandRefused(transfer_id=cmd.transfer_id, person_id=cmd.person_id,
                                    command=ctx.cause.type, rule=err.rule, reason=err.reason),
             key=cmd.person_id)


def _event_fields(t: Transfer) -> dict[str, str]:
    return {"transfer_id": t.transfer_id, "person_id": t.person_id,
            "from_region": t.from_region, "to_region": t.to_region}


def _due_note(t: Transfer) -> str:
    if t.due_provisional and t.started_on and t.due_on:
        missing = default_calendar().missing_years(t.started_on, t.due_on)
        due = (f"due {t.due_on}, provisional: counted without the holiday schedule of "
               f"{', '.join(map(str, missing))}; recounted when it is added")
    else:
        due = f"due {t.due_on}"
    return f"{due} ({t.total_days} working days by {t.clock_source})" if t.clock_source else due


def _received(ctx: HandlerContext, t: Transfer) -> None:
    """The person hears the due date; a provisional one reads the same to them (the count
    past the schedule only takes weekends off) and is corrected, if needed, when recounted."""
    assert t.due_on is not None
    ctx.emit(TransferRequestReceived(**_event_fields(t), trigger=t.trigger,  # type: ignore[arg-type]
                                     due_on=t.due_on, due_provisional=t.due_provisional),
             key=t.person_id)


def _filed_on(ctx: HandlerContext, cmd: TransferCommand, claimed: object, name: str) -> date:
    """The platform's date of receipt; an office timestamp in the future is refused."""
    try:
        return ctx.filed_on(claimed, name)  # type: ignore[arg-type]
    except SenderClockError as err:
        raise TransferRefused(err.rule, err.reason) from None


# --- set-based handling ----------------------------------------------------------------------
# Each event type below is handled a group at a time (shared.messaging.consumer.batch_handler):
# what the group reads is loaded at once into a unit of work, each event is decided against
# it in order (a later event sees what an earlier one did), and the writes go out once. A
# group of one is how an event alone, or one redone after its group failed, is handled.

NeedsOf = Callable[[Needs, HandlerContext, Envelope, Any], None]
Decide = Callable[[Work, HandlerContext, Envelope, Any], None]


def _set_based(needs_of: NeedsOf, decide: Decide) -> Handler:
    @batch_handler
    async def handle(items: list[BatchItem]) -> None:
        needs = Needs()
        for ctx, env, payload in items:
            needs_of(needs, ctx, env, payload)
        work = await Work.load(items[0][0].conn, needs)
        for ctx, env, payload in items:
            # Each event's own id in what its decision logs, as when handled alone.
            with bound_contextvars(event_id=env.id, correlation_id=env.correlationid):
                decide(work, ctx, env, payload)
        await work.flush()

    handle.__name__ = handle.__qualname__ = f"on{decide.__name__}_all"
    return handle


def _keep(work: Work, ctx: HandlerContext, t: Transfer, note: str | None) -> None:
    work.save(t, note, ctx.cause.id)


# --- enrollment's news -----------------------------------------------------------------------

def _status_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                  event: InsuredStatusChanged) -> None:
    needs.insured.add(event.person_id)
    needs.transfers_of.add(event.person_id)
    needs.writes_insured = True


def _status_changed(work: Work, ctx: HandlerContext, env: Envelope,
                    event: InsuredStatusChanged) -> None:
    work.set_insured(event.person_id, event.insurance_type, event.to_status)
    if event.to_status == "active" and event.from_status != "active":
        _announce_enrollment(ctx, event)
    if event.to_status == "suspended":
        for t in work.awaiting_suspension(event.person_id):
            rules.start_clocks(t, ctx.filed_on(), _clock(ctx, t.from_region, t.to_region,
                                                         ctx.filed_on()), default_calendar())
            _keep(work, ctx, t, "contributions here stopped: the automatic transfer starts; "
                  + _due_note(t))
            _received(ctx, t)


def _announce_enrollment(ctx: HandlerContext, event: InsuredStatusChanged) -> None:
    """SPEC transfer 5 (免申即享): tell the province's other regions, which start the transfer
    themselves if they still hold the person's insurance."""
    for partner in sorted(_settings(ctx).interconnected()):
        if same_province(partner, ctx.region):
            ctx.emit(PartnerPersonEnrolled(person_id=event.person_id, region=ctx.region,
                                           insurance_type=event.insurance_type,
                                           active_since=event.effective_on),
                     key=event.person_id, region=partner)


def _deceased_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                    event: PersonDeceased) -> None:
    needs.transfers_of.add(event.person_id)


def _person_deceased(work: Work, ctx: HandlerContext, env: Envelope,
                     event: PersonDeceased) -> None:
    """Death ends the person's open transfers here and, by message, at the partner."""
    today = ctx.filed_on()
    for t in work.open_transfers_of(event.person_id):
        reason = f"the person died on {event.date_of_death.isoformat()}"
        partner_knows = rules.partner_involved(t)
        rules.cancel(t, reason, today)
        _keep(work, ctx, t, reason)
        ctx.emit(TransferCancelled(**_event_fields(t), direction=t.direction,  # type: ignore[arg-type]
                                   reason=reason), key=t.person_id)
        if partner_knows:
            ctx.emit(PartnerTransferCancelled(**_event_fields(t), reason=reason),
                     key=t.person_id, region=t.partner)


on_status_changed_all = _set_based(_status_needs, _status_changed)
on_person_deceased_all = _set_based(_deceased_needs, _person_deceased)


# --- transfer-out in this region (A) ---------------------------------------------------------

def _suffixed_id(env: Envelope, cmd: TransferOutRequested) -> str:
    """The id this request takes if another person's transfer has its reference."""
    return own_reference(cmd.transfer_id, env.id)


def _request_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                   cmd: TransferOutRequested) -> None:
    needs.identities.add(("out", ctx.region, cmd.transfer_id))
    needs.identities.add(("out", ctx.region, _suffixed_id(env, cmd)))
    needs.requests.add((cmd.person_id, cmd.transfer_id))
    needs.region = ctx.region
    needs.insured.add(cmd.person_id)
    needs.transfers_of.add(cmd.person_id)


def _transfer_requested(work: Work, ctx: HandlerContext, env: Envelope,
                        cmd: TransferOutRequested) -> None:
    # The channel's reference is unique per person only: the same number from another
    # person is another request, which gets a transfer id of its own.
    if work.has_request(cmd.person_id, cmd.transfer_id):
        return  # the same request again under a new event id
    taken = work.transfer("out", cmd.transfer_id, ctx.region) is not None
    transfer_id = _suffixed_id(env, cmd) if taken else cmd.transfer_id
    if taken and work.transfer("out", transfer_id, ctx.region) is not None:
        return  # this very event handled before (its suffix is its own)
    status, insurance_type = work.insured(cmd.person_id)
    today = ctx.filed_on()
    try:
        try:
            today = ctx.filed_on(cmd.requested_at, "requested_at")
        except SenderClockError as err:
            log.warning("transfer request dated in the future", transfer_id=cmd.transfer_id,
                        person_id=cmd.person_id, reason=err.reason)
            # The channel's clock is wrong, not the person: they are told plainly.
            raise TransferRefused(err.rule, "申请时间晚于平台收到申请的时间，未能受理，"
                                  "请重新提交申请") from None
        t = rules.request_transfer_out(
            transfer_id, cmd.person_id, status, insurance_type, ctx.region, cmd.to_region,
            today, _clock(ctx, ctx.region, cmd.to_region, today),
            default_calendar(), one_open=bool(work.open_transfers_of(cmd.person_id)))
    except TransferRefused as refused:
        t = Transfer(transfer_id, cmd.person_id, "out", ctx.region, cmd.to_region,
                     Stage.REFUSED, reason=refused.reason, completed_on=today,
                     channel_ref=cmd.transfer_id)
        _keep(work, ctx, t, refused.reason)
        ctx.emit(TransferRequestRejected(transfer_id=transfer_id, person_id=cmd.person_id,
                                         reason=refused.reason, rule=refused.rule),
                 key=cmd.person_id)
        return
    t.channel_ref = cmd.transfer_id
    named = (f"; the channel's reference {cmd.transfer_id} is another person's transfer "
             f"here, so this one is {transfer_id}" if taken else "")
    _keep(work, ctx, t, f"accepted ({cmd.channel}){named}; {_due_note(t)}")
    _received(ctx, t)


on_transfer_requested_all = _set_based(_request_needs, _transfer_requested)


def _enrolled_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                    msg: PartnerPersonEnrolled) -> None:
    needs.insured.add(msg.person_id)
    needs.transfers_of.add(msg.person_id)


def _person_enrolled_elsewhere(work: Work, ctx: HandlerContext, env: Envelope,
                               msg: PartnerPersonEnrolled) -> None:
    """A region of this province took the person in: start the transfer to it unasked."""
    if msg.region == ctx.region or not same_province(msg.region, ctx.region):
        return
    if work.has_transfer_between(msg.person_id, msg.region):
        return
    status, insurance_type = work.insured(msg.person_id)
    t = rules.start_automatic(f"AUTO-{ctx.region}-{derived_id(env.id)[:18]}", msg.person_id,
                              status, insurance_type, ctx.region, msg.region,
                              ctx.filed_on(), _clock(ctx, ctx.region, msg.region,
                                                     ctx.filed_on()),
                              default_calendar())
    if t is None:
        return
    t.partner_active_since = msg.active_since
    if t.stage == Stage.AWAITING_SUSPENSION:
        # Insured in both: coverage here ends the day before it began there (no gap, no
        # overlap); enrollment suspends the person and the transfer then starts by itself.
        last_day = rules.coverage_last_day(msg.active_since, ctx.filed_on())
        overlap = (f"; insured in both from {msg.active_since} to {last_day}, to be settled "
                   "by the offices" if last_day >= msg.active_since else "")
        _keep(work, ctx, t, f"active in {msg.region} since {msg.active_since}: coverage here "
                            f"ends {last_day}{overlap}; the transfer starts once it has")
        ctx.emit(CoverageEndRequested(**_event_fields(t), last_day=last_day), key=t.person_id)
        return
    _keep(work, ctx, t, f"started without application: the person is active in {msg.region}; "
                        + _due_note(t))
    _received(ctx, t)


on_person_enrolled_elsewhere_all = _set_based(_enrolled_needs, _person_enrolled_elsewhere)


def _command_identity(ctx: HandlerContext, cmd: TransferCommand) -> tuple[str, str, str]:
    """(direction, from_region, transfer_id) an office command names: here's transfer-out,
    or a transfer-in from `from_region`."""
    direction = "in" if cmd.from_region and cmd.from_region != ctx.region else "out"
    return (direction, cmd.from_region or ctx.region, cmd.transfer_id)


def _command_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                   cmd: TransferCommand) -> None:
    needs.identities.add(_command_identity(ctx, cmd))


def _load_for(work: Work, ctx: HandlerContext, cmd: TransferCommand) -> Transfer:
    """The transfer an office command names."""
    direction, from_region, transfer_id = _command_identity(ctx, cmd)
    t = work.transfer(direction, transfer_id, from_region)
    if t is None or t.person_id != cmd.person_id:
        raise TransferRefused("unknown_transfer",
                              f"transfer_id: no transfer {cmd.transfer_id} of this person here")
    return t


def _info_sheet(work: Work, ctx: HandlerContext, env: Envelope,
                cmd: TransferInfoSheetIssued) -> None:
    try:
        t = _load_for(work, ctx, cmd)
        rules.issue_info_sheet(t, cmd.name, cmd.contribution_months, cmd.account_balance_fen,
                               _settings(ctx).interconnected(),
                               _filed_on(ctx, cmd, cmd.issued_at, "issued_at"))
    except TransferRefused as err:
        return _refuse_command(ctx, cmd, err)
    _keep(work, ctx, t, f"information sheet issued: {t.contribution_months} months, "
                        f"{t.account_balance_fen} fen; {t.mode}")
    ctx.emit(TransferDispatched(**_event_fields(t), mode=t.mode,  # type: ignore[arg-type]
                                contribution_months=cmd.contribution_months,
                                account_balance_fen=cmd.account_balance_fen), key=t.person_id)
    if t.mode == "electronic":
        assert t.started_on and t.due_on and t.in_leg_days and t.insurance_type
        ctx.emit(PartnerTransferOut(
            **_event_fields(t), name=cmd.name, insurance_type=t.insurance_type,  # type: ignore[arg-type]
            contribution_months=cmd.contribution_months,
            account_balance_fen=cmd.account_balance_fen, trigger=t.trigger,  # type: ignore[arg-type]
            started_on=t.started_on, due_on=t.due_on, in_leg_days=t.in_leg_days),
            key=t.person_id, region=t.to_region)


on_info_sheet_all = _set_based(_command_needs, _info_sheet)


def _materials_requested(work: Work, ctx: HandlerContext, env: Envelope,
                         cmd: TransferMaterialsRequested) -> None:
    try:
        t = _load_for(work, ctx, cmd)
        rules.pause(t, _filed_on(ctx, cmd, cmd.requested_at, "requested_at"))
    except TransferRefused as err:
        return _refuse_command(ctx, cmd, err)
    _keep(work, ctx, t, "waiting on the person for: " + "; ".join(cmd.missing))


on_materials_requested_all = _set_based(_command_needs, _materials_requested)


def _materials_supplied(work: Work, ctx: HandlerContext, env: Envelope,
                        cmd: TransferMaterialsSupplied) -> None:
    try:
        t = _load_for(work, ctx, cmd)
        lost = rules.resume(t, _filed_on(ctx, cmd, cmd.supplied_at, "supplied_at"),
                            default_calendar())
    except TransferRefused as err:
        return _refuse_command(ctx, cmd, err)
    _keep(work, ctx, t, f"material supplied; clocks ran again after {lost} working days "
                        f"stopped; due {t.due_on or t.leg_due_on}")


on_materials_supplied_all = _set_based(_command_needs, _materials_supplied)


def _letter_tracked(work: Work, ctx: HandlerContext, env: Envelope,
                    cmd: TransferLetterTracked) -> None:
    try:
        t = _load_for(work, ctx, cmd)
        rules.track_letter(t, cmd.tracking_number, cmd.mail_event,
                           _filed_on(ctx, cmd, cmd.occurred_at, "occurred_at"))
    except TransferRefused as err:
        return _refuse_command(ctx, cmd, err)
    _keep(work, ctx, t, f"contact letter {cmd.mail_event} (registered mail "
                        f"{cmd.tracking_number})")


on_letter_tracked_all = _set_based(_command_needs, _letter_tracked)


# --- answers from the partner (B) ------------------------------------------------------------

def _apply_answer(work: Work, ctx: HandlerContext, env: Envelope, transfer_id: str,
                  answer: Answer, t: Transfer | None) -> None:
    ignored = rules.apply_answer(t, answer, ctx.filed_on())
    if ignored is not None:
        ANSWERS_IGNORED.labels(ignored.reason).inc()
        log.warning("transfer answer ignored", transfer_id=transfer_id, reason=ignored.reason,
                    detail=ignored.detail, sender=answer.sender, event_id=env.id,
                    person_id=t.person_id if t else None)
        work.ignore(env.id, transfer_id, answer.sender, ignored.reason, ignored.detail)
        return
    assert t is not None
    if t.stage == Stage.FAILED:
        _keep(work, ctx, t, f"the partner refused: {t.reason}")
        ctx.emit(TransferFailed(**_event_fields(t), reason=t.reason or ""), key=t.person_id)
        return
    _keep(work, ctx, t, f"the partner credited {t.credited_months} months, "
                        f"{t.credited_balance_fen} fen: reconciled")
    assert t.completed_on and t.account_balance_fen is not None
    ctx.emit(TransferCompleted(**_event_fields(t), contribution_months=t.credited_months or 0,
                               account_balance_fen=t.account_balance_fen,
                               completed_on=t.completed_on), key=t.person_id)


def _addressed_here(ctx: HandlerContext, env: Envelope, from_region: str) -> None:
    if from_region != ctx.region:
        raise ValueError(f"data.from_region: this answer is for {from_region}, "
                         f"not this region {ctx.region}")


def _answer_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                  msg: PartnerTransferAcknowledged | PartnerTransferRejected
                  | TransferPaperReplyRecorded) -> None:
    needs.identities.add(("out", ctx.region, msg.transfer_id))


def _partner_acknowledged(work: Work, ctx: HandlerContext, env: Envelope,
                          msg: PartnerTransferAcknowledged) -> None:
    _addressed_here(ctx, env, msg.from_region)
    _apply_answer(work, ctx, env, msg.transfer_id, Answer(
        env.regioncode, True, msg.credited_months, msg.credited_balance_fen),
        work.transfer("out", msg.transfer_id, ctx.region))


on_partner_acknowledged_all = _set_based(_answer_needs, _partner_acknowledged)


def _partner_rejected(work: Work, ctx: HandlerContext, env: Envelope,
                      msg: PartnerTransferRejected) -> None:
    _addressed_here(ctx, env, msg.from_region)
    _apply_answer(work, ctx, env, msg.transfer_id,
                  Answer(env.regioncode, False, reason=msg.reason),
                  work.transfer("out", msg.transfer_id, ctx.region))


on_partner_rejected_all = _set_based(_answer_needs, _partner_rejected)


def _paper_reply(work: Work, ctx: HandlerContext, env: Envelope,
                 cmd: TransferPaperReplyRecorded) -> None:
    t = work.transfer("out", cmd.transfer_id, ctx.region)
    if t is None or t.mode != "paper":
        return _refuse_command(ctx, cmd, TransferRefused(
            "unknown_transfer", f"transfer_id: no paper transfer {cmd.transfer_id} here"))
    _apply_answer(work, ctx, env, cmd.transfer_id, Answer(
        t.to_region, cmd.accepted, cmd.credited_months, cmd.credited_balance_fen, cmd.reason), t)


on_paper_reply_all = _set_based(_answer_needs, _paper_reply)


# --- transfer-in in this region (B) ----------------------------------------------------------

def _transfer_in_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                       msg: PartnerTransferOut | PaperTransferInRecorded) -> None:
    needs.identities.add(("in", msg.from_region, msg.transfer_id))
    needs.insured.add(msg.person_id)


def _partner_transfer_out(work: Work, ctx: HandlerContext, env: Envelope,
                          msg: PartnerTransferOut) -> None:
    if msg.to_region != ctx.region:
        # Only what is addressed to this region is taken in; the rest goes to dead letters.
        raise ValueError(f"data.to_region: addressed to {msg.to_region}, this is {ctx.region}")
    if work.transfer("in", msg.transfer_id, msg.from_region) is not None:
        ANSWERS_IGNORED.labels("duplicate").inc()
        log.warning("transfer-out received twice", transfer_id=msg.transfer_id,
                    person_id=msg.person_id, sender=env.regioncode)
        work.ignore(env.id, msg.transfer_id, env.regioncode, "duplicate",
                    "this transfer-out was already taken in")
        return
    status, _ = work.insured(msg.person_id)
    t = rules.receive_transfer_in(msg.transfer_id, msg.person_id, msg.from_region, ctx.region,
                                  status, msg.contribution_months, msg.account_balance_fen,
                                  msg.in_leg_days, ctx.filed_on(), default_calendar())
    t.insurance_type, t.name, t.trigger, t.due_on = (msg.insurance_type, msg.name, msg.trigger,
                                                     msg.due_on)
    if t.stage == Stage.REFUSED:
        _keep(work, ctx, t, t.reason)
        ctx.emit(PartnerTransferRejected(**_event_fields(t), rule="not_active",
                                         reason=t.reason or ""),
                 key=t.person_id, region=t.from_region)
        return
    _keep(work, ctx, t, f"received from {t.from_region}: {t.contribution_months} months, "
                        f"{t.account_balance_fen} fen; leg due {t.leg_due_on}")
    if t.stage == Stage.COMPLETED:
        _acknowledge(ctx, t)


on_partner_transfer_out_all = _set_based(_transfer_in_needs, _partner_transfer_out)


def _acknowledge(ctx: HandlerContext, t: Transfer) -> None:
    """The merge is done: the partner hears it (a paper sender is answered by letter, by the
    office), and enrollment here credits the months and balance to the person."""
    assert t.completed_on is not None
    if t.mode == "electronic":
        ctx.emit(PartnerTransferAcknowledged(
            **_event_fields(t), credited_months=t.credited_months or 0,
            credited_balance_fen=t.credited_balance_fen or 0, accepted_on=t.completed_on),
            key=t.person_id, region=t.from_region)
    ctx.emit(TransferInCompleted(
        **_event_fields(t), credited_months=t.credited_months or 0,
        credited_balance_fen=t.credited_balance_fen or 0,
        insurance_type=t.insurance_type,  # type: ignore[arg-type]
        accepted_on=t.completed_on, mode=t.mode,  # type: ignore[arg-type]
        sent_months=t.contribution_months, sent_balance_fen=t.account_balance_fen,
        tracking_number=t.tracking_number), key=t.person_id)


def _paper_transfer_in(work: Work, ctx: HandlerContext, env: Envelope,
                       cmd: PaperTransferInRecorded) -> None:
    """A contact letter from a region that is not connected, keyed in by the office: the
    same transfer-in as an electronic one, answered by letter."""
    if cmd.from_region == ctx.region:
        return _refuse_command(ctx, cmd, TransferRefused(  # type: ignore[arg-type]
            "same_region", f"from_region: {cmd.from_region} is this region"))
    if work.transfer("in", cmd.transfer_id, cmd.from_region) is not None:
        return  # the same letter keyed in again
    try:
        today = _filed_on(ctx, cmd, cmd.received_at, "received_at")  # type: ignore[arg-type]
    except TransferRefused as err:
        return _refuse_command(ctx, cmd, err)  # type: ignore[arg-type]
    status, _ = work.insured(cmd.person_id)
    t = rules.receive_transfer_in(
        cmd.transfer_id, cmd.person_id, cmd.from_region, ctx.region, status,
        cmd.contribution_months, cmd.account_balance_fen,
        _clock(ctx, cmd.from_region, ctx.region, today).in_leg, today, default_calendar(),
        mode="paper", tracking_number=cmd.tracking_number)
    t.insurance_type, t.name = cmd.insurance_type, cmd.name
    if t.stage == Stage.REFUSED:
        _keep(work, ctx, t, t.reason)
        # The office answers the sender by letter with this reason.
        ctx.emit(TransferCommandRefused(transfer_id=t.transfer_id, person_id=t.person_id,
                                        command=env.type, rule="not_active",
                                        reason=t.reason or ""), key=t.person_id)
        return
    _keep(work, ctx, t, f"contact letter from {rules.region_name(t.from_region)} keyed in by "
                        f"{cmd.recorded_by} (registered mail {cmd.tracking_number}): "
                        f"{t.contribution_months} months, {t.account_balance_fen} fen; "
                        f"leg due {t.leg_due_on}")
    if t.stage == Stage.COMPLETED:
        _acknowledge(ctx, t)


on_paper_transfer_in_all = _set_based(_transfer_in_needs, _paper_transfer_in)


def _funds_received(work: Work, ctx: HandlerContext, env: Envelope,
                    cmd: TransferFundsReceived) -> None:
    try:
        t = _load_for(work, ctx, cmd)
        rules.confirm_funds(t, cmd.amount_fen, _filed_on(ctx, cmd, cmd.received_at,
                                                         "received_at"))
    except TransferRefused as err:
        return _refuse_command(ctx, cmd, err)
    _keep(work, ctx, t, f"balance of {cmd.amount_fen} fen arrived; records merged")
    _acknowledge(ctx, t)


on_funds_received_all = _set_based(_command_needs, _funds_received)


def _cancelled_identity(ctx: HandlerContext, env: Envelope,
                        msg: PartnerTransferCancelled) -> tuple[str, str, str] | None:
    """A cancels: our transfer-in; B cancels: our transfer-out; else none of ours."""
    sender = env.regioncode
    if sender == msg.from_region:
        return ("in", msg.from_region, msg.transfer_id)
    if sender == msg.to_region and msg.from_region == ctx.region:
        return ("out", ctx.region, msg.transfer_id)
    return None


def _cancelled_needs(needs: Needs, ctx: HandlerContext, env: Envelope,
                     msg: PartnerTransferCancelled) -> None:
    found = _cancelled_identity(ctx, env, msg)
    if found is not None:
        needs.identities.add(found)


def _partner_cancelled(work: Work, ctx: HandlerContext, env: Envelope,
                       msg: PartnerTransferCancelled) -> None:
    sender = env.regioncode
    found = _cancelled_identity(ctx, env, msg)
    t = work.transfer(found[0], found[2], found[1]) if found is not None else None
    if t is None or not rules.cancel(t, f"cancelled by {sender}: {msg.reason}",
                                     ctx.filed_on()):
        reason = "unknown_transfer" if t is None else "late"
        ANSWERS_IGNORED.labels(reason).inc()
        log.warning("transfer cancellation ignored", transfer_id=msg.transfer_id,
                    person_id=msg.person_id, sender=sender, reason=reason)
        work.ignore(env.id, msg.transfer_id, sender, reason,
                    "cancellation of a transfer that is not open here")
        return
    _keep(work, ctx, t, t.reason)
    ctx.emit(TransferCancelled(**_event_fields(t), direction=t.direction,  # type: ignore[arg-type]
                               reason=t.reason or ""), key=t.person_id)


on_partner_cancelled_all = _set_based(_cancelled_needs, _partner_cancelled)


# --- the statutory clocks (a timer) ----------------------------------------------------------

async def recount_provisional(ctx: HandlerContext, today: date) -> int:
    """Due dates counted past the holiday data, counted again: a schedule file added since
    makes them definitive (or moves them); each change is recorded and announced."""
    calendar = default_calendar()
    changed = 0
    for t in await repo.provisional_open(ctx.conn):
        before = (t.due_on, t.leg_due_on)
        if not rules.recount(t, calendar, today):
            continue
        changed += 1
        await repo.save(ctx.conn, t, f"due dates recounted with the holiday schedule: "
                        f"{_due_note(t)}, leg due {t.leg_due_on} (were {before[0]}, "
                        f"{before[1]})", ctx.cause.id)
        ctx.emit(TransferDueDateUpdated(
            **_event_fields(t), direction=t.direction,  # type: ignore[arg-type]
            due_on=t.due_on, leg_due_on=t.leg_due_on, due_provisional=t.due_provisional,
            previous_due_on=before[0], previous_leg_due_on=before[1]), key=t.person_id,
            event_id=derived_id(t.direction, t.from_region, t.transfer_id, "due",
                                t.due_on, t.leg_due_on, t.due_provisional))
    return changed


async def flag_overdue(ctx: HandlerContext, today: date) -> int:
    """Each tick: re-read the holiday schedules (a new year's file takes effect without a
    restart) and recount provisional due dates; then report each clock that ran out, once,
    as an event, and refresh the gauges. A missing year never stops this timer."""
    try:
        refresh_days_left(today)
    except (ScheduleFileError, OSError) as err:
        # Keep counting with the schedules already loaded; operators hear of the bad file.
        log.error("holiday schedule file not loaded", error=str(err))
    flagged = await recount_provisional(ctx, today)
    calendar = default_calendar()
    for t in await repo.overdue_candidates(ctx.conn, today):
        found = rules.newly_overdue(t, today, calendar)
        for overdue in found:
            log.warning("transfer overdue", transfer_id=t.transfer_id, person_id=t.person_id,
                        clock=overdue.clock, due_on=overdue.due_on.isoformat(),
                        working_days_late=overdue.working_days_late)
            ctx.emit(TransferOverdue(**_event_fields(t), direction=t.direction,  # type: ignore[arg-type]
                                     clock=overdue.clock,  # type: ignore[arg-type]
                                     due_on=overdue.due_on,
                                     working_days_late=overdue.working_days_late,
                                     due_provisional=t.due_provisional),
                     key=t.person_id,
                     event_id=derived_id(t.direction, t.from_region, t.transfer_id,
                                         overdue.clock, overdue.due_on))
        if found:
            flagged += len(found)
            await repo.save(ctx.conn, t, "overdue: " + ", ".join(
                f"{o.clock} clock due {o.due_on}" for o in found), ctx.cause.id)
    set_overdue(await repo.count_overdue(ctx.conn))
    return flagged


ROUTES: dict[str, Handler] = {
    InsuredStatusChanged.event_type: on_status_changed_all,
    PersonDeceased.event_type: on_person_deceased_all,
    TransferOutRequested.event_type: on_transfer_requested_all,
    TransferInfoSheetIssued.event_type: on_info_sheet_all,
    TransferMaterialsRequested.event_type: on_materials_requested_all,
    TransferMaterialsSupplied.event_type: on_materials_supplied_all,
    TransferLetterTracked.event_type: on_letter_tracked_all,
    TransferPaperReplyRecorded.event_type: on_paper_reply_all,
    PaperTransferInRecorded.event_type: on_paper_transfer_in_all,
    TransferFundsReceived.event_type: on_funds_received_all,
    PartnerTransferOut.event_type: on_partner_transfer_out_all,
    PartnerTransferAcknowledged.event_type: on_partner_acknowledged_all,
    PartnerTransferRejected.event_type: on_partner_rejected_all,
    PartnerTransferCancelled.event_type: on_partner_cancelled_all,
    PartnerPersonEnrolled.event_type: on_person_enrolled_elsewhere_all,
}
