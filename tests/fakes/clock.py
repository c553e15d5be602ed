"""A clock a test moves by hand, for deadlines and waits without real waiting."""

from __future__ import annotations

import threading


class ManualClock:
    """A monotonic clock that moves only by `advance` (or by `sleep`, which stands for it)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Stands in for ``time.sleep``: records the wait and moves the clock by it."""
        self.slept.append(seconds)
        self.advance(seconds)
