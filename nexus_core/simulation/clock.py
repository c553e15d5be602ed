"""The simulation's sense of time: a back-dated clock, and a timeline that runs demo activities
in the order of their (past) moments.

Work takes real (short) time, so the clock is *a moment in the past plus the real time since it
was set there*: the spacing inside an activity — a reply's latency, a job's retries — is real,
while the activities themselves spread over the chosen days. The clock never runs backwards and
never passes the real now, so rows and events are stamped in order and none lies in the future.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from nexus_core.db.columns import Clock, utc_now


class BackdatedClock:
    """A past moment plus the real time since it was set; thread-safe (job threads read it)."""

    def __init__(self, start: datetime, real: Clock = utc_now) -> None:
        self._real = real
        self._lock = threading.Lock()
        self._base = min(start, real())
        self._set_at = real()

    def move_to(self, moment: datetime) -> None:
        """Count on from ``moment`` — unless the clock is already past it (it never runs
        backwards), and never beyond the real now."""
        with self._lock:
            now = self._read()
            self._base, self._set_at = max(now, min(moment, self._real())), self._real()

    def skip(self, seconds: float) -> None:
        """Jump ahead, as a person thinking before the next click (not beyond the real now)."""
        self.move_to(self() + timedelta(seconds=seconds))

    def __call__(self) -> datetime:
        with self._lock:
            return self._read()

    def _read(self) -> datetime:
        return self._base + (self._real() - self._set_at)


class Timeline:
    """Activities to run at past moments, earliest first; an activity may add later ones."""

    def __init__(self, clock: BackdatedClock) -> None:
        self.clock = clock
        self._queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self._order = itertools.count()  # equal moments run in the order they were added

    def at(self, moment: datetime, activity: Callable[[], None]) -> None:
        """Run ``activity`` with the clock at ``moment`` (or later, if the clock is past it)."""
        heapq.heappush(self._queue, (moment, next(self._order), activity))

    def run(self) -> None:
        """Run every activity in time order, until none is left."""
        while self._queue:
            moment, _, activity = heapq.heappop(self._queue)
            self.clock.move_to(moment)
            activity()
