"""Where enrollment's main handlers read and write: per event (Direct) or per batch (UnitOfWork)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, TypeVar

import asyncpg

from services.enrollment import repository as repo
from services.enrollment.domain.coverage import Period
from services.enrollment.domain.model import Application, Person
from shared.db.sealed import resident_keys

T = TypeVar("T")


class Direct:
    """Each read and each write a statement of its own, at once: the per-event handlers."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def person(self, person_id: str) -> Person | None:
        return await repo.load_person(self.conn, person_id)

    async def save_person(self, person: Person) -> None:
        await repo.save_person(self.conn, person)

    async def application(self, application_id: str) -> Application | None:
        return await repo.load_application(self.conn, application_id)

    async def application_for(self, reference: str, person_id: str) -> Application | None:
        return await repo.application_for(self.conn, reference, person_id)

    async def latest_application(self, person_id: str) -> Application | None:
        return await repo.latest_application(self.conn, person_id)

    async def save_application(self, application: Application) -> None:
        await repo.save_application(self.conn, application)

    async def record_history(self, person_id: str, reference: str, what: str,
                             detail: dict[str, Any], cause_id: str, cause_type: str) -> None:
        await repo.record_history(self.conn, person_id, reference, what, detail, cause_id,
                                  cause_type)

    async def record_refusal(self, person_id: str, reference: str, request_type: str,
                             rule: str, reason: str, cause_id: str) -> None:
        await repo.record_refusal(self.conn, person_id, reference, request_type, rule, reason,
                                  cause_id)

    async def payment_exists(self, payment_ref: str) -> bool:
        return await repo.payment_exists(self.conn, payment_ref)

    async def save_payment(self, ref: str, person_id: str, application_id: str | None,
                           period: tuple[Any, Any], amount_fen: int, state: str,
                           reason: str | None) -> None:
        await repo.save_payment(self.conn, ref, person_id, application_id, period, amount_fen,
                                state, reason)

    async def parked_payments(self, person_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await repo.parked_payments(self.conn, person_id)]

    async def mark_payment_applied(self, payment_ref: str) -> None:
        await repo.mark_payment_applied(self.conn, payment_ref)

    async def periods(self, person_id: str) -> list[Period]:
        return await repo.load_periods(self.conn, person_id)

    async def save_periods(self, person_id: str, periods: list[Period]) -> None:
        await repo.save_periods(self.conn, person_id, periods)

    async def schedule_change(self, person_id: str, to_status: str, effective_on: date,
                              cause_id: str, correlation_id: str) -> None:
        await repo.schedule_change(self.conn, person_id, to_status, effective_on, cause_id,
                                   correlation_id)

    async def take_early_decisions(self, application_id: str,
                                   person_id: str | None) -> list[dict[str, Any]]:
        return await repo.take_early_decisions(self.conn, application_id, person_id)

    async def flush(self) -> None:
        """Nothing is held back."""


def _copy(value: T) -> T:
    """A shallow copy of a plain dataclass (without running its __init__: many per batch)."""
    copied = object.__new__(type(value))
    copied.__dict__.update(value.__dict__)
    return copied


def _copy_application(a: Application) -> Application:
    copied = _copy(a)
    copied.reasons = list(a.reasons)
    return copied


class UnitOfWork:
    """A batch's state of the persons, applications, payments and periods it touches: loaded
    with one query per table (`preload`), read and changed in memory as the per-event
    handlers would read and change the database (each read gives a fresh copy, so what a
    refused decision changed is not kept), and written with one statement per table
    (`flush`). A row not preloaded is loaded when first asked for."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._owner: dict[str, str] = {}  # every valid hash of an ID seen -> the ID
        self._keys_of: dict[str, list[str]] = {}
        self._persons: dict[str, Person | None] = {}
        # Each person's row as loaded, with its values opened (None: no row yet).
        self._person_rows: dict[str, repo.StoredPerson] = {}
        self.ids = repo.BatchIds()
        self._apps: dict[str, Application | None] = {}
        self._apps_stored: set[str] = set()
        self._apps_of: dict[str, dict[str, None]] = {}  # person -> ids of theirs in `_apps`
        self._latest: dict[str, str | None] = {}  # person -> their latest application's id
        self._payments: dict[str, dict[str, Any]] = {}  # payment_ref -> row
        self._no_payment: set[str] = set()  # references looked up and not found
        self._parked_of: set[str] = set()  # persons whose stored parked payments are loaded
        self._periods: dict[str, list[Period]] = {}
        # Decisions that waited, by (application number, the person they name or None).
        self._early: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        self._early_taken: set[tuple[str, str | None]] = set()
        # Writes held until flush, in the order they were made.
        self._dirty_persons: dict[str, None] = {}
        self._dirty_apps: dict[str, None] = {}
        self._new_payments: dict[str, None] = {}
        self._seq = 0  # the order payments of this batch were recorded in
        self._applied: dict[str, None] = {}
        self._dirty_periods: dict[str, None] = {}
        self._history: list[repo.HistoryRow] = []
        self._refusals: list[repo.RefusalRow] = []
        self._scheduled: list[repo.ScheduledRow] = []

    def _keys(self, person_ids: Iterable[str]) -> list[str]:
        """Every valid hash of each ID (each computed once per batch)."""
        keys = []
        for pid in person_ids:
            found = self._keys_of.get(pid)
            if found is None:
                found = self._keys_of[pid] = resident_keys(pid)
                for key in found:
                    self._owner[key] = pid
            keys += found
        return keys

    async def preload(self, *, persons: Iterable[str] = (), applications: Iterable[str] = (),
                      latest_of: Iterable[str] = (), payments: Iterable[str] = (),
                      parked_of: Iterable[str] = (), periods_of: Iterable[str] = (),
                      early_for: Iterable[tuple[str, str | None]] = ()) -> None:
        """Load what is not loaded yet: one query per table."""
        pids = [p for p in dict.fromkeys(persons) if p not in self._persons]
        if pids:
            keys = self._keys(pids)
            for pid in pids:
                self._persons[pid] = None
                self._person_rows[pid] = None
            for row in await repo.load_persons_of(self.conn, keys):
                person = repo.person_of(row, self._owner)
                self._persons[person.person_id] = person
                self._person_rows[person.person_id] = (_copy(person), row)
        app_ids = [a for a in dict.fromkeys(applications) if a not in self._apps]
        latest = [p for p in dict.fromkeys(latest_of) if p not in self._latest]
        if app_ids or latest:
            for app_id in app_ids:
                self._apps[app_id] = None
            for pid in latest:
                self._latest[pid] = None
            for row in await repo.load_applications_of(self.conn, app_ids, self._keys(latest)):
                app_id = row["application_id"]
                if self._apps.get(app_id) is None:  # else as changed in memory
                    app = self._apps[app_id] = repo.application_of(row, self._owner)
                    self._apps_of.setdefault(app.person_id, {})[app_id] = None
                self._apps_stored.add(app_id)
                pid = self._owner.get(row["person_key"])
                if pid in latest:
                    self._latest[pid] = app_id  # rows come oldest first
        refs = [r for r in dict.fromkeys(payments)
                if r not in self._payments and r not in self._no_payment]
        parked = [p for p in dict.fromkeys(parked_of) if p not in self._parked_of]
        if refs or parked:
            self._no_payment.update(refs)
            self._parked_of.update(parked)
            for row in await repo.load_payments_of(self.conn, refs, self._keys(parked)):
                known = self._payments.get(row["payment_ref"])
                if known is not None:  # as changed in memory; now its person is known too
                    known["person_id"] = known["person_id"] or self._owner.get(
                        row["person_key"])
                    continue
                self._no_payment.discard(row["payment_ref"])
                self._payments[row["payment_ref"]] = {
                    **dict(row), "person_id": self._owner.get(row["person_key"]), "new": False}
        covered = [p for p in dict.fromkeys(periods_of) if p not in self._periods]
        if covered:
            for pid in covered:
                self._periods[pid] = []
            for row in await repo.load_periods_of(self.conn, self._keys(covered)):
                self._periods[self._owner[row["person_key"]]].append(repo.period_of(row))
        early = [a for a in dict.fromkeys(early_for) if a not in self._early_taken]
        if early:
            self._keys(p for _, p in early if p is not None)  # their hashes -> the IDs
            self._early_taken.update(early)
            # Those naming no person are taken with the first pair of their number.
            self._early_taken.update((a, None) for a, _ in early)
            for pair, rows in (await repo.take_early_decisions_of(
                    self.conn, early, self._owner)).items():
                self._early.setdefault(pair, []).extend(rows)

    # --- reads and writes, as Direct's -------------------------------------------------

    async def person(self, person_id: str) -> Person | None:
        if person_id not in self._persons:
            await self.preload(persons=[person_id])
        person = self._persons[person_id]
        return None if person is None else _copy(person)

    async def save_person(self, person: Person) -> None:
        if person.person_id not in self._persons:  # saved unread: as Direct, by any hash
            await self.preload(persons=[person.person_id])
        self._persons[person.person_id] = _copy(person)
        self._dirty_persons[person.person_id] = None

    async def application(self, application_id: str) -> Application | None:
        if application_id not in self._apps:
            await self.preload(applications=[application_id])
        found = self._apps[application_id]
        return None if found is None else _copy_application(found)

    async def application_for(self, reference: str, person_id: str) -> Application | None:
        """As repo.application_for: the person's own under the number (by id, or by the
        channel's number among the person's applications, all loaded), else the id's."""
        found = await self.application(reference)
        if found is not None and found.person_id == person_id:
            return found
        if person_id not in self._latest:
            await self.preload(latest_of=[person_id])  # loads every application of theirs
        for app_id in self._apps_of.get(person_id, ()):
            app = self._apps[app_id]
            if app is not None and app.channel_ref == reference:
                return _copy_application(app)
        return found

    async def latest_application(self, person_id: str) -> Application | None:
        if person_id not in self._latest:
            await self.preload(latest_of=[person_id])
        app_id = self._latest[person_id]
        return None if app_id is None else await self.application(app_id)

    async def save_application(self, application: Application) -> None:
        app_id = application.application_id
        if app_id not in self._apps:
            await self.preload(applications=[app_id])
        if app_id not in self._apps_stored and self._apps.get(app_id) is None:
            # A new application is its person's latest (its row's creation time is the
            # latest of theirs).
            self._latest[application.person_id] = app_id
        self._apps[app_id] = _copy_application(application)
        self._apps_of.setdefault(application.person_id, {})[app_id] = None
        self._dirty_apps[app_id] = None

    async def record_history(self, person_id: str, reference: str, what: str,
                             detail: dict[str, Any], cause_id: str, cause_type: str) -> None:
        self._history.append((person_id, reference, what, detail, cause_id, cause_type))

    async def record_refusal(self, person_id: str, reference: str, request_type: str,
                             rule: str, reason: str, cause_id: str) -> None:
        self._refusals.append((person_id, reference, request_type, rule, reason, cause_id))

    async def payment_exists(self, payment_ref: str) -> bool:
        if payment_ref not in self._payments and payment_ref not in self._no_payment:
            await self.preload(payments=[payment_ref])
        return payment_ref in self._payments

    async def save_payment(self, ref: str, person_id: str, application_id: str | None,
                           period: tuple[Any, Any], amount_fen: int, state: str,
                           reason: str | None) -> None:
        self._no_payment.discard(ref)
        self._payments[ref] = {
            "payment_ref": ref, "person_id": person_id, "application_id": application_id,
            "period_start": period[0], "period_end": period[1], "amount_fen": amount_fen,
            "state": state, "reason": reason, "recorded_at": None, "new": True,
            "seq": self._seq}
        self._seq += 1
        self._new_payments[ref] = None

    async def parked_payments(self, person_id: str) -> list[dict[str, Any]]:
        if person_id not in self._parked_of:
            await self.preload(parked_of=[person_id])
        # Those stored before oldest first, then those of this batch in the order they came.
        parked = [dict(p) for p in self._payments.values()
                  if p["person_id"] == person_id and p["state"] == "parked"]
        return sorted(parked, key=lambda p: (1, p["seq"]) if "seq" in p
                      else (0, p["recorded_at"]))

    def persons_with_parked_payments(self) -> list[str]:
        return list(dict.fromkeys(p["person_id"] for p in self._payments.values()
                                  if p["state"] == "parked" and p["person_id"] is not None))

    async def mark_payment_applied(self, payment_ref: str) -> None:
        payment = self._payments[payment_ref]
        payment["state"], payment["reason"] = "applied", None
        if not payment["new"]:
            self._applied[payment_ref] = None

    async def periods(self, person_id: str) -> list[Period]:
        if person_id not in self._periods:
            await self.preload(periods_of=[person_id])
        return list(self._periods[person_id])

    async def save_periods(self, person_id: str, periods: list[Period]) -> None:
        self._periods[person_id] = list(periods)
        self._dirty_periods[person_id] = None

    async def schedule_change(self, person_id: str, to_status: str, effective_on: date,
                              cause_id: str, correlation_id: str) -> None:
        self._scheduled.append((person_id, to_status, effective_on, cause_id, correlation_id))

    async def take_early_decisions(self, application_id: str,
                                   person_id: str | None) -> list[dict[str, Any]]:
        if (application_id, person_id) not in self._early_taken:
            await self.preload(early_for=[(application_id, person_id)])
        rows = self._early.pop((application_id, None), [])
        if person_id is not None:
            rows += self._early.pop((application_id, person_id), [])
        return sorted(rows, key=lambda r: r["waiting_since"])

    async def flush(self) -> None:
        """Write what changed since the last flush: one statement per table. What is in
        memory stays as it was, now stored."""
        conn = self.conn
        ids = self.ids
        await repo.save_persons(conn, ids, [(self._persons[p], self._person_rows[p])  # type: ignore[misc]
                                            for p in self._dirty_persons])
        await repo.save_applications(conn, ids, [(self._apps[a], a in self._apps_stored)  # type: ignore[misc]
                                                 for a in self._dirty_apps])
        await repo.save_payments(conn, ids, [
            (p["payment_ref"], p["person_id"], p["application_id"], p["period_start"],
             p["period_end"], p["amount_fen"], p["state"], p["reason"])
            for p in (self._payments[r] for r in self._new_payments)], list(self._applied))
        await repo.replace_periods(conn, ids,
                                   {p: self._periods[p] for p in self._dirty_periods},
                                   self._keys(self._dirty_periods))
        await repo.record_histories(conn, ids, self._history)
        await repo.record_refusals(conn, ids, self._refusals)
        await repo.schedule_changes(conn, ids, self._scheduled)
        for pid in self._dirty_persons:
            if self._person_rows[pid] is None:  # inserted under the current hash
                self._person_rows[pid] = (_copy(self._persons[pid]),  # type: ignore[type-var]
                                          {"person_key": ids.key(pid), "name": None,
                                           "mobile": None, "email": None})
        self._apps_stored.update(self._dirty_apps)
        for ref in self._new_payments:
            self._payments[ref]["new"] = False  # a change now updates its row
        self._dirty_persons.clear()
        self._dirty_apps.clear()
        self._new_payments.clear()
        self._applied.clear()
        self._dirty_periods.clear()
        self._history, self._refusals, self._scheduled = [], [], []


Store = Direct | UnitOfWork
