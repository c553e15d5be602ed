"""`Lanes`: the named thread pools AI jobs run on, and what each of them is doing.

A lane is a pool of its own — the chat lane, a comparison's, a test set's — so one kind of work
never queues in front of another. `Lanes` notes when each job was queued and when it started, so
`Lanes.load` can say how busy each lane is: threads busy, jobs queued and the oldest one's wait,
jobs running past their deadline. `live_lane_loads` gathers that from every `Lanes` alive in the
process; that is how ``GET /health`` sees the app's pools without building the app.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

# Every lane a job may be sent to: chat replies, a comparison's variants, a test set's cases and an
# evaluation's replays. The thread backend gives each its pool; the queue backend, its queue.
CHAT_LANE: Final = "chat"
COMPARE_LANE: Final = "compare"
TEST_SET_LANE: Final = "test_set"
EVAL_LANE: Final = "eval"
LANE_NAMES: Final = (CHAT_LANE, COMPARE_LANE, TEST_SET_LANE, EVAL_LANE)

OVERDUE_GRACE_SECONDS = 15.0  # a job running this long past its deadline counts as stuck

T = TypeVar("T")

_alive: weakref.WeakSet[Lanes] = weakref.WeakSet()
_alive_lock = threading.Lock()


@dataclass(frozen=True)
class LaneLoad:
    """How busy one lane is: threads, queue, the oldest wait and overdue jobs."""

    lane: str
    workers: int
    busy: int
    queued: int
    oldest_wait_seconds: float | None  # of the jobs queued here; None when none is
    overdue: int  # jobs running longer than the deadline plus `OVERDUE_GRACE_SECONDS`


def live_lane_loads() -> list[LaneLoad]:
    """The load of every lane of every running `Lanes` in this process (for ``/health``)."""
    with _alive_lock:
        alive = list(_alive)
    return [load for lanes in alive for load in lanes.load()]


class Lanes:
    """Named thread pools (name → threads); a job sent to an unknown lane runs on ``default``.

    ``deadline_seconds`` is how long a job may run; past it and the grace it counts as overdue.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        default: str,
        *,
        deadline_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self.clock = clock
        self.deadline_seconds = deadline_seconds
        self._sizes = dict(sizes)
        self._pools = {
            name: ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"nexus-{name}")
            for name, threads in self._sizes.items()
        }
        self._queued: dict[str, tuple[str, float]] = {}  # job id -> (lane, when queued)
        self._running: dict[str, tuple[str, float]] = {}  # job id -> (lane, when started)
        self._lock = threading.Lock()
        with _alive_lock:
            _alive.add(self)

    def submit(self, lane: str, job_id: str, run: Callable[[str], T]) -> Future[T]:
        """Queue ``run(job_id)`` on ``lane``."""
        lane = lane if lane in self._pools else self.default
        with self._lock:
            self._queued[job_id] = (lane, self.clock())
            future = self._pools[lane].submit(self._run, lane, job_id, run)
        future.add_done_callback(lambda _f: self._forget(job_id))
        return future

    def load(self) -> list[LaneLoad]:
        """How busy each lane is now."""
        now = self.clock()
        overdue_after = self.deadline_seconds + OVERDUE_GRACE_SECONDS
        with self._lock:
            queued, running = list(self._queued.values()), list(self._running.values())
        loads = []
        for lane, workers in self._sizes.items():
            waits = [now - since for name, since in queued if name == lane]
            ages = [now - since for name, since in running if name == lane]
            loads.append(
                LaneLoad(
                    lane=lane,
                    workers=workers,
                    busy=len(ages),
                    queued=len(waits),
                    oldest_wait_seconds=max(waits) if waits else None,
                    overdue=sum(age > overdue_after for age in ages),
                )
            )
        return loads

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` finish the running ones first."""
        with _alive_lock:
            _alive.discard(self)
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=not wait)

    def _run(self, lane: str, job_id: str, run: Callable[[str], T]) -> T:
        with self._lock:
            self._queued.pop(job_id, None)
            self._running[job_id] = (lane, self.clock())
        try:
            return run(job_id)
        finally:
            with self._lock:
                self._running.pop(job_id, None)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._queued.pop(job_id, None)  # a job cancelled before it ran
