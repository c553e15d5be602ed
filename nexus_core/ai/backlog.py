"""The AI job backlog: chat replies waiting for a worker, and jobs stuck past their deadline.

Two views of it: the live lanes of this process (`nexus_core.ai.lanes`: threads busy, queue, the
oldest wait) and the jobs table, which holds every process's jobs. `backlog_problems` turns both
into the short sentences a health check reports — numbers and lane names, nothing else. A prompt
run's jobs (comparisons, test sets) queue in their own lanes by design, so the table's wait counts
chat replies only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from nexus_core.ai.job_statements import OLDEST_QUEUED_CHAT_JOB, OVERDUE_JOB_COUNT
from nexus_core.ai.jobs import CHAT_LANE
from nexus_core.ai.lanes import OVERDUE_GRACE_SECONDS, LaneLoad
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database


@dataclass(frozen=True)
class StoredBacklog:
    """What the jobs table says: the oldest queued chat reply's wait, and jobs past deadline."""

    oldest_wait_seconds: float | None
    overdue: int


def read_backlog(db: Database, deadline_seconds: float) -> StoredBacklog:
    """The backlog in the jobs table, read without taking SQLite's write lock."""
    now = utc_now()
    started_before = now - timedelta(seconds=deadline_seconds + OVERDUE_GRACE_SECONDS)
    with db.reading() as conn:
        oldest = conn.execute(OLDEST_QUEUED_CHAT_JOB).scalar()
        overdue = conn.execute(OVERDUE_JOB_COUNT, {"started_before": started_before}).scalar()
    wait = None if oldest is None else max(0.0, (now - oldest).total_seconds())
    return StoredBacklog(wait, int(overdue or 0))


def backlog_problems(
    lanes: Sequence[LaneLoad],
    stored: StoredBacklog,
    *,
    max_wait_seconds: float,
    deadline_seconds: float,
) -> list[str]:
    """What is wrong: chat replies waiting past ``max_wait_seconds``, jobs stuck past deadline."""
    problems = []
    waits = [lane.oldest_wait_seconds for lane in lanes if lane.lane == CHAT_LANE]
    waits.append(stored.oldest_wait_seconds)
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None and wait > max_wait_seconds:
        problems.append(
            f"saturated: a chat reply has waited {wait:.0f} s for a worker "
            f"(limit {max_wait_seconds:g} s)"
        )
    # The live lanes and the table see the same jobs of this process: take the larger count.
    overdue = max(sum(lane.overdue for lane in lanes), stored.overdue)
    if overdue:
        problems.append(
            f"stuck: {overdue} job{'s' if overdue != 1 else ''} running past the "
            f"{deadline_seconds:g} s deadline"
        )
    return problems


def lane_summary(lane: LaneLoad) -> str:
    """``chat 4/4 busy, 3 queued (oldest 41 s)``."""
    summary = f"{lane.lane} {lane.busy}/{lane.workers} busy"
    if lane.queued:
        summary += f", {lane.queued} queued"
        if lane.oldest_wait_seconds is not None:
            summary += f" (oldest {lane.oldest_wait_seconds:.0f} s)"
    return summary
