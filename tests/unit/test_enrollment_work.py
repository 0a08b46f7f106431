"""Enrollment's unit of work: reads like the database, writes once per table."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from services.enrollment.domain.coverage import Period
from services.enrollment.domain.model import Application, ApplicationState, Person
from services.enrollment.work import UnitOfWork
from shared.db import sealed
from shared.db.sealed import DataKeys, new_key

P1, P2 = "210202199001011234", "210202198502023456"


@pytest.fixture(autouse=True)
def ring() -> Iterator[None]:
    sealed.use_keys(DataKeys([new_key(sealed.SEAL), new_key(sealed.HASH)]))
    yield
    sealed.use_keys(None)


class EmptyConnection:
    """A database with nothing stored yet: every load finds nothing; statements are kept."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.executed: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.fetched.append(sql.split(" WHERE ")[0])
        return []

    async def execute(self, sql: str, *args: Any) -> str:
        self.executed.append(sql)
        return "OK"


def _table(sql: str) -> str:
    words = sql.replace("(", " ").split()
    for marker in ("INTO", "UPDATE", "FROM"):
        if marker in words:
            return words[words.index(marker) + 1]
    raise AssertionError(sql)


async def test_one_query_per_table_to_load_and_one_statement_per_table_to_write() -> None:
    conn = EmptyConnection()
    work = UnitOfWork(conn)  # type: ignore[arg-type]
    await work.preload(persons=[P1, P2], latest_of=[P1, P2], applications=["A1", "A2"],
                       payments=["T1"], parked_of=[P1], periods_of=[P1, P2], early_for=["A1"])
    assert len(conn.fetched) == 5  # persons, applications, payments, periods, early decisions
    for pid, app in ((P1, "A1"), (P2, "A2")):
        await work.save_person(Person(pid, "周杰", "13800000000", None, "resident"))
        await work.save_application(Application(app, pid, "resident", "window"))
        await work.record_history(pid, app, "application submitted", {}, "e", "t")
        await work.record_history(pid, pid, "status changed", {}, "e", "t")
        await work.save_periods(pid, [Period("resident", date(2026, 1, 1), date(2026, 12, 31),
                                             "tax_payment", "T")])
        await work.save_payment(f"T-{pid}", pid, app, (date(2026, 1, 1), date(2026, 12, 31)),
                                100, "applied", None)
    assert conn.executed == []  # nothing before the flush
    await work.flush()
    tables = [_table(sql) for sql in conn.executed]
    # Periods are replaced: the persons' old rows go in one statement, the new in another.
    assert sorted(tables) == sorted(["persons", "applications", "payments",
                                     "coverage_periods", "coverage_periods", "history"])
    # Nothing asked for again, nothing written twice.
    assert len(conn.fetched) == 5
    await work.flush()
    assert len(conn.executed) == 6


async def test_reads_are_copies_so_a_refused_change_is_not_kept() -> None:
    work = UnitOfWork(EmptyConnection())  # type: ignore[arg-type]
    await work.preload(persons=[P1], applications=["A1"])
    await work.save_application(Application("A1", P1, "resident", "window"))
    read = await work.application("A1")
    assert read is not None
    read.state = ApplicationState.APPROVED  # decided, then refused: never saved
    again = await work.application("A1")
    assert again is not None and again.state == ApplicationState.SUBMITTED
    assert await work.latest_application(P1) == again  # a new application is the latest


async def test_parked_payments_come_in_the_order_they_were_recorded() -> None:
    work = UnitOfWork(EmptyConnection())  # type: ignore[arg-type]
    period = (date(2026, 1, 1), date(2026, 12, 31))
    for ref in ("T2", "T1", "T3"):
        await work.save_payment(ref, P1, None, period, 100, "parked", "no enrollment")
    await work.mark_payment_applied("T1")
    assert [p["payment_ref"] for p in await work.parked_payments(P1)] == ["T2", "T3"]
    assert await work.payment_exists("T1") and not await work.payment_exists("T9")
