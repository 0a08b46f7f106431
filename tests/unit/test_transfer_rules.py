"""Transfer rules: statutory clocks, both legs, pauses, letters, answers, transfer-in."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.transfer.domain import transfer as rules
from services.transfer.domain.deadlines import DeadlineRules
from services.transfer.domain.transfer import Answer, Stage, TransferRefused
from shared.workdays import WorkingCalendar

TEST_CALENDAR = Path(__file__).parents[1] / "calendar"  # labelled test data for 2027
CAL = WorkingCalendar()
RULES = DeadlineRules()
PERSON = "110101199003074477"
# Monday before National Day 2026: 1-7 October off, Saturday 10 October a make-up working day.
BEFORE_HOLIDAY = date(2026, 9, 28)


def start(to_region: str = "370100", here: str = "210200", on: date = BEFORE_HOLIDAY,
          status: str = "suspended") -> rules.Transfer:
    return rules.request_transfer_out("T1", PERSON, status, "flexible", here, to_region, on,
                                      RULES.clock_for(here, to_region), CAL)


def test_cross_province_is_15_working_days_across_national_day() -> None:
    t = start()
    # 29, 30 Sep; 8, 9, 10 (make-up Saturday), 12-16, 19-23 Oct: the 15th is 23 October.
    assert t.due_on == date(2026, 10, 23)
    assert t.leg_due_on == date(2026, 10, 16)  # the transfer-out office's 10 days
    assert t.in_leg_days == 5
    assert t.stage == Stage.AWAITING_INFO_SHEET


def test_intra_province_is_9_working_days() -> None:
    t = start(to_region="370100", here="371000")
    assert t.due_on == date(2026, 10, 15)
    assert t.leg_due_on == date(2026, 10, 12)
    assert t.in_leg_days == 3


def test_transfer_out_needs_a_suspended_person() -> None:
    with pytest.raises(TransferRefused) as refused:
        start(status="active")
    assert refused.value.rule == "not_suspended"
    assert "暂停参保" in refused.value.reason and "正常参保" in refused.value.reason
    with pytest.raises(TransferRefused, match="不能是本统筹区"):
        start(to_region="210200")
    with pytest.raises(TransferRefused, match="不是有效的行政区划代码") as invalid:
        start(to_region="440399")
    assert invalid.value.rule == "unknown_region"


@pytest.mark.parametrize("to_region", ["440300", "110000", "650100", "330300"])
def test_any_region_of_china_is_reached_by_paper_letter(to_region: str) -> None:
    """Shenzhen, Beijing, Urumqi: not served here, not connected, still a transfer (000)."""
    t = start(to_region=to_region)
    assert t.stage == Stage.AWAITING_INFO_SHEET and t.due_on == date(2026, 10, 23)
    rules.issue_info_sheet(t, "张三", 12, 100, frozenset({"370100"}), date(2026, 9, 29))
    assert (t.mode, t.stage) == ("paper", Stage.LETTER_PENDING)
    assert rules.route("370100", frozenset({"370100"})) == "electronic"
    assert rules.region_name("440300") == "深圳市"


def without_2027(tmp_path: Path) -> WorkingCalendar:
    empty = tmp_path / "none"
    empty.mkdir(exist_ok=True)
    return WorkingCalendar([empty])


def test_a_due_date_past_the_holiday_data_is_provisional_then_recounted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    bare = without_2027(tmp_path)
    t = rules.request_transfer_out("T1", PERSON, "suspended", "flexible", "210200", "370100",
                                   date(2026, 12, 20), RULES.cross_province, bare)
    # 21-25, 28-31 Dec (9), then 2027 with weekends only off: 1, 4-8 Jan.
    assert (t.due_on, t.leg_due_on, t.due_provisional) == (
        date(2027, 1, 8), date(2027, 1, 1), True)
    assert rules.progress(t, date(2027, 1, 1), bare).working_days_left == 5
    # The timer keeps going in 2027 without the file: the clocks run out on their dates.
    late = rules.newly_overdue(t, date(2027, 1, 11), bare)
    assert [(o.clock, o.due_on) for o in late] == [("total", date(2027, 1, 8)),
                                                    ("leg", date(2027, 1, 1))]
    assert not rules.recount(t, bare, date(2027, 1, 11))  # still no schedule: nothing new
    # TEST DATA ONLY (not the State Council's schedule): 1 January off, Saturday 9 a
    # make-up day, so the recount moves and fixes both dates.
    folder = tmp_path / "with"
    folder.mkdir()
    (folder / "2027.toml").write_text(
        '# TEST DATA ONLY\nyear = 2027\nholidays = ["2027-01-01", "2027-01-04", "2027-01-05"]\n'
        'workdays = ["2027-01-09"]\n', encoding="utf-8")
    known = WorkingCalendar([folder])
    assert rules.recount(t, known, date(2027, 1, 11))
    assert (t.due_on, t.leg_due_on, t.due_provisional) == (
        date(2027, 1, 12), date(2027, 1, 6), False)
    # The total clock runs again (due tomorrow): reported anew should it run out.
    assert not t.overdue_flagged and t.leg_overdue_flagged
    assert not rules.recount(t, known, date(2027, 1, 11))  # definitive now


def test_the_labelled_test_calendar_makes_a_2027_date_definitive() -> None:
    cal = WorkingCalendar([TEST_CALENDAR])
    t = rules.request_transfer_out("T1", PERSON, "suspended", "flexible", "210200", "370100",
                                   date(2026, 12, 20), RULES.cross_province, cal)
    assert (t.due_on, t.due_provisional) == (date(2027, 1, 8), False)


def test_a_pause_across_a_year_without_data_extends_provisionally(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    bare = without_2027(tmp_path)
    t = rules.request_transfer_out("T1", PERSON, "suspended", "flexible", "210200", "370100",
                                   date(2026, 12, 28), RULES.cross_province, bare)
    rules.pause(t, date(2026, 12, 29))
    assert rules.resume(t, date(2027, 1, 5), bare) == 5  # 30, 31 Dec; 1, 4, 5 Jan
    assert t.due_provisional and t.paused_working_days == 5
    assert t.due_on == bare.add_working_days(date(2026, 12, 28), 20, provisional=True)


def test_coverage_in_the_old_region_ends_the_day_before_the_new_one_starts() -> None:
    today = date(2026, 11, 24)
    assert rules.coverage_last_day(date(2027, 1, 1), today) == date(2026, 12, 31)
    assert rules.coverage_last_day(date(2026, 11, 24), today) == date(2026, 11, 23)
    # A period there backdated to 1 January: no retroactive end here, it ends yesterday.
    assert rules.coverage_last_day(date(2026, 1, 1), today) == date(2026, 11, 23)


def test_transfer_in_reconciles_what_was_sent() -> None:
    t = rules.receive_transfer_in("L-1", PERSON, "440300", "210200", "active", 60, 12_345, 5,
                                  BEFORE_HOLIDAY, CAL, mode="paper",
                                  tracking_number="XA120045678CN")
    assert rules.reconciled(t) is None and t.stage == Stage.RECEIVED and t.mode == "paper"
    rules.confirm_funds(t, 12_345, date(2026, 10, 9))
    assert rules.reconciled(t) is True
    assert (t.credited_months, t.credited_balance_fen) == (60, 12_345)


def test_info_sheet_sends_electronically_or_by_letter() -> None:
    electronic = start()
    rules.issue_info_sheet(electronic, "张三", 126, 345678, frozenset({"370100"}),
                           date(2026, 9, 29))
    assert (electronic.mode, electronic.stage) == ("electronic", Stage.SENT)
    paper = start()
    rules.issue_info_sheet(paper, "张三", 126, 345678, frozenset(), date(2026, 9, 29))
    assert (paper.mode, paper.stage) == ("paper", Stage.LETTER_PENDING)
    with pytest.raises(TransferRefused):
        rules.issue_info_sheet(paper, "张三", 126, 345678, frozenset(), date(2026, 9, 29))


def test_waiting_on_the_person_stops_the_clocks() -> None:
    t = start()
    rules.pause(t, date(2026, 9, 29))
    assert rules.newly_overdue(t, date(2026, 12, 1), CAL) == []  # a stopped clock is not late
    assert rules.estimated_completion(t, date(2026, 9, 30), CAL) is None
    lost = rules.resume(t, date(2026, 10, 9), CAL)
    assert lost == 3  # 30 Sep, 8 Oct, 9 Oct
    assert t.due_on == date(2026, 10, 28)  # 23 Oct + 3 working days
    assert t.leg_due_on == date(2026, 10, 21)
    assert t.stage == Stage.AWAITING_INFO_SHEET and t.paused_working_days == 3


def test_paper_letter_must_be_posted_before_it_is_delivered() -> None:
    t = start()
    rules.issue_info_sheet(t, "张三", 12, 0, frozenset(), date(2026, 9, 29))
    with pytest.raises(TransferRefused):
        rules.track_letter(t, "XA123456789CN", "received", date(2026, 9, 30))
    rules.track_letter(t, "XA123456789CN", "sent", date(2026, 9, 30))
    with pytest.raises(TransferRefused):
        rules.track_letter(t, "XB000000000CN", "received", date(2026, 10, 9))
    rules.track_letter(t, "XA123456789CN", "received", date(2026, 10, 9))
    assert (t.stage, t.tracking_number) == (Stage.LETTER_RECEIVED, "XA123456789CN")


def sent() -> rules.Transfer:
    t = start()
    rules.issue_info_sheet(t, "张三", 126, 345678, frozenset({"370100"}), date(2026, 9, 29))
    return t


def test_acknowledgement_completes_only_when_amounts_reconcile() -> None:
    t = sent()
    ignored = rules.apply_answer(t, Answer("370100", True, 126, 345677), date(2026, 10, 8))
    assert ignored is not None and ignored.reason == "mismatch"
    assert t.stage == Stage.SENT
    assert rules.apply_answer(t, Answer("370100", True, 126, 345678), date(2026, 10, 8)) is None
    assert (t.stage, t.credited_months, t.credited_balance_fen) == (Stage.COMPLETED, 126, 345678)
    assert t.completed_on == date(2026, 10, 8)


@pytest.mark.parametrize(("prepare", "answer", "reason"), [
    (lambda: None, Answer("370100", True, 1, 1), "unknown_transfer"),
    (sent, Answer("330300", True, 126, 345678), "wrong_partner"),
    (start, Answer("370100", True, 126, 345678), "out_of_order"),
])
def test_answers_that_change_nothing(prepare, answer, reason) -> None:  # type: ignore[no-untyped-def]
    t = prepare()
    before = None if t is None else (t.stage, t.completed_on)
    ignored = rules.apply_answer(t, answer, date(2026, 10, 8))
    assert ignored is not None and ignored.reason == reason
    assert before == (None if t is None else (t.stage, t.completed_on))


def test_duplicate_and_late_answers() -> None:
    t = sent()
    assert rules.apply_answer(t, Answer("370100", False, reason="not active"),
                              date(2026, 10, 8)) is None
    assert t.stage == Stage.FAILED
    again = rules.apply_answer(t, Answer("370100", True, 126, 345678), date(2026, 10, 9))
    assert again is not None and again.reason == "duplicate" and t.stage == Stage.FAILED
    cancelled = sent()
    assert rules.cancel(cancelled, "died", date(2026, 10, 8))
    late = rules.apply_answer(cancelled, Answer("370100", True, 126, 345678), date(2026, 10, 9))
    assert late is not None and late.reason == "late" and cancelled.stage == Stage.CANCELLED
    assert not rules.cancel(cancelled, "again", date(2026, 10, 9))


def test_transfer_in_takes_only_an_active_person() -> None:
    refused = rules.receive_transfer_in("T1", PERSON, "210200", "370100", "suspended", 126,
                                        345678, 5, BEFORE_HOLIDAY, CAL)
    assert refused.stage == Stage.REFUSED and "济南" in (refused.reason or "")
    waiting = rules.receive_transfer_in("T1", PERSON, "210200", "370100", "active", 126,
                                        345678, 5, BEFORE_HOLIDAY, CAL)
    assert waiting.stage == Stage.RECEIVED and waiting.leg_due_on == date(2026, 10, 10)
    with pytest.raises(TransferRefused, match="amount_fen"):
        rules.confirm_funds(waiting, 345600, date(2026, 10, 8))
    rules.confirm_funds(waiting, 345678, date(2026, 10, 8))
    assert (waiting.stage, waiting.credited_months, waiting.credited_balance_fen) == (
        Stage.COMPLETED, 126, 345678)
    resident = rules.receive_transfer_in("T2", PERSON, "371000", "370100", "active", 36, 0, 3,
                                         BEFORE_HOLIDAY, CAL)
    assert resident.stage == Stage.COMPLETED  # no personal account: nothing to wait for


def test_overdue_clocks_are_reported_once_each() -> None:
    t = start()
    assert rules.newly_overdue(t, date(2026, 10, 16), CAL) == []
    leg_late = rules.newly_overdue(t, date(2026, 10, 19), CAL)
    assert [(o.clock, o.due_on, o.working_days_late) for o in leg_late] == [
        ("leg", date(2026, 10, 16), 1)]
    assert rules.newly_overdue(t, date(2026, 10, 20), CAL) == []  # the leg was reported
    later = rules.newly_overdue(t, date(2026, 10, 27), CAL)
    assert [(o.clock, o.working_days_late) for o in later] == [("total", 2)]
    assert rules.newly_overdue(t, date(2026, 10, 28), CAL) == []


def test_estimated_completion_follows_the_stage() -> None:
    t = start()
    # Out-leg budget to 16 Oct, then the transfer-in office's 5 working days.
    assert rules.estimated_completion(t, BEFORE_HOLIDAY, CAL) == date(2026, 10, 23)
    rules.issue_info_sheet(t, "张三", 126, 345678, frozenset({"370100"}), date(2026, 9, 29))
    assert rules.estimated_completion(t, date(2026, 9, 29), CAL) == date(2026, 10, 12)
    p = rules.progress(t, date(2026, 9, 29), CAL)
    assert p.working_days_left == 14 and p.due_on == date(2026, 10, 23)


def test_one_open_transfer_at_a_time() -> None:
    with pytest.raises(TransferRefused) as refused:
        rules.request_transfer_out("T2", PERSON, "suspended", "resident", "210200", "370100",
                                   BEFORE_HOLIDAY, RULES.cross_province, CAL, one_open=True)
    assert refused.value.rule == "transfer_open"


def test_automatic_transfer_within_the_province() -> None:
    def auto(status: str | None) -> rules.Transfer | None:
        return rules.start_automatic("AUTO-1", PERSON, status, "resident", "371000", "370100",
                                     BEFORE_HOLIDAY, RULES.intra_province, CAL)

    assert auto(None) is None and auto("transferred_out") is None
    waiting = auto("active")
    assert waiting is not None and waiting.stage == Stage.AWAITING_SUSPENSION
    assert not waiting.due_provisional
    assert waiting.due_on is None and waiting.trigger == "automatic"
    started = auto("suspended")
    assert started is not None and started.stage == Stage.AWAITING_INFO_SHEET
    assert started.due_on == date(2026, 10, 15)


def test_the_partner_hears_of_a_cancellation_only_when_it_holds_a_copy() -> None:
    t = start()
    assert not rules.partner_involved(t)  # still with A's office
    rules.issue_info_sheet(t, "张三", 12, 0, frozenset({"370100"}), date(2026, 9, 29))
    assert rules.partner_involved(t)
    paper = start()
    rules.issue_info_sheet(paper, "张三", 12, 0, frozenset(), date(2026, 9, 29))
    assert not rules.partner_involved(paper)


def test_the_clocks_record_where_their_days_came_from() -> None:
    clock = rules.Clock(15, 10, 5, source="policy 2026.1, measure 210200-2026.1-transfer-deadlines")
    t = rules.request_transfer_out("T1", PERSON, "suspended", "flexible", "210200", "370100",
                                   BEFORE_HOLIDAY, clock, CAL)
    assert (t.total_days, t.leg_days, t.in_leg_days) == (15, 10, 5)
    assert t.clock_source == clock.source and t.due_on == date(2026, 10, 23)


def test_on_1_january_2027_with_and_without_the_schedule(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    new_year = date(2027, 1, 1)
    without = rules.request_transfer_out("T1", PERSON, "suspended", "flexible", "210200",
                                         "370100", new_year, RULES.cross_province,
                                         without_2027(tmp_path))
    with_file = rules.request_transfer_out("T2", PERSON, "suspended", "flexible", "210200",
                                           "370100", new_year, RULES.cross_province,
                                           WorkingCalendar([TEST_CALENDAR]))
    # Accepted either way; only the mark differs (the test calendar has no holidays, so the
    # dates agree; a real schedule may move them when recounted).
    assert (without.due_on, without.due_provisional) == (date(2027, 1, 22), True)
    assert (with_file.due_on, with_file.due_provisional) == (date(2027, 1, 22), False)

