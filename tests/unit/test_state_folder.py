"""A worker's start-up check of its state folder holds when workers start together."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.messaging.runtime import _require_writable


def test_workers_starting_together_each_find_the_folder_writable(tmp_path: Path) -> None:
    folder = tmp_path / "state"  # not there yet: the first to start makes it
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _require_writable(folder), range(400)))
    assert folder.is_dir() and list(folder.iterdir()) == []  # no probe left behind
