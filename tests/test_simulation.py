"""`nexus simulate`: demo traffic through the real pipeline, back-dated across the chosen days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.app_context import AppContext
from nexus_core.db.models import ChatSession, Message
from nexus_core.errors import ValidationError
from nexus_core.ops.events import read_events
from nexus_core.simulation import DEMO_USER_PREFIX, simulate


def test_simulated_traffic_is_stored_and_logged_across_the_days(ctx: AppContext) -> None:
    ctx.init()
    seen: list[tuple[int, int]] = []
    before = datetime.now(UTC)
    report = simulate(
        ctx,
        users=2,
        sessions=4,
        days=3,
        seed=7,
        word_latency=(0.0, 0.0),
        progress=lambda done, total: seen.append((done, total)),
    )
    after = datetime.now(UTC)
    assert seen[-1] == (4, 4) and len(seen) == 4
    assert (report.users, report.sessions, report.failures) == (2, 4, 0)
    assert sorted(
        u.username for u in ctx.users.list() if u.username.startswith(DEMO_USER_PREFIX)
    ) == ["demo-user-1", "demo-user-2"]
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ChatSession)) == 4
        replies = session.scalar(
            select(func.count()).select_from(Message).where(Message.role == "assistant")
        )
    assert replies == report.replies >= 4
    events, skipped = read_events(ctx.settings.event_log_path)
    assert skipped == 0
    stamps = [datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in events]
    assert min(stamps) >= before - timedelta(days=3)
    assert max(stamps) <= after
    assert max(stamps) - min(stamps) > timedelta(hours=1)  # spread out, not all "now"
    assert sum(e["event"] == "job_success" for e in events) == report.replies
    with EventStore.from_settings(ctx.settings) as store:
        numbers = compute_metrics(store, "4d", after + timedelta(seconds=1))
    assert numbers["requests"] == sum(e["event"] == "request_start" for e in events)


def test_simulate_refuses_nonsense_sizes(ctx: AppContext) -> None:
    ctx.init()
    with pytest.raises(ValidationError, match="at least 1"):
        simulate(ctx, users=0, sessions=1, days=1)
