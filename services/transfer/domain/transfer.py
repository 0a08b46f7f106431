"""The transfer workflow on both sides: out (转出) in region A, in (转入) in region B."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from services.transfer.domain.deadlines import Clock, due_after, working_days_left
from shared.identity import division_name
from shared.workdays import DueDate, WorkingCalendar


class Stage(StrEnum):
    # transfer-out (A)
    AWAITING_SUSPENSION = "awaiting_suspension"  # automatic: A's contributions still running
    AWAITING_INFO_SHEET = "awaiting_info_sheet"  # A's office prepares years and balance
    WAITING_ON_PERSON = "waiting_on_person"      # clocks stopped: material missing
    SENT = "sent"                                # electronic: in B's inbox, answer awaited
    LETTER_PENDING = "letter_pending"            # paper: contact letter to be posted
    LETTER_SENT = "letter_sent"
    LETTER_RECEIVED = "letter_received"          # delivered to B's office, answer awaited
    # transfer-in (B)
    RECEIVED = "received"                        # B waits for A's balance to arrive
    COMPLETED = "completed"
    FAILED = "failed"                            # B refused the transfer-in
    REFUSED = "refused"                          # refused here (A's request, or B's intake)
    CANCELLED = "cancelled"


CLOSED = frozenset({Stage.COMPLETED, Stage.FAILED, Stage.REFUSED, Stage.CANCELLED})
AWAITING_ANSWER = frozenset({Stage.SENT, Stage.LETTER_SENT, Stage.LETTER_RECEIVED})
PAUSABLE = frozenset({Stage.AWAITING_INFO_SHEET, Stage.LETTER_PENDING, Stage.RECEIVED})
# Stages in which an office's own leg clock runs (A before dispatch, B before merging).
LEG_RUNNING = frozenset({Stage.AWAITING_INFO_SHEET, Stage.LETTER_PENDING, Stage.RECEIVED})


# Reasons reach the person by SMS, so they are written in Chinese; `rule` is for machines.
STATUS_NAMES = {"none": "未参保", "pending": "待缴费", "active": "正常参保",
                "suspended": "暂停参保", "terminated": "已注销", "transferred_out": "已转出"}


def _status_name(status: str | None) -> str:
    return STATUS_NAMES.get(status or "none", status or "未参保")


class TransferRefused(Exception):
    """A request the rules refuse; `rule` is a stable code, `reason` what the person is told."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass
class Transfer:
    transfer_id: str
    person_id: str
    direction: str  # "out" here is A; "in" here is B
    from_region: str
    to_region: str
    stage: Stage
    trigger: str = "application"
    mode: str = "electronic"
    insurance_type: str | None = None
    name: str | None = None
    contribution_months: int | None = None
    account_balance_fen: int | None = None
    credited_months: int | None = None
    credited_balance_fen: int | None = None
    started_on: date | None = None
    due_on: date | None = None
    leg_due_on: date | None = None
    in_leg_days: int | None = None
    dispatched_on: date | None = None
    completed_on: date | None = None
    paused_since: date | None = None
    paused_working_days: int = 0
    tracking_number: str | None = None
    reason: str | None = None
    overdue_flagged: bool = False
    leg_overdue_flagged: bool = False
    resume_stage: Stage | None = None
    # The working days the due dates count (the whole clock and this office's leg): kept so
    # a provisional date can be recounted when the year's holiday schedule arrives.
    total_days: int | None = None
    leg_days: int | None = None
    due_provisional: bool = False
    partner_active_since: date | None = None  # automatic transfer: insured there since
    clock_source: str | None = None  # the policy version and measure the clocks came from
    # A request's reference at its channel: unique per person only, so the same number from
    # two people is two transfers, told apart by `transfer_id` (`own_reference`).
    channel_ref: str | None = None

    @property
    def partner(self) -> str:
        return self.to_region if self.direction == "out" else self.from_region

    @property
    def is_open(self) -> bool:
        return self.stage not in CLOSED


def region_name(code: str) -> str:
    return division_name(code) or code


def _check_partner(here: str, to_region: str) -> None:
    """Any current region of China may be the other end: one not connected is reached by
    paper contact letter (notice 000), never refused for not being a partner."""
    if to_region == here:
        raise TransferRefused("same_region", f"转入地（to_region {to_region}）不能是本统筹区")
    if division_name(to_region) is None:
        raise TransferRefused("unknown_region",
                              f"转入地（to_region {to_region}）不是有效的行政区划代码")


def route(to_region: str, interconnected: frozenset[str]) -> str:
    """Electronic to an interconnected partner (网上电子传输), else a paper contact letter."""
    return "electronic" if to_region in interconnected else "paper"


def _set_dues(t: Transfer, start: date, calendar: WorkingCalendar) -> None:
    """Count the clocks from `start` plus the working days lost waiting on the person; a
    count past the holiday data is provisional, never refused (issue 10, item 4)."""
    dues: list[DueDate] = []
    if t.total_days is not None:
        total = due_after(calendar, start, t.total_days + t.paused_working_days)
        t.due_on = total.on
        dues.append(total)
    if t.leg_days is not None:
        leg = due_after(calendar, start, t.leg_days + t.paused_working_days)
        t.leg_due_on = leg.on
        dues.append(leg)
    t.due_provisional = any(d.provisional for d in dues)


def _budgets_from_dates(t: Transfer, calendar: WorkingCalendar) -> None:
    """Transfers started before the budgets were stored: read them back from their dates."""
    if t.started_on is None:
        return
    if t.total_days is None and t.due_on is not None and t.direction == "out":
        t.total_days = calendar.working_days_between(
            t.started_on, t.due_on, provisional=True) - t.paused_working_days
    if t.leg_days is None and t.leg_due_on is not None:
        t.leg_days = calendar.working_days_between(
            t.started_on, t.leg_due_on, provisional=True) - t.paused_working_days


def start_clocks(t: Transfer, start: date, clock: Clock, calendar: WorkingCalendar) -> None:
    """Due dates are fixed the day the transfer starts (notice 003's 15 / 9 working days)."""
    t.started_on = start
    t.total_days, t.leg_days, t.in_leg_days = clock.total, clock.out_leg, clock.in_leg
    t.clock_source = clock.source
    _set_dues(t, start, calendar)
    t.stage = Stage.AWAITING_INFO_SHEET


def recount(t: Transfer, calendar: WorkingCalendar, today: date) -> bool:
    """A provisional due date counted again with today's schedules; True if anything changed.

    A clock reported overdue on a provisional date that the schedule moved past today is
    running again, so it is reported anew should it run out."""
    if not t.due_provisional or t.started_on is None or not t.is_open:
        return False
    before = (t.due_on, t.leg_due_on, t.due_provisional)
    _set_dues(t, t.started_on, calendar)
    if t.due_on and t.due_on >= today:
        t.overdue_flagged = False
    if t.leg_due_on and t.leg_due_on >= today:
        t.leg_overdue_flagged = False
    return (t.due_on, t.leg_due_on, t.due_provisional) != before


def request_transfer_out(transfer_id: str, person_id: str, insured_status: str | None,
                         insurance_type: str | None, here: str, to_region: str, start: date,
                         clock: Clock, calendar: WorkingCalendar,
                         trigger: str = "application", one_open: bool = False) -> Transfer:
    """SPEC transfer 1: a transfer-out needs the person's insurance here to be stopped, and
    one transfer at a time (`one_open`: the person already has an open one)."""
    _check_partner(here, to_region)
    if one_open:
        raise TransferRefused("transfer_open", "您已有一笔正在办理的医保关系转移")
    if insured_status != "suspended":
        raise TransferRefused(
            "not_suspended", "转出须先在本地停保（暂停参保），您当前的参保状态为"
            f"{_status_name(insured_status)}")
    t = Transfer(transfer_id, person_id, "out", here, to_region, Stage.AWAITING_INFO_SHEET,
                 trigger=trigger, insurance_type=insurance_type)
    start_clocks(t, start, clock, calendar)
    return t


def start_automatic(transfer_id: str, person_id: str, insured_status: str | None,
                    insurance_type: str | None, here: str, to_region: str, start: date,
                    clock: Clock, calendar: WorkingCalendar) -> Transfer | None:
    """SPEC transfer 5 (免申即享): the person became active in `to_region`, same province.

    Not insured here: nothing to move (None). Suspended: the transfer starts now. Still
    active: two insurances cannot both run, so it waits for the contributions here to stop."""
    if insured_status not in ("active", "suspended"):
        return None
    if insured_status == "active":
        return Transfer(transfer_id, person_id, "out", here, to_region,
                        Stage.AWAITING_SUSPENSION, trigger="automatic",
                        insurance_type=insurance_type)
    return request_transfer_out(transfer_id, person_id, insured_status, insurance_type, here,
                                to_region, start, clock, calendar, trigger="automatic")


def coverage_last_day(active_since: date, today: date) -> date:
    """SPEC transfer 5 / issue 10 item 6: the old region's coverage ends the day before the new
    one's starts, so the person is neither uninsured for a day nor insured twice.

    A new period that began before today (resident insurance is paid for the calendar year)
    cannot end coverage here retroactively: this region covered, and may have paid for, those
    days. It ends yesterday and the past overlap is left for the offices to settle (a refund
    of the double contribution)."""
    return max(active_since, today) - timedelta(days=1)


def issue_info_sheet(t: Transfer, name: str, months: int, balance_fen: int,
                     interconnected: frozenset[str], today: date) -> None:
    """A's office fixes what moves; electronic partners get it at once, others by letter."""
    if t.direction != "out" or t.stage != Stage.AWAITING_INFO_SHEET:
        raise TransferRefused("out_of_order",
                              f"an information sheet is not expected at stage {t.stage}")
    t.name = name
    t.contribution_months = months
    t.account_balance_fen = balance_fen
    if route(t.to_region, interconnected) == "electronic":
        t.mode, t.stage, t.dispatched_on = "electronic", Stage.SENT, today
    else:
        t.mode, t.stage = "paper", Stage.LETTER_PENDING


def pause(t: Transfer, on: date) -> None:
    if t.stage not in PAUSABLE:
        raise TransferRefused("out_of_order", f"cannot wait on the person at stage {t.stage}")
    t.resume_stage, t.stage, t.paused_since = t.stage, Stage.WAITING_ON_PERSON, on


def resume(t: Transfer, on: date, calendar: WorkingCalendar) -> int:
    """Restart the clocks; returns the working days they were stopped for."""
    if t.stage != Stage.WAITING_ON_PERSON or t.paused_since is None:
        raise TransferRefused("out_of_order", f"nothing is awaited from the person at {t.stage}")
    lost = max(0, calendar.working_days_between(t.paused_since, on, provisional=True))
    _budgets_from_dates(t, calendar)
    t.paused_working_days += lost
    if t.started_on is not None:
        _set_dues(t, t.started_on, calendar)
    t.stage, t.paused_since = t.resume_stage or Stage.AWAITING_INFO_SHEET, None
    t.resume_stage = None
    return lost


def track_letter(t: Transfer, tracking_number: str, mail_event: str, on: date) -> None:
    if t.mode != "paper":
        raise TransferRefused("not_paper", "this transfer went electronically; no letter")
    if mail_event == "sent":
        if t.stage != Stage.LETTER_PENDING:
            raise TransferRefused("out_of_order", f"letter already posted (stage {t.stage})")
        t.tracking_number, t.stage, t.dispatched_on = tracking_number, Stage.LETTER_SENT, on
        return
    if t.stage != Stage.LETTER_SENT or t.tracking_number != tracking_number:
        raise TransferRefused("out_of_order", "a delivery needs the posted letter's tracking "
                              f"number (stage {t.stage})")
    t.stage = Stage.LETTER_RECEIVED


@dataclass(frozen=True)
class Answer:
    """B's answer, from the partner inbox or keyed in from a paper reply."""

    sender: str
    accepted: bool
    credited_months: int | None = None
    credited_balance_fen: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Ignored:
    """Why an answer changed nothing; counted and logged, never applied."""

    reason: str  # unknown_transfer | wrong_partner | duplicate | late | out_of_order | mismatch
    detail: str


def apply_answer(t: Transfer | None, answer: Answer, on: date) -> Ignored | None:
    """SPEC transfer 3: A completes on B's acknowledgement, whose amounts must reconcile."""
    if t is None or t.direction != "out":
        return Ignored("unknown_transfer", "no transfer-out with this id here")
    if answer.sender != t.to_region:
        return Ignored("wrong_partner", f"answer from {answer.sender}, sent to {t.to_region}")
    if t.stage in (Stage.COMPLETED, Stage.FAILED):
        return Ignored("duplicate", f"already {t.stage}")
    if t.stage in CLOSED:
        return Ignored("late", f"transfer is {t.stage}")
    if t.stage not in AWAITING_ANSWER:
        return Ignored("out_of_order", f"not sent to the partner yet (stage {t.stage})")
    if not answer.accepted:
        t.stage, t.reason, t.completed_on = Stage.FAILED, answer.reason, on
        return None
    if (answer.credited_months, answer.credited_balance_fen) != (
            t.contribution_months, t.account_balance_fen):
        return Ignored("mismatch", f"partner credited {answer.credited_months} months / "
                       f"{answer.credited_balance_fen} fen; sent {t.contribution_months} / "
                       f"{t.account_balance_fen}")
    t.credited_months, t.credited_balance_fen = answer.credited_months, answer.credited_balance_fen
    t.stage, t.completed_on = Stage.COMPLETED, on
    return None


def receive_transfer_in(transfer_id: str, person_id: str, from_region: str, here: str,
                        insured_status: str | None, months: int, balance_fen: int,
                        in_leg_days: int, today: date, calendar: WorkingCalendar,
                        mode: str = "electronic", tracking_number: str | None = None
                        ) -> Transfer:
    """SPEC transfer 2: B takes in only a person already active here.

    With no balance to move (resident insurance has no personal account) the records merge
    at once; otherwise B waits, on its own leg's clock, until the balance has arrived. A
    paper transfer-in (the office keys in a contact letter) runs the same way."""
    t = Transfer(transfer_id, person_id, "in", from_region, here, Stage.RECEIVED,
                 mode=mode, tracking_number=tracking_number,
                 contribution_months=months, account_balance_fen=balance_fen,
                 started_on=today, in_leg_days=in_leg_days, leg_days=in_leg_days)
    _set_dues(t, today, calendar)
    if insured_status != "active":
        t.stage, t.completed_on = Stage.REFUSED, today
        where = region_name(here)
        t.reason = (f"{where}未查到您的正常参保记录（当前{_status_name(insured_status)}），"
                    f"请先在{where}参保缴费后再办理转移")
    elif balance_fen == 0:
        credit(t, today)
    return t


def confirm_funds(t: Transfer, amount_fen: int, today: date) -> None:
    """B's finance confirms A's balance arrived; only the exact amount completes the merge."""
    if t.direction != "in" or t.stage != Stage.RECEIVED:
        raise TransferRefused("out_of_order", f"no balance is awaited at stage {t.stage}")
    if amount_fen != t.account_balance_fen:
        raise TransferRefused("amount_mismatch", f"amount_fen: {amount_fen} arrived, the "
                              f"information sheet says {t.account_balance_fen}")
    credit(t, today)


def credit(t: Transfer, today: date) -> None:
    t.credited_months, t.credited_balance_fen = t.contribution_months, t.account_balance_fen
    t.stage, t.completed_on = Stage.COMPLETED, today


def reconciled(t: Transfer) -> bool | None:
    """Whether what was credited equals what the other region sent (None: nothing yet)."""
    if t.credited_months is None:
        return None
    return (t.credited_months, t.credited_balance_fen) == (
        t.contribution_months, t.account_balance_fen)


def partner_involved(t: Transfer) -> bool:
    """Whether the partner holds its own copy: it must hear of a cancellation."""
    return t.direction == "in" or (t.mode == "electronic" and t.stage in AWAITING_ANSWER)


def cancel(t: Transfer, reason: str, on: date) -> bool:
    """The person's death ends an open transfer; a closed one stays as it was."""
    if not t.is_open:
        return False
    t.stage, t.reason, t.completed_on = Stage.CANCELLED, reason, on
    return True


@dataclass(frozen=True)
class Overdue:
    clock: str  # "total" or "leg"
    due_on: date
    working_days_late: int


def newly_overdue(t: Transfer, today: date, calendar: WorkingCalendar) -> list[Overdue]:
    """Clocks that ran out and were not reported yet, now marked reported: each clock is
    reported once. A stopped clock is never overdue."""
    if not t.is_open or t.stage == Stage.WAITING_ON_PERSON:
        return []
    found = []
    # Counted provisionally past the holiday data: the timer never stops for a missing year.
    if t.due_on and not t.overdue_flagged and today > t.due_on:
        t.overdue_flagged = True
        found.append(Overdue("total", t.due_on, -working_days_left(calendar, today, t.due_on)))
    leg_due = t.leg_due_on
    if leg_due and today > leg_due and t.stage in LEG_RUNNING and not t.leg_overdue_flagged:
        t.leg_overdue_flagged = True
        found.append(Overdue("leg", leg_due, -working_days_left(calendar, today, leg_due)))
    return found


def estimated_completion(t: Transfer, today: date, calendar: WorkingCalendar) -> date | None:
    """When the person can expect it done: the office's remaining budget, never in the past."""
    if not t.is_open:
        return t.completed_on
    if t.stage in (Stage.WAITING_ON_PERSON, Stage.AWAITING_SUSPENSION) or t.in_leg_days is None:
        return None  # depends on the person (or on A's contributions stopping)
    if t.stage in AWAITING_ANSWER and t.dispatched_on:
        return max(today, due_after(calendar, t.dispatched_on, t.in_leg_days).on)
    if t.direction == "in" or t.leg_due_on is None:
        return t.leg_due_on
    return due_after(calendar, max(today, t.leg_due_on), t.in_leg_days).on


@dataclass
class Progress:
    due_on: date | None
    working_days_left: int | None
    estimated_completion: date | None
    clocks_stopped: bool


def progress(t: Transfer, today: date, calendar: WorkingCalendar) -> Progress:
    left = (working_days_left(calendar, today, t.due_on)
            if t.due_on and t.is_open and t.direction == "out" else None)
    return Progress(t.due_on, left, estimated_completion(t, today, calendar),
                    t.stage == Stage.WAITING_ON_PERSON)
