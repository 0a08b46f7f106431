"""A group of events' unit of work: loaded at once, decided in memory, written once."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import asyncpg

from services.transfer import repository as repo
from services.transfer.domain.transfer import Stage, Transfer
from services.transfer.metrics import OUTCOMES
from services.transfer.repository import Identity

# Row ids of transfers a group adds are given by the database at its write; until then they
# sort after every loaded row, in the order they were added, as their ids will.
_NEW = 1 << 62


@dataclass
class Needs:
    """What a group's events will read: transfers by identity, persons' statuses and their
    transfers (open ones, and those that count as one between two regions)."""

    identities: set[Identity] = field(default_factory=set)
    insured: set[str] = field(default_factory=set)
    transfers_of: set[str] = field(default_factory=set)
    # (person, channel reference) of transfer-out requests here: a reference is the person's.
    requests: set[tuple[str, str]] = field(default_factory=set)
    region: str = ""  # where the requests were made (this region)
    writes_insured: bool = False  # the group changes statuses: their rows are locked


class Work:
    """The state a group of events reads and changes, as the database would show it after
    each earlier event of the group: each event is decided against it in order, and what
    they changed is written at the end, each table in one statement."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._transfers: dict[Identity, Transfer | None] = {}
        self._order: dict[Identity, int] = {}
        self._of_person: dict[str, list[Identity]] = {}
        self._insured: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._insured_dirty: dict[str, None] = {}
        self._dirty: dict[Identity, None] = {}  # saved transfers, in first-save order
        self._history: list[tuple[Identity, str, str | None, str]] = []
        self._ignored: list[tuple[str, str, str, str, str]] = []
        self._requests: set[tuple[str, str]] = set()
        self._requests_loaded: set[tuple[str, str]] = set()

    @classmethod
    async def load(cls, conn: asyncpg.Connection, needs: Needs) -> Work:
        """One query per table for everything the group's events read."""
        work = cls(conn)
        for key in needs.identities:
            work._transfers[key] = None  # known absent unless found
        for row_id, t in await repo.transfers_for_group(conn, sorted(needs.identities),
                                                         sorted(needs.transfers_of)):
            work._know(repo.identity(t), t, row_id)
        for person in needs.transfers_of:
            work._of_person.setdefault(person, [])
        work._insured = await repo.insured_of(conn, sorted(needs.insured),
                                              for_update=needs.writes_insured)
        work._requests = await repo.requests_of(conn, needs.region, sorted(needs.requests))
        work._requests_loaded = set(needs.requests)
        return work

    def _know(self, key: Identity, t: Transfer, order: int) -> None:
        if key not in self._order:
            self._order[key] = order
            self._of_person.setdefault(t.person_id, []).append(key)
        self._transfers[key] = t

    # --- reads: as the single-event queries of the repository answer -------------------------

    def transfer(self, direction: str, transfer_id: str, from_region: str) -> Transfer | None:
        """A copy: a rule that changes it and then refuses leaves the state as it was (an
        event that does not save changes nothing, as its rolled-back read would not)."""
        key = (direction, from_region, transfer_id)
        if key not in self._transfers:
            raise KeyError(f"transfer {key} was not loaded for this group")
        t = self._transfers[key]
        return copy.copy(t) if t is not None else None

    def has_request(self, person_id: str, reference: str) -> bool:
        """The person's transfer-out request under this channel reference has a transfer."""
        if (person_id, reference) not in self._requests_loaded:
            raise KeyError("a request was not loaded for this group")
        return (person_id, reference) in self._requests

    def insured(self, person_id: str) -> tuple[str | None, str | None]:
        status, insurance_type, _ = self._insured[person_id]
        return status, insurance_type

    def _person(self, person_id: str) -> list[Transfer]:
        if person_id not in self._of_person:
            raise KeyError("a person's transfers were not loaded for this group")
        keys = sorted(self._of_person[person_id], key=self._order.__getitem__)
        return [t for t in (self._transfers[k] for k in keys) if t is not None]

    def open_transfers_of(self, person_id: str) -> list[Transfer]:
        return [copy.copy(t) for t in self._person(person_id) if t.is_open]

    def awaiting_suspension(self, person_id: str) -> list[Transfer]:
        return [copy.copy(t) for t in self._person(person_id)
                if t.stage == Stage.AWAITING_SUSPENSION]

    def has_transfer_between(self, person_id: str, to_region: str) -> bool:
        return any(t.direction == "out" and t.to_region == to_region
                   and t.stage.value not in repo.ENDED for t in self._person(person_id))

    # --- writes: buffered, in order ----------------------------------------------------------

    def save(self, t: Transfer, note: str | None, cause_id: str) -> None:
        """As repo.save: the transfer as it now stands, and a history line."""
        key = repo.identity(t)
        if key not in self._order:
            self._order[key] = _NEW + len(self._order)
            self._of_person.setdefault(t.person_id, []).append(key)
        self._transfers[key] = t
        self._dirty[key] = None
        if t.channel_ref is not None:
            self._requests.add((t.person_id, t.channel_ref))
        self._history.append((key, t.stage.value, note, cause_id))
        if not t.is_open:
            OUTCOMES.labels(t.direction, t.stage.value).inc()

    def set_insured(self, person_id: str, insurance_type: str, status: str) -> None:
        """As repo.set_insured_status: the person's row, found under any valid hash, or new."""
        _, _, key = self._insured[person_id]
        self._insured[person_id] = (status, insurance_type, key)
        self._insured_dirty[person_id] = None

    def ignore(self, event_id: str, transfer_id: str, sender: str, reason: str,
               detail: str) -> None:
        self._ignored.append((event_id, transfer_id, sender, reason, detail))

    async def flush(self) -> None:
        """Each table once: the statuses and the transfers as they stand last, then every
        history line (and ignored answer) in the order the events wrote them."""
        await repo.set_insured_statuses(self.conn, [
            (p, str(self._insured[p][1]), str(self._insured[p][0]), self._insured[p][2])
            for p in self._insured_dirty])
        saved = [t for t in (self._transfers[k] for k in self._dirty) if t is not None]
        row_ids = await repo.save_all(self.conn, saved)
        await repo.record_history(self.conn, [
            (key[2], row_ids[key], stage, note, cause)
            for key, stage, note, cause in self._history])
        await repo.record_ignored_answers(self.conn, self._ignored)

