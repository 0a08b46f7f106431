"""A local append-only file of gateway answers not yet written to the database."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def is_done_mark(entry: dict[str, Any]) -> bool:
    return entry.keys() == {"done"}


class OutcomeJournal:
    """Each answer is fsynced here before the database write is tried, so an answer survives
    a database outage that outlasts the worker (stop or kill); replayed at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # A line torn by a kill mid-write must not swallow the next entry.
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as tail:
                tail.seek(size - 1)
                if tail.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def append(self, entry: dict[str, Any]) -> None:
        self.append_many([entry])

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        """One write and one fsync for many entries (group commit): each is as durable as if
        written alone, and none is taken as written before the fsync returns. Done marks
        alone are written without an fsync: losing one only replays an answer the database
        already holds, which changes nothing; and the next fsync makes it durable anyway,
        before any later step of that message could be journalled."""
        if not entries:
            return
        os.write(self._fd, "".join(json.dumps(e, ensure_ascii=False) + "\n"
                                   for e in entries).encode())
        if not all(is_done_mark(e) for e in entries):
            os.fsync(self._fd)

    def done(self, delivery_id: int) -> None:
        self.append({"done": delivery_id})

    def done_many(self, delivery_ids: list[int]) -> None:
        self.append_many([{"done": i} for i in delivery_ids])

    def handing_over(self, delivery_id: int) -> None:
        """Written (fsynced) just before a message goes to the gateway: without it a message
        claimed by a worker that died was never handed over and can be sent safely."""
        self.append({"handing": delivery_id})

    def _read(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        answers: dict[int, dict[str, Any]] = {}
        handing: dict[int, dict[str, Any]] = {}
        with open(self.path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill mid-write: it was never final
                if "done" in entry:
                    answers.pop(entry["done"], None)
                    handing.pop(entry["done"], None)
                elif "handing" in entry:
                    handing[entry["handing"]] = entry
                else:
                    answers[entry["id"]] = entry
                    handing.pop(entry["id"], None)
        return answers, handing

    def pending(self) -> list[dict[str, Any]]:
        """Answers written here whose database write was never confirmed, oldest first."""
        return list(self._read()[0].values())

    def unanswered(self) -> list[int]:
        """Messages handed over whose answer never came (the worker stopped or died)."""
        return list(self._read()[1])

    def compact(self) -> None:
        """Rewrite the file with only what is still open: answers not yet in the database and
        hand-overs still awaiting their answer."""
        answers, handing = self._read()
        keep = [*handing.values(), *answers.values()]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in keep),
                       encoding="utf-8")
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)
