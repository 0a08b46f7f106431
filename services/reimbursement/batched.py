"""Set-based handlers of the busy paths: each batch's claims, outage records, settlements."""
from __future__ import annotations

from copy import copy
from dataclasses import replace
from datetime import date
from typing import Any

from services.reimbursement import repository as repo
from services.reimbursement.domain import claims as rules
from services.reimbursement.domain.claims import Claim, Stage
from services.reimbursement.handlers import (
    CLAIM_IN_PROGRESS,
    NO_POLICY_RULE,
    Calculated,
    _refuse,
    calculation_detail,
    calculation_kept,
    calculation_of,
    judge_record,
    judge_submission,
    record_claim,
    record_outcome,
    tell_approved,
    tell_record,
    tell_submission,
)
from shared.contracts.channels import ClaimSubmitted
from shared.contracts.hospital import DirectSettlementRecorded, OutageSettlementsUploaded
from shared.identity import IdentifierError, validate_resident_id
from shared.messaging.consumer import BatchItem, Handler, batch_handler
from shared.policy import AnnualTotals, BookCache, NoPolicyInForce, PolicyBook, PolicyError

# A claim's history rows, as `repo.record` would write each: the claim as it stood then (a
# shallow copy: its stage and version are what a row records).
History = list[tuple[Claim, dict[str, Any], str]]
COUNTED = (Stage.APPROVED, Stage.PAID)  # the stages a claim counts in the annual totals at
RECORDS_AT_ONCE = 20_000


def claims_submitted(cache: BookCache) -> Handler:
    """`ClaimSubmitted` for a whole batch: the persons' claims, coverage and filings and the
    receipts' holders are read once, each claim is judged in order against what the ones
    before it left (a second submission of a claim sees the first), then written at once."""

    @batch_handler
    async def on_claim_submitted_all(items: list[BatchItem]) -> None:
        conn = items[0][0].conn
        book = _DayMemo(cache.book)
        cmds: list[ClaimSubmitted] = [cmd for _, _, cmd in items]
        persons = repo.person_keys(c.person_id for c in cmds)
        receipts = list({(c.invoice_no, c.institution_code) for c in cmds})
        claims = {at: claim for at, (claim, _) in (await repo.claims_of(
            conn, [(c.person_id, c.claim_id) for c in cmds], persons)).items()}
        stored = set(claims)
        periods = await repo.coverage_of(conn, persons)
        filings = await repo.filings_of(conn, {c.person_id: persons[c.person_id]
                                               for c in cmds if c.treatment_area})
        holders = await repo.receipts_claimed(conn, receipts, persons)
        settled = await repo.receipts_settled(conn, receipts)
        writes: dict[tuple[str, str], repo.ClaimWrite] = {}
        history: History = []
        refusals: list[repo.Refusal] = []
        for ctx, env, cmd in items:
            at = (cmd.person_id, cmd.claim_id)
            receipt = (cmd.invoice_no, cmd.institution_code)
            holder = holders.get(receipt)
            judged = judge_submission(
                ctx, cmd, book, claims.get(at),  # type: ignore[arg-type]
                filings.get(cmd.person_id, []), periods[cmd.person_id],
                holder[1] if holder is not None and holder != at else None,
                settled.get(receipt))
            if isinstance(judged, str):
                refusals.append(_refuse(ctx, cmd.claim_id, cmd.person_id,
                                        CLAIM_IN_PROGRESS, judged))
                continue
            claim, detail = judged
            # Only a rejected claim is resubmitted, and a rejected one holds no receipt: the
            # new version holds its receipt unless rejected in turn.
            claims[at] = claim
            if claim.stage != Stage.REJECTED:
                holders[receipt] = at
            writes[at] = repo.ClaimWrite(claim, cmd.invoice_no, cmd.institution_code,
                                         sets_treatment_area=True,
                                         treatment_area=cmd.treatment_area,
                                         stored=at in stored)
            history.append((claim, detail, env.id))
            tell_submission(ctx, cmd, claim)
        await repo.save_claims(conn, list(writes.values()), persons)
        await repo.record_all(conn, history)
        await repo.record_refusals(conn, refusals)

    return on_claim_submitted_all


def outage_uploads(cache: BookCache) -> Handler:
    """`OutageSettlementsUploaded` for a whole batch: the records' earlier routes, the
    persons' coverage and annual totals, the institutions' declared outages and any claim
    already under a record's claim id are read once; each record is decided in order (a
    record sent twice pays once; a claim approved counts in the next one's totals); claims,
    history and records are written at once. Uploads of up to 10,000 records each are taken
    in runs of about RECORDS_AT_ONCE records (in order), so a batch of large uploads never
    builds one statement of millions of rows."""

    @batch_handler
    async def on_outage_settlements_all(items: list[BatchItem]) -> None:
        run: list[BatchItem] = []
        size = 0
        for item in items:
            run.append(item)
            size += len(item[2].records)
            if size >= RECORDS_AT_ONCE:
                await on_uploads(run)
                run, size = [], 0
        if run:
            await on_uploads(run)

    async def on_uploads(items: list[BatchItem]) -> None:
        conn = items[0][0].conn
        book = cache.book
        uploads: list[OutageSettlementsUploaded] = [cmd for _, _, cmd in items]
        valid: dict[str, bool] = {}
        for cmd in uploads:
            for record in cmd.records:
                if record.person_id not in valid:
                    valid[record.person_id] = _valid_id(record.person_id)
        persons = repo.person_keys(pid for pid, ok in valid.items() if ok)
        outages = await repo.outages_of(conn, {cmd.institution_code for cmd in uploads})
        routes = await repo.proactive_routes(conn, [
            (cmd.institution_code, r.record_id) for cmd in uploads for r in cmd.records])
        periods = await repo.coverage_of(conn, persons)
        totals = await repo.annual_totals_of(conn, persons)
        # A claim already under a record's claim id is replaced by the record's claim.
        existing = await repo.claims_of(conn, [
            (r.person_id, rules.proactive_claim_id(cmd.institution_code, r.record_id))
            for cmd in uploads for r in cmd.records if valid[r.person_id]
            and routes.get((cmd.institution_code, r.record_id)) in (None,
                                                                    "awaiting_declaration")],
            persons)
        claims: dict[tuple[str, str], tuple[Claim, int]] = dict(existing)
        writes: dict[tuple[str, str], repo.ClaimWrite] = {}
        records: list[repo.ProactiveWrite] = []
        history: History = []
        refusals: list[repo.Refusal] = []
        for ctx, env, cmd in items:
            institution = cmd.institution_code
            for record in cmd.records:
                at = (institution, record.record_id)
                known = routes.get(at)
                if known is not None and known != "awaiting_declaration":
                    continue  # the same record sent again pays once
                route, reason, coverage, outage = judge_record(
                    ctx.region, record, periods.get(record.person_id, []), outages[institution])
                claim_id: str | None = None
                if route == "proactive":
                    assert coverage is not None and outage is not None
                    claim = record_claim(ctx, institution, record, coverage)
                    key = (claim.person_id, claim.claim_id)
                    # The submission replaces any row under that claim id, and its part in
                    # the totals with it.
                    if key in claims:
                        _count(totals, *claims[key], -1)
                    history.append((copy(claim), {"proactive_batch": cmd.batch_id,
                                                     "outage": outage.outage_id,
                                                     "pay_by": outage.pay_by}, env.id))
                    outcome, kept, met = _calculate(ctx, env.id, claim, book, totals,
                                                    institution, outage.pay_by, history,
                                                    refusals)
                    claims[key] = (claim, met)
                    writes[key] = repo.ClaimWrite(claim, record.record_id, institution, kept,
                                                  stored=key in existing)
                    if outcome == "no_rule":
                        route, reason = "rejected", "calculation: no policy rule for this record"
                    else:
                        claim_id = claim.claim_id
                        reason = record_outcome(record, outcome)
                routes[at] = route
                records.append(repo.ProactiveWrite(
                    record.record_id, cmd.batch_id, institution, record.person_id, claim_id,
                    route, reason, outage if route == "proactive" else None,
                    record.model_dump(mode="json") if route == "awaiting_declaration"
                    else None))
                tell_record(ctx, cmd.batch_id, institution, record, route, reason, claim_id,
                            outage)
        await repo.save_claims(conn, list(writes.values()), persons)
        await repo.record_all(conn, history)
        await repo.save_proactive_records(conn, records)
        await repo.record_refusals(conn, refusals)

    return on_outage_settlements_all


@batch_handler
async def on_direct_settlements_all(items: list[BatchItem]) -> None:
    """`DirectSettlementRecorded` for a whole batch, in one statement (the first settlement
    of a receipt is kept, as one at a time)."""
    settlements: list[DirectSettlementRecorded] = [event for _, _, event in items]
    await repo.record_settlements(items[0][0].conn, [
        (e.invoice_no, e.institution_code, e.settlement_id, e.person_id, e.settled_on,
         e.fund_paid_fen, e.deductible_used_fen, e.benefit_line) for e in settlements])


def _calculate(ctx: Any, cause_id: str, claim: Claim, book: Any,
               totals: dict[tuple[str, str, int], AnnualTotals], institution: str,
               pay_by: Any, history: History, refusals: list[repo.Refusal]
               ) -> tuple[Calculated, dict[str, Any] | None, int]:
    """`_calculate_and_instruct` against the batch's totals: the outcome, what the claim
    keeps of its calculation, and the deductible it met (0 unless approved)."""
    at = (claim.person_id, claim.benefit_line, claim.expense_date.year)
    now = totals.get(at) or AnnualTotals(claim.benefit_line, claim.expense_date.year)
    try:
        calc = calculation_of(book, claim, now)
    except NoPolicyInForce as err:
        rules.awaiting_policy(claim, "calculation")
        history.append((copy(claim), {"waiting": str(err)}, cause_id))
        return "awaiting_policy", None, 0
    except PolicyError as err:
        # No rule for this case: staff must see it; the claim waits at calculation.
        refusals.append(_refuse(ctx, claim.claim_id, claim.person_id, NO_POLICY_RULE,
                                f"calculation: {err}"))
        return "no_rule", None, 0
    rules.calculated(claim, calc.payable_fen)
    history.append((copy(claim), calculation_detail(calc), cause_id))
    tell_approved(ctx, claim, calc, True, institution, pay_by)
    _count(totals, claim, calc.deductible_fen, 1)
    return "approved", calculation_kept(calc, now), calc.deductible_fen


def _count(totals: dict[tuple[str, str, int], AnnualTotals], claim: Claim, deductible: int,
           sign: int) -> None:
    """Add (or take out) a claim's part in its line's totals of the year, as the sum over
    approved and paid claims counts it."""
    if claim.stage not in COUNTED:
        return
    at = (claim.person_id, claim.benefit_line, claim.expense_date.year)
    now = totals.get(at) or AnnualTotals(claim.benefit_line, claim.expense_date.year)
    totals[at] = replace(now, claims_paid_fen=now.claims_paid_fen + sign * (
        claim.payable_fen or 0), claims_deductible_fen=now.claims_deductible_fen
        + sign * deductible)


class _DayMemo:
    """The book's answers for an expense date, asked once per batch (a batch's claims share
    a few dates; the book does not change while a batch is handled). A date with no policy
    in force is asked each time (rare, and the exception is raised afresh)."""

    def __init__(self, book: PolicyBook) -> None:
        self.book = book
        self.deadlines: dict[date, Any] = {}
        self.intra: dict[date, Any] = {}

    def claim_deadline(self, day: date) -> Any:
        if day not in self.deadlines:
            self.deadlines[day] = self.book.claim_deadline(day)
        return self.deadlines[day]

    def intra_province_without_filing(self, day: date) -> Any:
        if day not in self.intra:
            self.intra[day] = self.book.intra_province_without_filing(day)
        return self.intra[day]


def _valid_id(person_id: str) -> bool:
    try:
        validate_resident_id(person_id)
    except IdentifierError:
        return False
    return True
