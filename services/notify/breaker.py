"""A per-channel circuit breaker: an outage pauses sending instead of burning attempts."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    """Closed: send freely. After `failures` transient failures in a row: open (send nothing)
    for a pause that doubles up to `max_pause`; then one probe message decides."""

    failures: int = 5
    pause: float = 5.0
    max_pause: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _streak: int = 0
    _current_pause: float = 0.0
    _open_until: float | None = field(default=None)

    @property
    def is_open(self) -> bool:
        """True while the channel counts as down (open, or waiting on a probe's answer)."""
        return self._open_until is not None

    @property
    def failing(self) -> bool:
        """The last answer was a transient failure."""
        return self._streak > 0

    def allowance(self) -> int | None:
        """How many messages may be claimed now: None without limit, 0 while open, 1 to probe."""
        if self._open_until is None:
            return None
        return 1 if self.clock() >= self._open_until else 0

    def success(self) -> None:
        self._streak, self._current_pause, self._open_until = 0, 0.0, None

    def failure(self) -> bool:
        """Count a transient failure; True when this one opened (or re-opened) the breaker."""
        self._streak += 1
        if self._open_until is None and self._streak < self.failures:
            return False
        self._current_pause = min(self.max_pause,
                                  self._current_pause * 2 if self._current_pause else self.pause)
        self._open_until = self.clock() + self._current_pause
        return True
