"""Analytics of one chat session: run metrics and the timeline, computed from stored rows.

Percentiles use linear interpolation between closest ranks (numpy's default, DuckDB's
``quantile_cont``), the same definition as the dashboard's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nexus_core.ai.job_store import JobView
from nexus_core.chat import MessageView
from nexus_core.feedback import FeedbackView


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class SessionMetrics:
    """How one session went, in numbers."""

    total_messages: int
    user_messages: int
    assistant_messages: int
    error_messages: int
    duration_seconds: float
    tokens_in: int
    tokens_out: int
    median_latency_ms: float | None
    p95_latency_ms: float | None
    median_ttft_ms: float | None
    retries: int
    failed_replies: int


@dataclass(frozen=True)
class TimelineEvent:
    """One point on the session timeline."""

    label: str
    at: datetime
    detail: str = ""


def session_metrics(
    messages: Sequence[MessageView], jobs: Sequence[JobView] = ()
) -> SessionMetrics:
    """Run metrics of a session from its messages and jobs."""
    replies = [m for m in messages if m.role == "assistant"]
    latencies = [m.latency_ms for m in replies if m.latency_ms is not None]
    ttfts = [m.ttft_ms for m in replies if m.ttft_ms is not None]
    duration = (
        (messages[-1].created_at - messages[0].created_at).total_seconds() if messages else 0.0
    )
    return SessionMetrics(
        total_messages=len(messages),
        user_messages=sum(m.role == "user" for m in messages),
        assistant_messages=len(replies),
        error_messages=sum(m.role == "error" for m in messages),
        duration_seconds=duration,
        tokens_in=sum(m.tokens_in or 0 for m in replies),
        tokens_out=sum(m.tokens_out or 0 for m in replies),
        median_latency_ms=percentile(latencies, 50),
        p95_latency_ms=percentile(latencies, 95),
        median_ttft_ms=percentile(ttfts, 50),
        retries=sum(max(j.attempt - 1, 0) for j in jobs),
        failed_replies=sum(j.status == "failed" for j in jobs),
    )


def session_timeline(
    started: datetime, messages: Sequence[MessageView], feedback: Sequence[FeedbackView] = ()
) -> list[TimelineEvent]:
    """Started, first reply, last reply and each feedback, in time order."""
    events = [TimelineEvent("Started", started)]
    replies = [m for m in messages if m.role == "assistant"]
    if replies:
        events.append(TimelineEvent("First Reply", replies[0].created_at, replies[0].model or ""))
        if len(replies) > 1:
            events.append(
                TimelineEvent("Last Reply", replies[-1].created_at, replies[-1].model or "")
            )
    for item in feedback:
        verdict = {1: "👍", 0: "👎"}.get(item.rating, "") if item.rating is not None else ""
        detail = " ".join(p for p in (verdict, item.category, item.description[:80]) if p)
        events.append(TimelineEvent("Feedback", item.updated_at, detail))
    return sorted(events, key=lambda e: e.at)
