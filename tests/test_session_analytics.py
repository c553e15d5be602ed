"""Per-session analytics: percentiles, run metrics and the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nexus_core.ai.job_store import JobView
from nexus_core.analytics.charts import session_timeline_figure
from nexus_core.analytics.session import percentile, session_metrics, session_timeline
from nexus_core.chat import MessageView

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def msg(i: int, role: str, seconds: float, **kw: object) -> MessageView:
    return MessageView(
        id=i,
        session_id=1,
        role=role,
        content=f"m{i}",
        created_at=T0 + timedelta(seconds=seconds),
        **kw,
    )  # type: ignore[arg-type]


def job(attempt: int, status: str) -> JobView:
    return JobView(
        id=f"j{attempt}{status}",
        session_id=1,
        user_message_id=1,
        status=status,
        attempt=attempt,
        max_attempts=4,
        next_retry_at=None,
        last_error=None,
        error_type=None,
        reply_message_id=None,
        created_at=T0,
        finished_at=None,
    )


@given(
    st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50),
    st.sampled_from([50, 90, 95, 99]),
)
def test_percentile_matches_numpy_linear_interpolation(values: list[float], q: int) -> None:
    assert percentile(values, q) == pytest.approx(
        float(np.percentile(values, q)), rel=1e-9, abs=1e-9
    )


def test_no_values_have_no_percentile() -> None:
    assert percentile([], 95) is None


def test_run_metrics_count_tokens_latency_and_retries() -> None:
    messages = [
        msg(1, "user", 0),
        msg(2, "assistant", 2, latency_ms=1000.0, ttft_ms=200.0, tokens_in=10, tokens_out=20),
        msg(3, "user", 60),
        msg(4, "error", 70),
        msg(5, "user", 90),
        msg(6, "assistant", 93, latency_ms=3000.0, ttft_ms=400.0, tokens_in=30, tokens_out=40),
    ]
    m = session_metrics(messages, [job(1, "succeeded"), job(4, "failed"), job(2, "succeeded")])
    assert (m.total_messages, m.user_messages, m.assistant_messages, m.error_messages) == (
        6,
        3,
        2,
        1,
    )
    assert m.duration_seconds == 93
    assert (m.tokens_in, m.tokens_out) == (40, 60)
    assert m.median_latency_ms == 2000 and m.p95_latency_ms == pytest.approx(2900)
    assert m.median_ttft_ms == 300
    assert (m.retries, m.failed_replies) == (4, 1)


def test_timeline_has_start_first_and_last_reply_in_order() -> None:
    messages = [
        msg(1, "user", 0),
        msg(2, "assistant", 5, model="gemini-x"),
        msg(3, "user", 10),
        msg(4, "assistant", 20, model="gemini-x"),
    ]
    events = session_timeline(T0 - timedelta(seconds=1), messages)
    assert [e.label for e in events] == ["Started", "First Reply", "Last Reply"]
    figure = session_timeline_figure(events)
    assert {trace.name for trace in figure.data} == {"Started", "First Reply", "Last Reply"}
