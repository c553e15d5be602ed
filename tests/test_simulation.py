"""`nexus simulate`: demo data for every page, made by the real services, back-dated across the
chosen days in the database and the event log alike."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.analytics.session import session_metrics
from nexus_core.app_context import AppContext
from nexus_core.db.models import AiJob, AuditEvent, ChatSession, CompareVote, Feedback, Message
from nexus_core.errors import ValidationError
from nexus_core.feedback.filters import FeedbackFilters
from nexus_core.ops.events import read_events
from nexus_core.simulation import DEMO_ANALYST, DEMO_USER_PREFIX, SimulationReport, simulate
from nexus_core.simulation.content import SMOKE_TEST_SET
from nexus_core.users import UserView

DAYS = 4
# A row and the event that tell of the same moment are written a few milliseconds apart.
SAME_MOMENT = timedelta(seconds=1)


@dataclass(frozen=True)
class Demo:
    """A fresh install after a small simulation, and the real time around it."""

    ctx: AppContext
    report: SimulationReport
    before: datetime
    after: datetime
    admin: UserView
    events: list[dict[str, Any]]


@pytest.fixture
def demo(ctx: AppContext) -> Iterator[Demo]:
    ctx.init()
    before = datetime.now(UTC)
    report = simulate(
        ctx, users=2, sessions=8, days=DAYS, failure_rate=0.2, seed=5, word_latency=(0.0, 0.0)
    )
    after = datetime.now(UTC)
    events, skipped = read_events(ctx.settings.event_log_path)
    assert skipped == 0
    yield Demo(ctx, report, before, after, ctx.users.get("admin"), events)


def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))


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
        chats = session.scalar(
            select(func.count()).select_from(ChatSession).where(ChatSession.run_id.is_(None))
        )
        replies = session.scalar(
            select(func.count())
            .select_from(Message)
            .join(ChatSession, ChatSession.id == Message.session_id)
            .where(Message.role == "assistant", ChatSession.run_id.is_(None))
        )
    assert chats == 4
    assert replies == report.replies >= 4
    events, skipped = read_events(ctx.settings.event_log_path)
    assert skipped == 0
    stamps = [ts(e) for e in events]
    assert min(stamps) >= before - timedelta(days=3)
    assert max(stamps) <= after
    assert max(stamps) - min(stamps) > timedelta(hours=1)  # spread out, not all "now"
    chat_successes = [e for e in events if e["event"] == "job_success" and "run_id" not in e]
    assert len(chat_successes) == report.replies
    with EventStore.from_settings(ctx.settings) as store:
        numbers = compute_metrics(store, "4d", after + timedelta(seconds=1))
    assert numbers["requests"] == sum(
        e["event"] == "request_start" and "run_id" not in e for e in events
    )


def test_every_page_has_demo_data_after_a_small_simulation(demo: Demo) -> None:
    ctx, admin, report = demo.ctx, demo.admin, demo.report

    # The feedback explorer: reports of several kinds, at several stages, on several days.
    items = ctx.triage.search(FeedbackFilters(), viewer=admin, limit=1000)
    reports = [i for i in items if i.description]
    assert len(reports) == report.reports >= 6
    assert len({i.category for i in reports}) >= 4
    assert len({i.priority for i in reports}) >= 3
    assert {i.status for i in reports} == {"open", "in_progress", "resolved", "closed"}
    assert len({i.created_at.date() for i in items}) >= 3
    triaged = [i for i in reports if i.status != "open"]
    assert all(i.updated_at > i.created_at for i in triaged)
    for item in triaged:  # reported by a demo person, triaged later by the demo analyst
        history = ctx.triage.history(item.id, admin)
        assert history[0].actor.startswith(DEMO_USER_PREFIX)  # type: ignore[union-attr]
        assert history[-1].actor == DEMO_ANALYST
        assert all(item.created_at <= h.at <= item.updated_at for h in history)
    # Thumbs on replies.
    rated = [i for i in items if i.rating is not None]
    assert len(rated) == report.ratings > 0
    # The dashboard's feedback panel: the last week by category, and open urgent items.
    week = FeedbackFilters(date_from=(demo.after - timedelta(days=6)).date())
    assert ctx.triage.stats(week, viewer=admin).by_category.height >= 2
    urgent = FeedbackFilters(statuses=("open",), priorities=("high", "critical"))
    assert ctx.triage.count(urgent, viewer=admin) >= 1

    # Blind comparisons and votes: a leaderboard with several variants.
    assert report.votes == report.comparisons >= 3
    board = ctx.compare.leaderboard(admin)
    assert len(board) >= 2 and sum(row.wins for row in board) == report.votes
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(CompareVote)) == report.votes

    # A test-set run with passes and failures, and a finished evaluation with a verdict.
    (smoke,) = [s for s in ctx.test_sets.list(admin) if s.name == SMOKE_TEST_SET]
    (run,) = ctx.test_sets.list_runs(admin, smoke.id)
    matrix = ctx.test_sets.results(admin, run.id)
    assert run.finished and {cell.passed for cell in matrix.cells} == {True, False}
    (evaluation,) = ctx.evals.list_runs(admin)
    assert evaluation.status == "finished" and evaluation.summary is not None
    assert evaluation.summary.cases >= 1 and evaluation.variant.provider == "simulated"
    assert (report.test_set_runs, report.eval_runs) == (1, 1)

    # The simulated model is free: every reply costs $0, never "unpriced".
    successes = [e for e in demo.events if e["event"] == "job_success"]
    assert successes and {e["cost_usd"] for e in successes} == {0.0}


def test_database_rows_carry_the_times_of_their_events(demo: Demo) -> None:
    ctx, events = demo.ctx, demo.events
    earliest = demo.before - timedelta(days=DAYS)
    by_job = {e["job_id"]: e for e in events if e["event"] in ("job_success", "job_failure")}
    enqueued = {e["job_id"]: e for e in events if e["event"] == "job_enqueued"}
    with ctx.db.session() as session:
        jobs = session.scalars(select(AiJob)).all()
        replies = {m.id: m for m in session.scalars(select(Message))}
        stamped = [
            *session.scalars(select(ChatSession.created_at)),
            *session.scalars(select(Feedback.created_at)),
            *session.scalars(select(CompareVote.created_at)),
            *session.scalars(
                select(AuditEvent.created_at).where(AuditEvent.actor_name.like("demo-%"))
            ),
        ]
    assert len(jobs) == len(by_job) == len(enqueued) > 0
    for job in jobs:
        assert abs(job.created_at - ts(enqueued[job.id])) < SAME_MOMENT, job.id
        assert job.finished_at is not None
        assert abs(job.finished_at - ts(by_job[job.id])) < SAME_MOMENT, job.id
        assert replies[job.reply_message_id].created_at == job.finished_at  # type: ignore[index]
    assert earliest <= min(stamped) and max(stamped) <= demo.after
    assert max(stamped) - min(stamped) > timedelta(days=1)  # back-dated, not written "now"


def test_session_analytics_agree_with_the_dashboard(demo: Demo) -> None:
    ctx, events = demo.ctx, demo.events
    user_events = [e for e in events if "run_id" not in e]
    of_session: dict[str, list[dict[str, Any]]] = {}
    for event in user_events:
        of_session.setdefault(event["chat_session_id"], []).append(event)
    with ctx.db.session() as session:
        chats = session.scalars(select(ChatSession).where(ChatSession.run_id.is_(None))).all()
    assert len(chats) == demo.report.sessions
    for chat in chats:
        owner = ctx.users.get_by_id(chat.user_id)
        messages = ctx.chat.messages(chat.public_id, owner)
        metrics = session_metrics(messages, ctx.worker.store.for_session(chat.id))
        logged = of_session[chat.public_id]
        kinds = Counter(e["event"] for e in logged)
        assert metrics.assistant_messages == kinds["job_success"], chat.public_id
        assert metrics.failed_replies == kinds["job_failure"], chat.public_id
        assert metrics.retries == kinds["job_retry"], chat.public_id
        assert abs(chat.created_at - min(ts(e) for e in logged)) < SAME_MOMENT
        logged_span = max(ts(e) for e in logged) - min(ts(e) for e in logged)
        assert abs(metrics.duration_seconds - logged_span.total_seconds()) < 1
        latencies = sorted(m.latency_ms for m in messages if m.role == "assistant")
        logged_latencies = sorted(e["latency_ms"] for e in logged if e["event"] == "job_success")
        assert latencies == pytest.approx(logged_latencies, abs=0.01)

    now = demo.after + timedelta(seconds=1)
    for window in (timedelta(hours=24), timedelta(days=2), timedelta(days=DAYS)):
        with EventStore.from_settings(ctx.settings) as store:
            numbers = compute_metrics(store, window, now)
        stored = Counter(
            m.role
            for chat in chats
            for m in ctx.chat.messages(chat.public_id, ctx.users.get_by_id(chat.user_id))
            if now - window <= m.created_at < now
        )
        assert (stored["assistant"], stored["error"]) == (
            numbers["jobs_succeeded"],
            numbers["jobs_failed"],
        ), window


def test_simulate_refuses_nonsense_sizes(ctx: AppContext) -> None:
    ctx.init()
    with pytest.raises(ValidationError, match="at least 1"):
        simulate(ctx, users=0, sessions=1, days=1)
