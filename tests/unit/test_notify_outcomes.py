"""Notify's circuit breaker and outcome journal: pure rules and a local file, no servers."""
from __future__ import annotations

from pathlib import Path

import pytest

from services.notify.breaker import CircuitBreaker
from services.notify.journal import OutcomeJournal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_a_streak_probes_after_the_pause_and_doubles_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, pause=5, max_pause=12, clock=clock)
    assert [breaker.failure() for _ in range(3)] == [False, False, True]
    assert breaker.is_open and breaker.allowance() == 0
    clock.now = 5
    assert breaker.allowance() == 1  # one probe
    assert breaker.failure()  # the probe failed: pause doubles
    clock.now = 14
    assert breaker.allowance() == 0
    clock.now = 15
    assert breaker.allowance() == 1
    breaker.failure()
    clock.now = 15 + 12  # capped at max_pause
    assert breaker.allowance() == 1
    breaker.success()
    assert not breaker.is_open and breaker.allowance() is None and not breaker.failing


def test_a_success_in_between_resets_the_streak() -> None:
    breaker = CircuitBreaker(failures=2, clock=Clock())
    breaker.failure()
    breaker.success()
    assert not breaker.failure()


def test_journal_keeps_answers_until_done_and_hand_overs_until_answered(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = OutcomeJournal(path)
    journal.handing_over(1)
    journal.handing_over(2)
    journal.append({"id": 1, "kind": "sent", "provider_ids": ["m"]})
    journal.handing_over(3)
    journal.done(3)  # e.g. written as unknown at the next start
    assert [e["id"] for e in journal.pending()] == [1]
    assert journal.unanswered() == [2]
    with open(path, "a", encoding="utf-8") as torn:
        torn.write('{"id": 9, "ki')  # a kill mid-write
    again = OutcomeJournal(path)
    again.handing_over(4)
    again.done(4)
    again.compact()
    assert [e["id"] for e in again.pending()] == [1] and again.unanswered() == [2]
    again.done(1)
    again.done(2)
    again.compact()
    assert path.read_text() == ""


def test_journal_syncs_hand_overs_and_answers_but_not_done_marks_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    journal = OutcomeJournal(tmp_path / "journal.jsonl")
    journal.handing_over(1)
    journal.append({"id": 1, "kind": "sent", "provider_ids": ["m"]})
    assert len(synced) == 2
    journal.done_many([1])  # alone: written, not synced
    assert len(synced) == 2 and journal.pending() == []
    journal.append_many([{"done": 1}, {"handing": 2}])  # with a hand-over: synced
    assert len(synced) == 3 and journal.unanswered() == [2]
