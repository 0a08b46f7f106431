"""Reimbursement's set-based handling: the in-memory state a batch decides against."""
from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.reimbursement.batched import _count, _DayMemo
from services.reimbursement.domain.claims import Claim, Coverage, DeclaredOutage, Stage
from services.reimbursement.handlers import judge_record
from shared.contracts.hospital import SettlementRecord
from shared.devstack import people
from shared.policy import AnnualTotals, NoPolicyInForce

DAY = date(2026, 3, 2)


def claim(stage: Stage, payable: int | None = 10_000, line: str = "medical") -> Claim:
    return Claim("C-1", "P", 1, stage, DAY, 20_000, 20_000, 1, "in_region",
                 payable_fen=payable, benefit_line=line)


def test_an_approved_claim_counts_in_its_lines_totals_and_leaves_them_when_replaced() -> None:
    totals: dict[tuple[str, str, int], AnnualTotals] = {}
    _count(totals, claim(Stage.APPROVED), 3_000, 1)
    _count(totals, claim(Stage.PAID, 5_000, "maternity_medical"), 0, 1)
    assert totals[("P", "medical", 2026)] == AnnualTotals("medical", 2026, 10_000, 0, 3_000, 0)
    _count(totals, claim(Stage.APPROVED), 3_000, -1)
    assert totals[("P", "medical", 2026)] == AnnualTotals("medical", 2026)
    assert totals[("P", "maternity_medical", 2026)].claims_paid_fen == 5_000


@pytest.mark.parametrize("stage", [Stage.CALCULATION, Stage.AWAITING_POLICY, Stage.REJECTED])
def test_a_claim_not_approved_or_paid_counts_nowhere(stage: Stage) -> None:
    totals: dict[tuple[str, str, int], AnnualTotals] = {}
    _count(totals, claim(stage), 3_000, 1)
    assert totals == {}


class Book:
    """Counts the questions a memo lets through."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, date]] = []

    def claim_deadline(self, day: date) -> Any:
        self.asked.append(("deadline", day))
        if day.year < 2000:
            raise NoPolicyInForce("210200", day)
        return date(day.year + 1, day.month, day.day), []

    def intra_province_without_filing(self, day: date) -> Any:
        self.asked.append(("intra", day))
        return None


def test_the_book_is_asked_once_per_day_and_a_day_without_policy_each_time() -> None:
    book = Book()
    memo = _DayMemo(book)  # type: ignore[arg-type]
    for _ in range(3):
        assert memo.claim_deadline(DAY)[0] == date(2027, 3, 2)
        assert memo.intra_province_without_filing(DAY) is None
        with pytest.raises(NoPolicyInForce):
            memo.claim_deadline(date(1999, 1, 1))
    assert book.asked.count(("deadline", DAY)) == book.asked.count(("intra", DAY)) == 1
    assert book.asked.count(("deadline", date(1999, 1, 1))) == 3


def record(person: str, **extra: Any) -> SettlementRecord:
    return SettlementRecord(**{"record_id": "R1", "person_id": person, "expense_date": DAY,
                               "amount_fen": 9_000, "eligible_fen": 8_000} | extra)


def test_a_records_route_by_its_id_care_coverage_and_the_declared_outage() -> None:
    person = people.resident_id()
    covered = [Coverage("resident", date(2026, 1, 1), None)]
    outage = DeclaredOutage("O", DAY, DAY, date(2026, 6, 1))
    assert judge_record("210200", record(person), covered, [outage])[:2] == ("proactive", "")
    assert judge_record("210200", record(person), covered, [])[0] == "awaiting_declaration"
    assert judge_record("210200", record(person, care="inpatient"), covered,
                        [outage])[0] == "manual"
    route, reason, _, _ = judge_record("210200", record("123"), [], [outage])
    assert route == "rejected" and reason.startswith("person_id: ")
    route, reason, _, _ = judge_record("210200", record(person), [], [outage])
    assert route == "rejected" and "not insured here" in reason
