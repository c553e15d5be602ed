"""Retention on both databases with an injected clock: text older than the policy becomes a
placeholder while every number stays, rotated event-log files older than it go with their
compacted copies (the live file is never cut), a second run removes nothing, the daily run happens
once across two schedulers, each run is audited, and `nexus retention apply --now` does the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nexus_core import audit, audit_chain
from nexus_core.analytics.log_store import CACHE_DIR_NAME, EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.app_context import AppContext
from nexus_core.audit import AuditQuery
from nexus_core.db.lease import Lease
from nexus_core.db.models import ChatSession, Feedback, FeedbackNote, Message, Persona
from nexus_core.ops.events import build_record, encode_record
from nexus_core.privacy.content import REMOVED_TEXT
from nexus_core.privacy.retention import LEASE_NAME, RUN_EVERY, RetentionScheduler, RetentionService
from nexus_core.settings import Settings
from nexus_core.ui import links
from tests.apptest import TIMEOUT, seen_text, signed_in_app
from tests.test_cli import run_nexus

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DAYS = 30
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=5)
OLD_TEXT = "my salary is 4200 and my manager is difficult"
RECENT_TEXT = "what is a burn rate?"


@dataclass(frozen=True)
class Stored:
    """What the test wrote: the old and the recent chat's public ids."""

    old_chat: str
    recent_chat: str


def add_chat(ctx: AppContext, username: str, at: datetime, text: str) -> str:
    """A chat started at ``at``: a question and a priced reply, a thumbs-down with words and a
    triage note on it; returns its public id."""
    user = ctx.users.get(username)
    with ctx.db.session() as session:
        persona = session.scalars(select(Persona)).first()
        assert persona is not None
        chat = ChatSession(
            user_id=user.id,
            persona_id=persona.id,
            persona_version=1,
            title=text[:40],
            created_at=at,
            updated_at=at,
        )
        session.add(chat)
        session.flush()
        question = Message(session_id=chat.id, role="user", content=text, created_at=at)
        session.add(question)
        session.flush()
        reply = Message(
            session_id=chat.id,
            role="assistant",
            content=f"About {text}: here is what I think.",
            created_at=at + timedelta(seconds=2),
            reply_to_id=question.id,
            latency_ms=1500.0,
            tokens_in=120,
            tokens_out=80,
            cost_usd=0.0004,
        )
        session.add(reply)
        session.flush()
        feedback = Feedback(
            user_id=user.id,
            session_id=chat.id,
            message_id=reply.id,
            rating=0,
            description=f"wrong about {text}",
            context={},
            created_at=at,
            updated_at=at,
        )
        session.add(feedback)
        session.flush()
        session.add(FeedbackNote(feedback_id=feedback.id, text=f"look at {text}", created_at=at))
        return chat.public_id


def write_events(path: Path, start: datetime, hours: int) -> None:
    """One AI reply an hour for ``hours`` hours from ``start``: request and job events."""
    lines = []
    for hour in range(hours):
        ts = start + timedelta(hours=hour)
        request = {"request_id": f"r-{start:%m%d}-{hour}", "attempt": 1}
        lines += [
            ("request_start", {**request, "model": "m", "provider": "simulated"}),
            ("request_success", {**request, "latency_ms": 900.0, "status_code": 200}),
            ("job_success", {"job_id": f"j-{start:%m%d}-{hour}", "latency_ms": 1200.0}),
        ]
        data = b"".join(
            encode_record(build_record(name, ts=ts, chat_session_id=None, user_id=1, fields=fields))
            for name, fields in lines
        )
        lines = []
        with path.open("ab") as fh:
            fh.write(data)


@pytest.fixture
def stored(ctx: AppContext) -> Stored:
    ctx.init()
    ctx.users.create("mia", "correct-horse-1")
    return Stored(add_chat(ctx, "mia", OLD, OLD_TEXT), add_chat(ctx, "mia", RECENT, RECENT_TEXT))


@pytest.fixture
def log_dir(ctx: AppContext) -> Path:
    """Two rotated files — one wholly older than the policy, one newer — and a live file that
    starts older than the policy and goes on to now."""
    log = ctx.settings.event_log_path
    log.parent.mkdir(parents=True, exist_ok=True)
    write_events(log.with_name(log.name + ".2"), NOW - timedelta(days=50), 24)
    write_events(log.with_name(log.name + ".1"), NOW - timedelta(days=20), 24)
    write_events(log, NOW - timedelta(days=35), 2)
    write_events(log, NOW - timedelta(days=1), 3)
    return log.parent


@pytest.fixture
def store(ctx: AppContext) -> Iterator[EventStore]:
    """The event store without an orphan grace: deleted files' copies go at the first chance."""
    cache = ctx.settings.data_dir / CACHE_DIR_NAME
    with EventStore(ctx.settings.event_log_path, cache, orphan_grace_seconds=0) as events:
        yield events


def service(ctx: AppContext, store: EventStore) -> RetentionService:
    return RetentionService(ctx.db, store, content_days=DAYS, events_days=DAYS)


def numbers(ctx: AppContext) -> dict[str, object]:
    """What the dashboards and the Usage page add up from the database."""
    with ctx.db.session() as session:
        return {
            "messages": session.scalar(select(func.count()).select_from(Message)),
            "tokens": session.scalar(select(func.sum(Message.tokens_out))),
            "cost": session.scalar(select(func.sum(Message.cost_usd))),
            "latency": session.scalar(select(func.avg(Message.latency_ms))),
            "feedback": session.scalar(select(func.count()).select_from(Feedback)),
        }


def texts(ctx: AppContext, public_id: str) -> dict[str, set[str]]:
    with ctx.db.session() as session:
        chat = session.scalar(select(ChatSession).where(ChatSession.public_id == public_id))
        assert chat is not None
        feedback = session.scalars(select(Feedback).where(Feedback.session_id == chat.id)).all()
        return {
            "title": {chat.title},
            "messages": set(
                session.scalars(select(Message.content).where(Message.session_id == chat.id))
            ),
            "feedback": {f.description for f in feedback},
            "notes": set(
                session.scalars(
                    select(FeedbackNote.text).where(
                        FeedbackNote.feedback_id.in_([f.id for f in feedback])
                    )
                )
            ),
        }


def test_content_older_than_the_policy_is_replaced_and_every_number_stays(
    ctx: AppContext, stored: Stored, store: EventStore
) -> None:
    before = numbers(ctx)

    report = service(ctx, store).apply(NOW)

    assert (report.messages, report.sessions, report.feedback, report.notes) == (2, 1, 1, 1)
    old = texts(ctx, stored.old_chat)
    assert all(values == {REMOVED_TEXT} for values in old.values()), old
    recent = texts(ctx, stored.recent_chat)
    assert recent["messages"] == {RECENT_TEXT, f"About {RECENT_TEXT}: here is what I think."}
    assert recent["title"] == {RECENT_TEXT} and recent["notes"] == {f"look at {RECENT_TEXT}"}
    assert numbers(ctx) == before


def test_a_second_run_removes_nothing_and_each_run_is_audited(
    ctx: AppContext, stored: Stored, log_dir: Path, store: EventStore
) -> None:
    retention = service(ctx, store)
    first = retention.apply(NOW)
    again = retention.apply(NOW + timedelta(hours=1))

    assert first.messages == 2 and len(first.event_files) == 1
    removed = again.to_json()["removed"]
    assert set(removed.values()) == {0} and again.event_files == ()
    events = audit.search(ctx.db, AuditQuery(actions=(audit.RETENTION_APPLIED,)), limit=5)
    assert [e.details["removed"] for e in reversed(events)] == [
        first.to_json()["removed"],
        removed,
    ]
    assert events[-1].details["files"][0]["name"] == "api_events.log.2"
    assert audit_chain.verify(ctx.db).intact


def test_old_rotated_files_go_with_their_copies_and_the_store_reads_the_rest(
    ctx: AppContext, stored: Stored, log_dir: Path, store: EventStore
) -> None:
    log = ctx.settings.event_log_path
    kept_window = compute_metrics(store, "30d", NOW)
    before_all = store.events_frame(NOW - timedelta(days=60), NOW)
    parquet_before = set(store.cache_dir.glob("events-*.parquet"))
    assert len(parquet_before) == 2  # both rotated files compacted

    report = service(ctx, store).apply(NOW)

    assert [f.name for f in report.event_files] == ["api_events.log.2"]
    assert report.event_files[0].events == 72
    assert sorted(p.name for p in log_dir.glob("api_events.log*")) == [
        "api_events.log",
        "api_events.log.1",
        "api_events.log.lock",
    ]
    assert len(set(store.cache_dir.glob("events-*.parquet"))) == 1
    manifest = json.loads((store.cache_dir / "manifest.json").read_text())
    assert [p["source"] for p in manifest["parts"]] == ["api_events.log.1"]
    assert compute_metrics(store, "30d", NOW) == kept_window
    after_all = store.events_frame(NOW - timedelta(days=60), NOW)
    assert before_all.height - after_all.height == 72
    # The live file is never cut: its lines from 35 days ago are still read.
    assert after_all["ts"].min() == (NOW - timedelta(days=35)).replace(tzinfo=None)
    assert log.stat().st_size > 0
    # Another process's store over the same directory reads the same rest.
    with EventStore(log, store.cache_dir) as other:
        assert other.events_frame(NOW - timedelta(days=60), NOW).height == after_all.height


def test_nothing_is_removed_without_a_policy(
    ctx: AppContext, stored: Stored, log_dir: Path, store: EventStore
) -> None:
    keep = RetentionService(ctx.db, store, content_days=None, events_days=None)
    report = keep.apply(NOW)

    assert not report.applied
    assert texts(ctx, stored.old_chat)["messages"] != {REMOVED_TEXT}
    assert (log_dir / "api_events.log.2").is_file()
    assert audit.search(ctx.db, AuditQuery(actions=(audit.RETENTION_APPLIED,)), limit=5) == []


def test_the_daily_run_happens_once_across_two_schedulers(
    ctx: AppContext, stored: Stored, store: EventStore
) -> None:
    retention = service(ctx, store)
    one, two = (
        RetentionScheduler(retention, Lease(ctx.db, LEASE_NAME, RUN_EVERY)) for _ in range(2)
    )

    def tick_both(at: datetime) -> int:
        one.clock = two.clock = lambda: at
        return sum(report is not None for report in (one.tick(), two.tick()))

    assert tick_both(NOW) == 1
    assert tick_both(NOW + timedelta(minutes=5)) == 0
    assert tick_both(NOW + timedelta(hours=23)) == 0
    assert tick_both(NOW + RUN_EVERY + timedelta(minutes=1)) == 1
    runs = audit.search(ctx.db, AuditQuery(actions=(audit.RETENTION_APPLIED,)), limit=5)
    assert len(runs) == 2


def test_the_command_applies_the_policy_as_of_now(
    ctx: AppContext, stored: Stored, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_RETAIN_CONTENT_DAYS", str(DAYS))
    monkeypatch.setenv("NEXUS_RETAIN_EVENTS_DAYS", str(DAYS))

    result = run_nexus(ctx.settings, "retention", "apply", "--now", NOW.isoformat())

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["removed"]["messages"] == 2 and report["removed"]["event_files"] == 1
    assert report["content_before"] == (NOW - timedelta(days=DAYS)).isoformat()
    assert texts(ctx, stored.old_chat)["messages"] == {REMOVED_TEXT}
    assert not (log_dir / "api_events.log.2").exists()


def test_the_command_without_a_policy_says_so_and_removes_nothing(
    ctx: AppContext, stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_RETAIN_CONTENT_DAYS", raising=False)
    monkeypatch.delenv("NEXUS_RETAIN_EVENTS_DAYS", raising=False)
    result = run_nexus(ctx.settings, "retention", "apply")
    assert result.returncode == 0, result.stderr
    assert "Retention is off" in result.stdout
    assert OLD_TEXT in texts(ctx, stored.old_chat)["messages"]


@pytest.mark.parametrize("value", ["0", "soon"])
def test_a_retention_setting_must_be_a_positive_number_of_days(value: str) -> None:
    from nexus_core.errors import ConfigError

    with pytest.raises(ConfigError, match="NEXUS_RETAIN_CONTENT_DAYS"):
        Settings.from_sources({"NEXUS_RETAIN_CONTENT_DAYS": value}, secrets_file=None)
    assert Settings.from_sources({}, secrets_file=None).retain_content_days is None


def test_the_chat_page_shows_the_placeholder_where_the_words_were(
    app_env: AppContext, stored: Stored, store: EventStore
) -> None:
    service(app_env, store).apply(NOW)

    at = signed_in_app("mia", query={links.SESSION_QUERY_PARAM: stored.old_chat}, timeout=TIMEOUT)

    bubbles = [m for m in at.chat_message if m.name in ("user", "assistant")]
    assert len(bubbles) == 2
    captions = [[seen_text(c.value) for c in bubble.caption] for bubble in bubbles]
    assert [c[0] for c in captions] == [REMOVED_TEXT, REMOVED_TEXT]
    assert "120 → 80 tokens" in captions[1][1]  # the reply's numbers stay
    assert not [m for b in bubbles for m in b.markdown if OLD_TEXT in m.value]
    assert not at.exception
