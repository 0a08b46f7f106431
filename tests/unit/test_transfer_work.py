"""Transfer's unit of work and counted due dates: in-memory state as the database would show it."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from services.transfer.domain.deadlines import due_after
from services.transfer.domain.transfer import Stage, Transfer
from services.transfer.work import Work
from shared.workdays import WorkingCalendar

SCHEDULES = Path(__file__).parents[1] / "calendar"  # a 2027 file


def test_a_counted_due_date_is_the_calendars_own_and_a_new_calendar_counts_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDINS_CALENDAR_DIR", raising=False)
    without = WorkingCalendar()
    for start in (date(2026, 3, 2) + timedelta(days=d) for d in range(0, 300, 7)):
        for days in (3, 9, 15):
            assert due_after(without, start, days) == without.due_date(start, days)
            assert due_after(without, start, days) == without.due_date(start, days)
    start = date(2026, 12, 20)  # 15 working days reach into 2027
    assert due_after(without, start, 15).provisional
    # A schedule file added since: the new calendar is not given the old count.
    with_2027 = WorkingCalendar([SCHEDULES])
    assert not due_after(with_2027, start, 15).provisional
    assert due_after(with_2027, start, 15) == with_2027.due_date(start, 15)


def transfer(transfer_id: str, person: str, stage: Stage = Stage.AWAITING_INFO_SHEET
             ) -> Transfer:
    return Transfer(transfer_id, person, "out", "210200", "370100", stage)


def test_a_later_event_sees_what_an_earlier_one_saved_and_nothing_it_did_not() -> None:
    work = Work(conn=None)  # type: ignore[arg-type]  # nothing loaded, nothing flushed
    work.save(transfer("TR-1", "P1"), "accepted", "e1")
    seen = work.transfer("out", "TR-1", "210200")
    assert seen is not None and seen.stage == Stage.AWAITING_INFO_SHEET
    seen.stage = Stage.SENT  # changed by a rule, then refused: not saved
    again = work.transfer("out", "TR-1", "210200")
    assert again is not None and again.stage == Stage.AWAITING_INFO_SHEET
    assert [t.transfer_id for t in work.open_transfers_of("P1")] == ["TR-1"]
    assert work.has_transfer_between("P1", "370100")

    seen.stage = Stage.CANCELLED
    work.save(seen, "cancelled", "e2")
    work.save(transfer("TR-2", "P1"), "accepted", "e3")
    assert [t.transfer_id for t in work.open_transfers_of("P1")] == ["TR-2"]
    work.save(transfer("TR-3", "P1", Stage.AWAITING_SUSPENSION), "waits", "e4")
    assert [t.transfer_id for t in work.open_transfers_of("P1")] == ["TR-2", "TR-3"]
    assert [t.transfer_id for t in work.awaiting_suspension("P1")] == ["TR-3"]


def test_what_a_group_did_not_load_is_not_guessed() -> None:
    work = Work(conn=None)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        work.transfer("out", "TR-9", "210200")
    with pytest.raises(KeyError):
        work.open_transfers_of("P9")
