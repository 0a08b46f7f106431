"""A local append-only file of gateway answers not yet written to the database."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class OutcomeJournal:
    """Each answer is fsynced here before the database write is tried, so an answer survives
    a database outage that outlasts the worker (stop or kill); replayed at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
        os.fsync(self._fd)

    def done(self, delivery_id: int) -> None:
        self.append({"done": delivery_id})

    def pending(self) -> list[dict[str, Any]]:
        """Answers written here whose database write was never confirmed, oldest first."""
        entries: dict[int, dict[str, Any]] = {}
        with open(self.path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill mid-write: its answer was never final
                if "done" in entry:
                    entries.pop(entry["done"], None)
                else:
                    entries[entry["id"]] = entry
        return list(entries.values())

    def compact(self) -> None:
        """Rewrite the file with only what is still pending (called when nothing is in flight)."""
        keep = self.pending()
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
