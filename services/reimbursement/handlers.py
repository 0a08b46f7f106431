"""Reimbursement handlers: intake, review stages, policy calculation, payment and its result."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from services.reimbursement import repository as repo
from services.reimbursement.domain import claims as rules
from services.reimbursement.domain.claims import Claim, Stage, StageError
from shared.clock import SenderClockError, china_date
from shared.contracts import Envelope
from shared.contracts.bank import PaymentResultReported
from shared.contracts.channels import ClaimMaterialsMailed, ClaimStageDecided, ClaimSubmitted
from shared.contracts.employer import EmployerWageBaseReported
from shared.contracts.enrollment import (
    CoverageChanged,
    InsuredStatusChanged,
    RemoteFilingAccepted,
    RemoteFilingEnded,
    RosterRowProcessed,
)
from shared.contracts.hospital import (
    BirthRecorded,
    DirectSettlementRecorded,
    EpidemicPatientSettled,
    OutageSettlementsUploaded,
    SettlementRecord,
)
from shared.contracts.reimbursement import (
    ClaimApproved,
    ClaimPaid,
    ClaimPaymentFailed,
    ClaimPreliminaryApproved,
    ClaimReceived,
    ClaimRejected,
    ClaimRequestRefused,
    EpidemicCostsCovered,
    EpidemicSettlementRefused,
    InstitutionPaymentFailed,
    PaymentInstructed,
    ProactiveRecordProcessed,
    SettlementOutageDeclared,
)
from shared.identity import IdentifierError, validate_resident_id
from shared.messaging.consumer import Handler, HandlerContext
from shared.observability.logging import get_logger
from shared.policy import (
    FILING_LEVELS,
    AnnualTotals,
    BookCache,
    Calculation,
    ClaimFacts,
    NoPolicyInForce,
    PolicyBook,
    PolicyError,
    calculate,
)
from shared.policy.reference import Reference
from shared.settings import ReimbursementSettings

log = get_logger(__name__)
Calculated = Literal["approved", "awaiting_policy", "no_rule"]


def _settings(ctx: HandlerContext) -> ReimbursementSettings:
    return ctx.settings if isinstance(ctx.settings, ReimbursementSettings) \
        else ReimbursementSettings()


# Rule codes of refused requests: the claim's own channel (a resubmission, originals) has a
# Chinese reason the person reads; staff decisions, bank results and calculations are staff's.
CLAIM_IN_PROGRESS = "claim_in_progress"
MATERIALS_NOT_EXPECTED = "materials_not_expected"
UNKNOWN_CLAIM = "unknown_claim"
OUT_OF_ORDER = "out_of_order"
UNKNOWN_PAYMENT = "unknown_payment"
NO_POLICY_RULE = "no_policy_rule"


def _refuse(ctx: HandlerContext, claim_id: str, person_id: str, rule: str,
            reason: str) -> repo.Refusal:
    """The refusal told on the topic; the row the person's progress keeps of it, for the
    caller to write (one event's at once, a batch's together)."""
    ctx.emit(ClaimRequestRefused(claim_id=claim_id, person_id=person_id, rule=rule,
                                 reason=reason), key=person_id)
    return (person_id, claim_id, ctx.cause.type, rule, reason, ctx.cause.id)


async def _refused(ctx: HandlerContext, claim_id: str, person_id: str, rule: str,
                   reason: str) -> None:
    await repo.record_refusals(ctx.conn, [_refuse(ctx, claim_id, person_id, rule, reason)])


async def on_status_changed(ctx: HandlerContext, env: Envelope,
                            event: InsuredStatusChanged) -> None:
    await repo.set_insured_status(ctx.conn, event.person_id, event.insurance_type,
                                  event.to_status)


async def on_direct_settlement(ctx: HandlerContext, env: Envelope,
                               event: DirectSettlementRecorded) -> None:
    """Kept per (institution, invoice): refuses a manual claim for the same receipt, and its
    fund-paid and deductible-used count towards the person's annual totals of its line."""
    await repo.record_settlement(ctx.conn, event.invoice_no, event.institution_code,
                                 event.settlement_id, event.person_id, event.settled_on,
                                 event.fund_paid_fen, event.deductible_used_fen,
                                 event.benefit_line)


async def on_roster_row(ctx: HandlerContext, env: Envelope, event: RosterRowProcessed) -> None:
    """Who employs whom, for the maternity allowance's wage base."""
    if event.accepted and event.action in ("increase", "decrease"):
        await repo.set_employer(ctx.conn, event.person_id,
                                event.employer_code if event.action == "increase" else None)


async def on_filing_ended(ctx: HandlerContext, env: Envelope, event: RemoteFilingEnded) -> None:
    await repo.end_filing(ctx.conn, event.filing_id, event.person_id,
                          china_date(ctx.received_at))


async def on_coverage_changed(ctx: HandlerContext, env: Envelope,
                              event: CoverageChanged) -> None:
    await repo.replace_coverage(ctx.conn, event.person_id, [
        (p.insurance_type, p.start, p.end, p.source, p.reference) for p in event.periods])


def judge_submission(ctx: HandlerContext, cmd: ClaimSubmitted, book: PolicyBook,
                     current: Claim | None, filings: list[rules.FilingOnRecord],
                     periods: list[rules.Coverage], claimed_as: str | None,
                     settled_as: str | None) -> tuple[Claim, dict[str, Any]] | str:
    """A channel's claim decided against what is known of the person and the receipt: the
    claim (with its stage) and its history detail, or why the request is refused.
    `claimed_as`: another claim not rejected that holds the receipt; `settled_as`: the
    direct settlement that paid it."""
    try:
        version = rules.can_resubmit(current)
    except StageError as err:
        return str(err)
    location, filing_level = rules.location_of(
        cmd.treatment_area, ctx.region, filings if cmd.treatment_area else [],
        cmd.expense_date, book.intra_province_without_filing(cmd.expense_date) is not None)
    coverage = rules.coverage_on(periods, cmd.expense_date)
    claim = Claim(cmd.claim_id, cmd.person_id, version, Stage.PRELIMINARY_REVIEW,
                  cmd.expense_date, cmd.amount_fen, cmd.eligible_fen or cmd.amount_fen,
                  cmd.hospital_level, location,
                  insurance_type=coverage.insurance_type if coverage else None,
                  filed_on=china_date(ctx.received_at), channel=cmd.channel,
                  filing_level=filing_level, benefit_line=cmd.claim_type)
    filed_on: date = claim.filed_on or china_date(ctx.received_at)
    deadline: date | None = None
    measures: list[dict[str, str | None]] = []
    try:
        ctx.filed_on(cmd.submitted_at, "submitted_at")  # refuses a future timestamp
        deadline, applied = book.claim_deadline(cmd.expense_date)
        measures = [a.record() for a in applied]
    except SenderClockError as err:
        claim.reasons = [rules.future_timestamp_reason(
            err.field, cmd.submitted_at.isoformat(),
            ctx.received_at.isoformat(timespec="seconds"))]
    except NoPolicyInForce:
        pass  # the validity in force on the expense date is not known yet: wait for it
    if not claim.reasons:
        claim.reasons = rules.intake_reasons(
            coverage=coverage, expense_date=cmd.expense_date, filed_on=filed_on,
            deadline=deadline, earlier_claim_for_receipt=claimed_as, settled_as=settled_as)
    if claim.reasons:
        claim.stage = Stage.REJECTED
    elif deadline is None:
        rules.awaiting_policy(claim, "intake")
    return claim, {
        "reasons": claim.reasons, "deadline": deadline, "measures": measures,
        "filed_on": claim.filed_on, "submitted_at": cmd.submitted_at,
        "insurance_type": claim.insurance_type, "location": claim.location,
        "filing_level": claim.filing_level,
        **({"waiting": f"no policy in force on {cmd.expense_date.isoformat()}"}
           if claim.stage == Stage.AWAITING_POLICY else {})}


def tell_submission(ctx: HandlerContext, cmd: ClaimSubmitted, claim: Claim) -> None:
    """The person is told of a rejection or of the claim received (not of a wait)."""
    if claim.stage == Stage.REJECTED:
        ctx.emit(ClaimRejected(claim_id=cmd.claim_id, person_id=cmd.person_id,
                               reasons=rules.for_person(claim.reasons)), key=cmd.person_id)
    elif claim.stage == Stage.PRELIMINARY_REVIEW:
        ctx.emit(ClaimReceived(claim_id=cmd.claim_id, person_id=cmd.person_id,
                               amount_fen=cmd.amount_fen, stage=claim.stage.value),
                 key=cmd.person_id)


def routes(cache: BookCache, set_based: bool = True) -> dict[str, Handler]:
    """The handlers, reading the region's policy book as it is now (re-read on a timer, so a
    policy file added while claims wait is used without a restart). The busy paths (claims,
    outage uploads, direct settlements) are handled a batch at a time unless `set_based` is
    False (one event at a time: what the set-based ones must match)."""
    reference = Reference.load(cache.dirs)  # the agency's postal address for originals

    async def on_claim_submitted(ctx: HandlerContext, env: Envelope,
                                 cmd: ClaimSubmitted) -> None:
        """Judged as of the expense date (coverage, insurance type, filing and policy in
        force then); filed on the platform's date of receipt, never the sender's."""
        # The channel's reference is scoped by the person: another person's claim under the
        # same reference is another claim, never this one's next version.
        current = await repo.load_claim(ctx.conn, cmd.person_id, cmd.claim_id)
        filings = await repo.filings_for(ctx.conn, cmd.person_id) if cmd.treatment_area else []
        judged = judge_submission(
            ctx, cmd, cache.book, current, filings,
            await repo.coverage(ctx.conn, cmd.person_id),
            await repo.claim_for_receipt(ctx.conn, cmd.invoice_no, cmd.institution_code,
                                         cmd.person_id, cmd.claim_id),
            await repo.settlement_for_receipt(ctx.conn, cmd.invoice_no, cmd.institution_code))
        if isinstance(judged, str):
            return await _refused(ctx, cmd.claim_id, cmd.person_id, CLAIM_IN_PROGRESS,
                                  judged)
        claim, detail = judged
        await repo.save_submission(ctx.conn, claim, cmd.invoice_no, cmd.institution_code)
        await repo.set_treatment_area(ctx.conn, claim.person_id, claim.claim_id,
                                      cmd.treatment_area)
        await repo.record(ctx.conn, claim, detail, env.id)
        tell_submission(ctx, cmd, claim)

    async def on_stage_decided(ctx: HandlerContext, env: Envelope,
                               cmd: ClaimStageDecided) -> None:
        claim = await repo.load_claim(ctx.conn, cmd.person_id, cmd.claim_id)
        if claim is None:
            return await _refused(ctx, cmd.claim_id, cmd.person_id, UNKNOWN_CLAIM,
                                  "claim_id: no such claim")
        try:
            stage = rules.decide(claim, cmd.stage, cmd.decision == "approve", cmd.reasons)
        except StageError as err:
            return await _refused(ctx, cmd.claim_id, cmd.person_id, OUT_OF_ORDER, str(err))
        await repo.record(ctx.conn, claim, {"decision": cmd.decision, "reasons": cmd.reasons,
                                            "reviewer": cmd.reviewer}, env.id)
        if stage == Stage.REJECTED:
            ctx.emit(ClaimRejected(claim_id=claim.claim_id, person_id=claim.person_id,
                                   reasons=rules.for_person(claim.reasons)),
                     key=claim.person_id)
        elif stage == Stage.MATERIALS_PENDING:
            ctx.emit(ClaimPreliminaryApproved(
                claim_id=claim.claim_id, person_id=claim.person_id,
                mail_to=_mail_to(ctx, reference), materials=rules.MATERIALS),
                key=claim.person_id)
        else:
            await _calculate_and_instruct(ctx, env, claim, cache.book)
        await repo.save_claim(ctx.conn, claim)

    async def on_outage_settlements(ctx: HandlerContext, env: Envelope,
                                    cmd: OutageSettlementsUploaded) -> None:
        """Each record, keyed by (institution, record id), becomes an agency-started claim, is
        sent to manual reimbursement, waits for the declaration, or is reported back; a bad
        record does not hold up the others."""
        outages = await repo.outages_for(ctx.conn, cmd.institution_code)
        for record in cmd.records:
            route = await repo.proactive_record_route(ctx.conn, cmd.institution_code,
                                                      record.record_id)
            if route is not None and route != "awaiting_declaration":
                continue  # the same record sent again pays once
            await _proactive_record(ctx, env, cache.book, cmd.batch_id,
                                    cmd.institution_code, record, outages)

    async def on_outage_declared(ctx: HandlerContext, env: Envelope,
                                 cmd: SettlementOutageDeclared) -> None:
        """The agency's window and pay-by date; records that waited for it go on now."""
        await repo.save_outage(ctx.conn, rules.DeclaredOutage(
            cmd.outage_id, cmd.outage_from, cmd.outage_to, cmd.pay_by,
            tuple(cmd.institution_codes)), cmd.reviewer, cmd.declared_at)
        for row in await repo.records_awaiting_declaration(ctx.conn):
            if cmd.institution_codes and row["institution_code"] not in cmd.institution_codes:
                continue
            await _proactive_record(
                ctx, env, cache.book, row["batch_id"], row["institution_code"],
                SettlementRecord.model_validate(row["record"]),
                await repo.outages_for(ctx.conn, row["institution_code"]))

    async def on_filing_accepted(ctx: HandlerContext, env: Envelope,
                                 event: RemoteFilingAccepted) -> None:
        """A filing backfilled after the claim re-evaluates the claims it covers: those not yet
        calculated simply count as filed; calculated ones get the difference paid."""
        # An emergency admission counts at the temporary level [003]; enrollment says which.
        level = event.benefit_level if event.benefit_level in FILING_LEVELS else "temporary"
        await repo.set_filing(ctx.conn, event.filing_id, event.person_id, event.treatment_area,
                              event.start_date, event.end_date, True, level)
        book = cache.book
        for claim, place in await repo.unfiled_claims(ctx.conn, event.person_id,
                                                      event.start_date, event.end_date):
            if not rules.area_covers(event.treatment_area, place):
                continue
            claim.location, claim.filing_level = "remote_filed", level
            await repo.set_location(ctx.conn, claim, "remote_filed", level)
            if claim.stage not in (Stage.APPROVED, Stage.PAID) or claim.payable_fen is None:
                await repo.record(ctx.conn, claim, {"location": "remote_filed",
                                                    "filing_level": level,
                                                    "filing": event.filing_id}, env.id)
                continue
            kind = claim.insurance_type or "resident"
            original = await repo.calculation_of(ctx.conn, claim)
            try:
                rule = book.in_force(claim.expense_date).rule(kind, claim.hospital_level,
                                                              "remote_filed", level)
                # The same deductible and the same room under the cap as the first time.
                calc = calculate(book, ClaimFacts(
                    insurance_type=kind, hospital_level=claim.hospital_level,
                    location="remote_filed", expense_date=claim.expense_date,
                    eligible_fen=claim.eligible_fen, filing_level=level,
                    deductible_used_fen=max(0, rule.deductible_fen
                                            - int(original.get("deductible_fen", 0))),
                    paid_this_year_fen=max(0, rule.annual_cap_fen - int(original.get(
                        "cap_remaining_fen", rule.annual_cap_fen)))))
            except PolicyError as err:
                await _refused(ctx, claim.claim_id, claim.person_id, NO_POLICY_RULE,
                               f"re-evaluation: {err}")
                continue
            top_up = calc.payable_fen - claim.payable_fen
            if top_up <= 0:
                continue
            await repo.add_top_up(ctx.conn, claim, top_up)
            working = calc.working + [f"filing {event.filing_id} backfilled: pays "
                                      f"{top_up / 100:.2f} more"]
            await repo.record(ctx.conn, claim, {"working": working, "top_up_fen": top_up},
                              env.id)
            ctx.emit(ClaimApproved(benefit_line=claim.benefit_line,  # type: ignore[arg-type]
                           claim_id=claim.claim_id, person_id=claim.person_id,
                                   version=claim.version, payable_fen=top_up,
                                   policy_version=calc.policy_version,
                                   overrides=calc.overrides, working=working),
                     key=claim.person_id)
            ctx.emit(PaymentInstructed(
                idempotency_key=f"{claim.idempotency_key}:filing-{event.filing_id}",
                claim_id=claim.claim_id, person_id=claim.person_id, payable_fen=top_up,
                attempt=1), key=claim.person_id)

    async def on_epidemic_settled(ctx: HandlerContext, env: Envelope,
                                  cmd: EpidemicPatientSettled) -> None:
        """No claim procedure: covered in full while a declared epidemic override is in force
        on the first treatment day, else refused back to the institution."""
        book = cache.book
        override = book.epidemic_coverage(cmd.treated_from)
        if override is None:
            ctx.emit(EpidemicSettlementRefused(
                settlement_id=cmd.settlement_id, person_id=cmd.person_id,
                institution_code=cmd.institution_code,
                reason=f"treated_from: no declared epidemic coverage on "
                       f"{cmd.treated_from.isoformat()}"), key=cmd.person_id)
            return
        # Its own benefit line (never the medical cap), paid to the institution that treated
        # the patient: the patient paid nothing and is told so, never "check your account".
        claim = Claim(rules.epidemic_claim_id(cmd.institution_code, cmd.settlement_id),
                      cmd.person_id, 1,
                      Stage.CALCULATION, cmd.treated_from, cmd.cost_fen, cmd.cost_fen, 1,
                      "in_region", benefit_line="epidemic", payee="institution")
        if await repo.load_claim(ctx.conn, claim.person_id, claim.claim_id) is not None:
            return
        await repo.save_submission(ctx.conn, claim, cmd.settlement_id, cmd.institution_code)
        rules.calculated(claim, cmd.cost_fen)
        await repo.save_claim(ctx.conn, claim)
        working = [f"measure {override.measure_id} ({override.notice}): {cmd.diagnosis} "
                   f"epidemic patient, {cmd.cost_fen / 100:.2f} borne in full on the epidemic "
                   f"line (not the medical totals), paid to institution {cmd.institution_code}"]
        await repo.save_calculation(ctx.conn, claim, {
            "policy_version": override.policy_version, "overrides": [override.measure_id],
            "measures": [override.record()], "payable_fen": cmd.cost_fen, "working": working})
        await repo.record(ctx.conn, claim, {"working": working}, env.id)
        ctx.emit(EpidemicCostsCovered(settlement_id=cmd.settlement_id, person_id=cmd.person_id,
                                      institution_code=cmd.institution_code,
                                      cost_fen=cmd.cost_fen, override=override.measure_id),
                 key=cmd.person_id)
        _instruct(ctx, claim, payee_code=cmd.institution_code)

    async def _grant_maternity(ctx: HandlerContext, env: Envelope, birth: BirthRecorded) -> None:
        employer = await repo.employer_of(ctx.conn, birth.person_id)
        if employer is None:
            await repo.save_birth(ctx.conn, birth, "not_eligible", "no employee insurance "
                                  "through an employer here", None)
            return
        wage = await repo.wage_base(ctx.conn, employer, birth.birth_date.year - 1)
        if wage is None:
            # Granted as soon as the employer's wage base for last year arrives.
            await repo.save_birth(ctx.conn, birth, "waiting_for_wage_base",
                                  f"waiting for {employer}'s {birth.birth_date.year - 1} wage "
                                  "base", None, employer)
            return
        settings = _settings(ctx)
        maternity = rules.MaternityRules(
            settings.maternity_base_days, settings.maternity_difficult_extra_days,
            settings.maternity_per_extra_baby_days, settings.maternity_days_per_month)
        days = rules.maternity_leave_days(maternity, birth.difficult_birth, birth.babies)
        fen, working = rules.maternity_allowance(maternity, wage, days)
        claim = Claim(rules.maternity_claim_id(birth.institution_code, birth.birth_id),
                      birth.person_id, 1, Stage.CALCULATION,
                      birth.birth_date, fen, fen, 1, "in_region",
                      benefit_line="maternity_allowance")
        # Its "receipt" is the claim itself: two hospitals' births under one number are two.
        await repo.save_submission(ctx.conn, claim, claim.claim_id, "MATERNITY")
        rules.calculated(claim, fen)
        await repo.save_claim(ctx.conn, claim)
        await repo.save_calculation(ctx.conn, claim, {
            "policy_version": "maternity-practice", "payable_fen": fen, "working": [working]})
        await repo.record(ctx.conn, claim, {"maternity": working}, env.id)
        await repo.save_birth(ctx.conn, birth, "granted", None, claim.claim_id, employer)
        ctx.emit(ClaimApproved(benefit_line=claim.benefit_line,  # type: ignore[arg-type]
                               claim_id=claim.claim_id, person_id=claim.person_id, version=1,
                               payable_fen=fen, policy_version="maternity-practice",
                               overrides=[], working=[working]), key=claim.person_id)
        _instruct(ctx, claim)

    async def on_birth(ctx: HandlerContext, env: Envelope, cmd: BirthRecorded) -> None:
        await _grant_maternity(ctx, env, cmd)

    async def on_wage_base(ctx: HandlerContext, env: Envelope,
                           cmd: EmployerWageBaseReported) -> None:
        await repo.save_wage_base(ctx.conn, cmd.employer_code, cmd.year,
                                  cmd.average_monthly_wage_fen)
        for row in await repo.births_waiting(ctx.conn, cmd.employer_code, cmd.year):
            # Built from the row, not validated again: a birth kept before hospitals were
            # named has none.
            await _grant_maternity(ctx, env, BirthRecorded.model_construct(
                birth_id=row["birth_id"], person_id=row["person_id"],
                institution_code=row["institution_code"],
                birth_date=row["birth_date"], difficult_birth=row["difficult_birth"],
                babies=row["babies"]))

    async def on_materials_mailed(ctx: HandlerContext, env: Envelope,
                                  cmd: ClaimMaterialsMailed) -> None:
        claim = await repo.load_claim(ctx.conn, cmd.person_id, cmd.claim_id)
        if claim is None:
            return await _refused(ctx, cmd.claim_id, cmd.person_id, UNKNOWN_CLAIM,
                                  "claim_id: no such claim")
        try:
            rules.materials_mailed(claim, cmd.tracking_no)
        except StageError as err:
            return await _refused(ctx, cmd.claim_id, cmd.person_id, MATERIALS_NOT_EXPECTED,
                                  str(err))
        await repo.save_claim(ctx.conn, claim)
        await repo.record(ctx.conn, claim, {"tracking_no": cmd.tracking_no}, env.id)

    async def on_payment_result(ctx: HandlerContext, env: Envelope,
                                cmd: PaymentResultReported) -> None:
        claim = await repo.load_claim(ctx.conn, cmd.person_id, cmd.claim_id)
        if claim is None or cmd.idempotency_key != claim.idempotency_key:
            return await _refused(ctx, cmd.claim_id, cmd.person_id, UNKNOWN_PAYMENT,
                                  f"payment result for unknown payment {cmd.idempotency_key}")
        try:
            stage = rules.payment_result(claim, cmd.succeeded, _settings(ctx).payment_max_attempts)
        except StageError as err:
            return await _refused(ctx, cmd.claim_id, cmd.person_id, UNKNOWN_PAYMENT, str(err))
        await repo.save_claim(ctx.conn, claim)
        await repo.record(ctx.conn, claim, {"succeeded": cmd.succeeded,
                                            "failure_reason": cmd.failure_reason}, env.id)
        if stage == Stage.PAID and claim.payee == "institution":
            pass  # paid to the hospital: the patient was told once, at coverage, and owes nothing
        elif stage == Stage.PAID:
            proactive, institution = await _proactive(ctx, claim, None)
            ctx.emit(ClaimPaid(claim_id=claim.claim_id, person_id=claim.person_id,
                               benefit_line=claim.benefit_line,  # type: ignore[arg-type]
                               payable_fen=claim.payable_fen or 0, proactive=proactive,
                               institution_code=institution), key=claim.person_id)
        elif stage == Stage.PAYMENT_FAILED and claim.payee == "institution":
            # The patient was told truly that the fund bears the cost; the failure is between
            # the agency and the hospital, so only staff hear of it.
            ctx.emit(InstitutionPaymentFailed(
                claim_id=claim.claim_id, person_id=claim.person_id,
                institution_code=await repo.institution_of(ctx.conn, claim),
                reason=cmd.failure_reason or "payment failed",
                attempts=claim.payment_attempts,
                benefit_line=claim.benefit_line),  # type: ignore[arg-type]
                key=claim.person_id)
        elif stage == Stage.PAYMENT_FAILED:
            ctx.emit(ClaimPaymentFailed(claim_id=claim.claim_id, person_id=claim.person_id,
                                        reason=cmd.failure_reason or "payment failed",
                                        attempts=claim.payment_attempts,
                                        benefit_line=claim.benefit_line),  # type: ignore[arg-type]
                     key=claim.person_id)
        else:
            _instruct(ctx, claim, await repo.proactive_pay_by(ctx.conn, claim),
                      payee_code=await repo.institution_of(ctx.conn, claim)
                      if claim.payee == "institution" else None)

    # Imported here: the set-based handlers are built from this module's decisions.
    from services.reimbursement import batched

    busy: dict[str, Handler] = {
        ClaimSubmitted.event_type: batched.claims_submitted(cache),
        OutageSettlementsUploaded.event_type: batched.outage_uploads(cache),
        DirectSettlementRecorded.event_type: batched.on_direct_settlements_all,
    } if set_based else {}
    one_at_a_time: dict[str, Handler] = {
        InsuredStatusChanged.event_type: on_status_changed,
        CoverageChanged.event_type: on_coverage_changed,
        RemoteFilingAccepted.event_type: on_filing_accepted,
        RemoteFilingEnded.event_type: on_filing_ended,
        ClaimSubmitted.event_type: on_claim_submitted,
        ClaimStageDecided.event_type: on_stage_decided,
        ClaimMaterialsMailed.event_type: on_materials_mailed,
        PaymentResultReported.event_type: on_payment_result,
        OutageSettlementsUploaded.event_type: on_outage_settlements,
        SettlementOutageDeclared.event_type: on_outage_declared,
        DirectSettlementRecorded.event_type: on_direct_settlement,
        RosterRowProcessed.event_type: on_roster_row,
        BirthRecorded.event_type: on_birth,
        EmployerWageBaseReported.event_type: on_wage_base,
        EpidemicPatientSettled.event_type: on_epidemic_settled,
    }
    return one_at_a_time | busy


def _mail_to(ctx: HandlerContext, reference: Reference) -> str:
    """Where the originals go by post: the region's agency address from the reference data
    (postcode first); the configured text only where the region has none (notify then
    parks the message, as it is no postal address)."""
    agency = reference.agencies.get(ctx.region)
    return agency.mailing_address if agency else _settings(ctx).originals_mail_to


async def _proactive(ctx: HandlerContext, claim: Claim,
                     pay_by: date | None) -> tuple[bool, str | None]:
    """Whether the agency reimbursed it from an outage record, and the institution: the
    person never applied and is told where they were treated."""
    if pay_by is None and await repo.proactive_pay_by(ctx.conn, claim) is None:
        return False, None
    return True, await repo.institution_of(ctx.conn, claim)


def _instruct(ctx: HandlerContext, claim: Claim, pay_by: date | None = None,
              payee_code: str | None = None) -> None:
    """The payment, naming the payee: the insured person, or the institution for costs the
    fund bears at the hospital."""
    ctx.emit(PaymentInstructed(idempotency_key=claim.idempotency_key, claim_id=claim.claim_id,
                               person_id=claim.person_id, payable_fen=claim.payable_fen or 0,
                               attempt=claim.payment_attempts, pay_by=pay_by,
                               payee="institution" if claim.payee == "institution"
                               else "insured", payee_code=payee_code),
             key=claim.person_id)


def calculation_of(book: PolicyBook, claim: Claim, totals: AnnualTotals) -> Calculation:
    """The amount by the version and measures in force on the expense date; raises
    NoPolicyInForce (no version for that day) or PolicyError (no rule for this case)."""
    return calculate(book, ClaimFacts(
        insurance_type=claim.insurance_type or "resident",
        hospital_level=claim.hospital_level, location=claim.location,
        expense_date=claim.expense_date, eligible_fen=claim.eligible_fen, totals=totals,
        filing_level=claim.filing_level, benefit_line=claim.benefit_line))


def calculation_kept(calc: Calculation, totals: AnnualTotals) -> dict[str, Any]:
    """What the claim keeps of its calculation (claims.calculation)."""
    return {
        "policy_version": calc.policy_version, "overrides": calc.overrides,
        "eligible_fen": calc.eligible_fen, "deductible_fen": calc.deductible_fen,
        "ratio": str(calc.ratio), "cap_remaining_fen": calc.cap_remaining_fen,
        "payable_fen": calc.payable_fen, "working": calc.working,
        "totals": {"line": totals.line, "year": totals.year,
                   "claims_paid_fen": totals.claims_paid_fen,
                   "settled_paid_fen": totals.settled_paid_fen,
                   "claims_deductible_fen": totals.claims_deductible_fen,
                   "settled_deductible_fen": totals.settled_deductible_fen}}


def calculation_detail(calc: Calculation) -> dict[str, Any]:
    """The history row of a calculation."""
    return {"working": calc.working, "policy_version": calc.policy_version,
            "overrides": calc.overrides}


def tell_approved(ctx: HandlerContext, claim: Claim, calc: Calculation, proactive: bool,
                  institution: str | None, pay_by: date | None) -> None:
    """The approval, then the payment instruction."""
    ctx.emit(ClaimApproved(benefit_line=claim.benefit_line,  # type: ignore[arg-type]
                           claim_id=claim.claim_id, person_id=claim.person_id,
                           version=claim.version, payable_fen=calc.payable_fen,
                           policy_version=calc.policy_version, overrides=calc.overrides,
                           working=calc.working, proactive=proactive,
                           institution_code=institution, eligible_fen=calc.eligible_fen,
                           deductible_fen=calc.deductible_fen, ratio=str(calc.ratio),
                           cap_remaining_fen=calc.cap_remaining_fen), key=claim.person_id)
    _instruct(ctx, claim, pay_by)


async def _calculate_and_instruct(ctx: HandlerContext, env: Envelope, claim: Claim,
                                  book: PolicyBook, pay_by: date | None = None) -> Calculated:
    """Amount by the version and measures in force on the expense date, then the payment;
    with no version for that day the claim waits in awaiting_policy (never another period's
    figures). The caller saves the claim."""
    # The claim's own line's totals of the expense year: claims here and settlements made
    # directly at the hospital; the allowance and epidemic money never use them up.
    totals = await repo.annual_totals(ctx.conn, claim.person_id, claim.expense_date.year,
                                      claim.benefit_line)
    try:
        calc = calculation_of(book, claim, totals)
    except NoPolicyInForce as err:
        rules.awaiting_policy(claim, "calculation")
        await repo.record(ctx.conn, claim, {"waiting": str(err)}, env.id)
        return "awaiting_policy"
    except PolicyError as err:
        # No rule for this case: staff must see it; the claim waits at calculation.
        await _refused(ctx, claim.claim_id, claim.person_id, NO_POLICY_RULE,
                       f"calculation: {err}")
        return "no_rule"
    rules.calculated(claim, calc.payable_fen)
    await repo.save_calculation(ctx.conn, claim, calculation_kept(calc, totals))
    await repo.record(ctx.conn, claim, calculation_detail(calc), env.id)
    proactive, institution = await _proactive(ctx, claim, pay_by)
    tell_approved(ctx, claim, calc, proactive, institution, pay_by)
    return "approved"


def judge_record(region: str, record: SettlementRecord, periods: list[rules.Coverage],
                 outages: list[rules.DeclaredOutage]
                 ) -> tuple[rules.Route, str, rules.Coverage | None, rules.DeclaredOutage | None]:
    """An outage record's route (domain rule `route_of_record`), its resident ID checked
    first. `periods`: the person's coverage (not read when the ID is not valid)."""
    try:
        # Accepting the number needs no birth place (an advisory look-up, most of the cost).
        validate_resident_id(record.person_id)
        id_error = None
    except IdentifierError as exc:
        id_error = str(exc)
    return rules.route_of_record(
        region=region, person_id_error=id_error, care=record.care,
        treatment_area=record.treatment_area, expense_date=record.expense_date,
        amount_fen=record.amount_fen, eligible_fen=record.eligible_fen, periods=periods,
        outages=outages)


def record_claim(ctx: HandlerContext, institution: str, record: SettlementRecord,
                 coverage: rules.Coverage) -> Claim:
    """The agency-started claim of a proactive record, at calculation."""
    return Claim(rules.proactive_claim_id(institution, record.record_id), record.person_id,
                 1, Stage.CALCULATION, record.expense_date, record.amount_fen,
                 record.eligible_fen, record.hospital_level, "in_region",
                 insurance_type=coverage.insurance_type,
                 filed_on=china_date(ctx.received_at))


def record_outcome(record: SettlementRecord, outcome: Calculated) -> str:
    """The reason told back for a record that became a claim."""
    return ("claim approved and payment instructed" if outcome == "approved" else
            f"claim awaiting the policy for {record.expense_date.isoformat()}")


def tell_record(ctx: HandlerContext, batch_id: str, institution: str,
                record: SettlementRecord, route: rules.Route, reason: str, claim_id: str | None,
                outage: rules.DeclaredOutage | None) -> None:
    """The institution is told what became of the record."""
    ctx.emit(ProactiveRecordProcessed(
        batch_id=batch_id, institution_code=institution, record_id=record.record_id,
        accepted=route == "proactive", claim_id=claim_id, reason=reason, route=route,
        pay_by=outage.pay_by if route == "proactive" and outage else None),
        key=institution)


async def _proactive_record(ctx: HandlerContext, env: Envelope, book: PolicyBook,
                            batch_id: str, institution: str, record: SettlementRecord,
                            outages: list[rules.DeclaredOutage]) -> None:
    """One outage record: paid proactively, sent to manual reimbursement (not covered by
    notice 004), waiting for the agency's declaration, or rejected; told back either way."""
    try:
        validate_resident_id(record.person_id)
        periods = await repo.coverage(ctx.conn, record.person_id)
    except IdentifierError:
        periods = []
    route, reason, coverage, outage = judge_record(ctx.region, record, periods, outages)
    claim_id: str | None = None
    if route == "proactive":
        assert coverage is not None and outage is not None
        claim = record_claim(ctx, institution, record, coverage)
        await repo.save_submission(ctx.conn, claim, record.record_id, institution)
        await repo.record(ctx.conn, claim, {"proactive_batch": batch_id,
                                            "outage": outage.outage_id,
                                            "pay_by": outage.pay_by}, env.id)
        outcome = await _calculate_and_instruct(ctx, env, claim, book, outage.pay_by)
        if outcome == "no_rule":
            route, reason = "rejected", "calculation: no policy rule for this record"
        else:
            await repo.save_claim(ctx.conn, claim)
            claim_id = claim.claim_id
            reason = record_outcome(record, outcome)
    await repo.save_proactive_record(
        ctx.conn, record.record_id, batch_id, institution, record.person_id, claim_id,
        route, reason, outage if route == "proactive" else None,
        record.model_dump(mode="json") if route == "awaiting_declaration" else None)
    tell_record(ctx, batch_id, institution, record, route, reason, claim_id, outage)


async def resume_awaiting_declaration(ctx: HandlerContext, book: PolicyBook) -> int:
    """Records kept for a declaration that has since arrived go on (a batch and the
    declaration may be taken at the same time from different partitions)."""
    resumed = 0
    for row in await repo.records_awaiting_declaration(ctx.conn):
        outages = await repo.outages_for(ctx.conn, row["institution_code"])
        if outages:
            resumed += 1
            await _proactive_record(ctx, ctx.cause, book, row["batch_id"],
                                    row["institution_code"],
                                    SettlementRecord.model_validate(row["record"]),
                                    outages)
    return resumed


async def resume_awaiting_policy(ctx: HandlerContext, book: PolicyBook) -> int:
    """Claims whose expense date now has a policy go on where they waited: the intake check
    (then preliminary review, told to the person as received) or the calculation."""
    resumed = 0
    for claim in await repo.awaiting_policy(ctx.conn):
        try:
            deadline, applied = book.claim_deadline(claim.expense_date)
        except NoPolicyInForce:
            continue
        waited_for = claim.waiting_for
        reasons = rules.policy_added(claim, deadline)
        resumed += 1
        await repo.record(ctx.conn, claim, {
            "policy_added": book.in_force(claim.expense_date).version, "deadline": deadline,
            "measures": [a.record() for a in applied], "reasons": reasons}, ctx.cause.id)
        if claim.stage == Stage.REJECTED:
            ctx.emit(ClaimRejected(claim_id=claim.claim_id, person_id=claim.person_id,
                                   reasons=rules.for_person(reasons)), key=claim.person_id)
        elif claim.stage == Stage.PRELIMINARY_REVIEW:
            ctx.emit(ClaimReceived(claim_id=claim.claim_id, person_id=claim.person_id,
                                   amount_fen=claim.amount_fen, stage=claim.stage.value),
                     key=claim.person_id)
        elif waited_for == "calculation":
            await _calculate_and_instruct(ctx, ctx.cause, claim, book)
        await repo.save_claim(ctx.conn, claim)
    return resumed
