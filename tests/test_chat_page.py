"""The chat page through AppTest: send and see the reply, Retry after a failure, feedback,
analytics behind their flag, and the same "not found" for other people's sessions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import func, select, update
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.chat import SESSION_NOT_FOUND
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Feedback, Message, Persona, PersonaVersion
from nexus_core.errors import DatabaseUnavailable
from nexus_core.ops.events import read_events
from nexus_core.ops.incidents import ERROR_EVENT
from nexus_core.ui import links, state
from tests.apptest import seen_text, signed_in_app
from tests.fakes.gemini_server import FakeGeminiServer

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PASSWORD = "correct-horse-1"
TIMEOUT = 60


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD, display_name="Mia Member")
    ctx.users.create("max", PASSWORD)
    return ctx


def chat_page(ctx: AppContext, username: str, session_id: str | None = None) -> AppTest:
    query = {links.SESSION_QUERY_PARAM: session_id} if session_id else {}
    return signed_in_app(username, query=query, timeout=TIMEOUT)


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    out = []
    for message in at.chat_message:
        texts = [m.value for m in message.markdown] + [seen_text(e.value) for e in message.error]
        out.append((message.name, "\n".join(texts)))
    return out


def stored(ctx: AppContext) -> list[tuple[str, str]]:
    with ctx.db.session() as session:
        return [(m.role, m.content) for m in session.scalars(select(Message).order_by(Message.id))]


ACTIVE_JOB_STATES = ("queued", "running", "retrying")
SETTLE_SECONDS = 30.0


def send(at: AppTest, ctx: AppContext, text: str) -> AppTest:
    """Type ``text`` into the chat box and show the page once its reply job has ended."""
    at.chat_input(key=state.CHAT_INPUT).set_value(text).run()
    return settled(at, ctx)


def settled(at: AppTest, ctx: AppContext) -> AppTest:
    """Wait until no reply job is still going, then run the page again. The page streams a
    reply its own worker makes and polls one it does not know with a self-refreshing fragment,
    which AppTest does not rerun: the test waits for the condition (the jobs ended in the
    database), never for a fixed time."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        with ctx.db.session() as session:
            going = session.scalar(
                select(func.count()).select_from(AiJob).where(AiJob.status.in_(ACTIVE_JOB_STATES))
            )
        if not going:
            return at.run()
        assert time.monotonic() < deadline, "a reply job never ended"
        time.sleep(0.05)  # polling the database for the condition


def new_session(ctx: AppContext, username: str, persona: str = "Nexus Assistant") -> str:
    return ctx.chat.create_session(ctx.users.get(username), persona).public_id


def test_sending_a_message_stores_and_shows_the_reply(app_ctx: AppContext) -> None:
    at = chat_page(app_ctx, "mia", new_session(app_ctx, "mia"))
    assert "Model: Simulated model (offline)" in [seen_text(c.value) for c in at.caption]
    send(at, app_ctx, "How do burn rates work?")
    rows = stored(app_ctx)
    assert [r[0] for r in rows] == ["user", "assistant"]
    shown = bubbles(at)
    assert shown[0] == ("user", "How do burn rates work?")
    assert shown[1][0] == "assistant" and rows[1][1].splitlines()[0] in shown[1][1]
    assert seen_text(at.title[0].value) == "How do burn rates work?"


def test_empty_and_over_long_messages_are_refused_and_the_draft_is_kept(
    app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = chat_page(app_ctx, "mia", new_session(app_ctx, "mia"))
    too_long = "x" * 8001
    at.chat_input(key=state.CHAT_INPUT).set_value(too_long).run()
    assert stored(app_ctx) == []
    assert any("limit is 8,000" in seen_text(w.value) for w in at.warning)
    assert [c.value for c in at.code] == [too_long]


def test_a_failed_reply_shows_an_error_bubble_and_retry_answers_the_same_message(
    app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch, gemini_server: FakeGeminiServer
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-page-test-key")
    monkeypatch.setenv("GEMINI_API_BASE", gemini_server.base_url)
    st.cache_resource.clear()
    for _ in range(4):
        gemini_server.enqueue(status=503)
    at = chat_page(app_ctx, "mia", new_session(app_ctx, "mia"))
    send(at, app_ctx, "Are you up?")
    assert [r[0] for r in stored(app_ctx)] == ["user", "error"]
    assert bubbles(at)[-1][0] == "error" and "503" in bubbles(at)[-1][1]
    gemini_server.enqueue(text="Up and running.")
    retry = [b for b in at.button if b.key and b.key.startswith(state.RETRY_PREFIX)]
    assert len(retry) == 1
    settled(retry[0].click().run(), app_ctx)
    rows = stored(app_ctx)
    assert [r for r in rows if r[0] == "user"] == [("user", "Are you up?")]
    assert rows[-1] == ("assistant", "Up and running.")
    assert bubbles(at)[-1] == ("assistant", "Up and running.")
    assert not [b for b in at.button if b.key and b.key.startswith(state.RETRY_PREFIX)]


def test_thumbs_down_and_a_report_are_stored_as_feedback(app_ctx: AppContext) -> None:
    at = chat_page(app_ctx, "mia", new_session(app_ctx, "mia"))
    send(at, app_ctx, "Summarise our SLOs")
    at.feedback[0].set_value(0).run()
    form_key = next(
        f.form_id for f in at.text_area if f.form_id.startswith(state.REPORT_FORM_PREFIX)
    )
    at.selectbox[0].set_value("content")
    at.selectbox[1].set_value("high")
    at.text_area[0].input("Missed the latency SLO")
    submit = next(b for b in at.button if b.form_id == form_key)
    submit.click().run()
    with app_ctx.db.session() as session:
        rows = session.scalars(select(Feedback)).all()
        assert [(f.rating, f.category, f.priority, f.description) for f in rows] == [
            (0, "content", "high", "Missed the latency SLO")
        ]
    assert any("feedback was saved" in s.value for s in at.success)


def logged_incidents(ctx: AppContext) -> list[dict[str, object]]:
    events, _ = read_events(ctx.settings.event_log_path)
    return [event for event in events if event["event"] == ERROR_EVENT]


@pytest.mark.parametrize("title", ["", "   "])
def test_renaming_a_chat_to_an_empty_title_says_why_and_keeps_the_old_title(
    app_ctx: AppContext, title: str
) -> None:
    session_id = new_session(app_ctx, "mia")
    app_ctx.chat.rename(session_id, app_ctx.users.get("mia"), "Quarterly numbers")
    at = chat_page(app_ctx, "mia", session_id)
    rename = next(b for b in at.button if b.form_id == state.CHAT_RENAME)
    next(t for t in at.text_input if t.form_id == state.CHAT_RENAME).input(title)
    rename.click().run()
    assert not at.exception  # a validation error, not the error page
    assert "A title has 1–200 characters." in [seen_text(e.value) for e in at.error]
    assert seen_text(at.title[0].value) == "Quarterly numbers"
    assert app_ctx.chat.get_session(session_id, app_ctx.users.get("mia")).title == (
        "Quarterly numbers"
    )
    assert logged_incidents(app_ctx) == []


def test_analytics_panels_follow_the_feature_flag(app_ctx: AppContext) -> None:
    session_id = new_session(app_ctx, "mia")
    at = chat_page(app_ctx, "mia", session_id)
    send(at, app_ctx, "Hi")
    assert not at.tabs
    assert any("Pro session analytics" in c.value for c in at.caption)
    app_ctx.users.set_feature("mia", "pro_session_analytics", True)
    at = chat_page(app_ctx, "mia", session_id)
    assert [t.label for t in at.tabs] == ["Timeline", "Insights", "Run metrics"]
    labels = [m.label for m in at.metric]
    assert {"Messages", "Tokens in / out", "Median reply", "p95 reply", "Retries"} <= set(labels)


def test_another_users_session_looks_exactly_like_a_missing_one(app_ctx: AppContext) -> None:
    theirs = chat_page(app_ctx, "max", new_session(app_ctx, "mia"))
    missing = chat_page(app_ctx, "max", "3f1c0e9e-0000-4000-8000-000000000000")
    assert [w.value for w in theirs.warning] == [w.value for w in missing.warning]
    assert SESSION_NOT_FOUND in theirs.warning[0].value
    assert not theirs.chat_input


def test_admins_open_any_session_read_only(app_ctx: AppContext) -> None:
    session_id = new_session(app_ctx, "mia")
    mia = app_ctx.users.get("mia")
    app_ctx.chat.add_user_message(session_id, mia, "private question")
    at = chat_page(app_ctx, "admin", session_id)
    assert ("user", "private question") in bubbles(at)
    assert any("Read-only" in i.value for i in at.info)
    assert not at.chat_input


def test_the_sidebar_lists_my_sessions_and_opens_one(app_ctx: AppContext) -> None:
    first = new_session(app_ctx, "mia")
    mia = app_ctx.users.get("mia")
    app_ctx.chat.add_user_message(first, mia, "Alpha topic")
    second = new_session(app_ctx, "mia", "Code Reviewer")
    app_ctx.chat.add_user_message(second, mia, "Beta topic")
    at = chat_page(app_ctx, "mia")
    picks = [b for b in at.sidebar.button if b.key and b.key.startswith(state.SESSION_PICK_PREFIX)]
    day = f"{app_ctx.chat.get_session(second, mia).updated_at:%d %b}"
    # The same day for both: persona and day tell chats with one title apart.
    assert [seen_text(b.label) for b in picks] == [
        f"Beta topic · Code Reviewer · {day}",
        f"Alpha topic · Nexus Assistant · {day}",
    ]
    picks[1].click().run()
    assert at.query_params[links.SESSION_QUERY_PARAM] == first
    assert at.title[0].value == "Alpha topic"


def test_a_persona_whose_stored_avatar_is_a_file_name_still_chats_with_the_default_avatar(
    app_ctx: AppContext,
) -> None:
    with app_ctx.db.session() as session:  # stored by an older Nexus, which took any 8 characters
        session.execute(update(Persona).values(avatar="app.py"))
        session.execute(update(PersonaVersion).values(avatar="app.py"))
    at = chat_page(app_ctx, "mia", new_session(app_ctx, "mia"))
    send(at, app_ctx, "Still there?")
    assert not at.exception
    assert [r[0] for r in stored(app_ctx)] == ["user", "assistant"]
    assert [m.avatar for m in at.chat_message if m.name == "assistant"] == [
        "🤖\N{VARIATION SELECTOR-16}"
    ]


def test_a_message_the_database_cannot_store_stays_on_screen_with_the_reason(
    app_ctx: AppContext,
    monkeypatch: pytest.MonkeyPatch,
    read_only_url: Callable[[Database], str],
) -> None:
    at = chat_page(app_ctx, "mia", new_session(app_ctx, "mia"))
    monkeypatch.setenv("DATABASE_URL", read_only_url(app_ctx.db))
    st.cache_resource.clear()  # the app reconnects to the database, which now refuses writes
    at.chat_input(key=state.CHAT_INPUT).set_value("Please keep this draft").run()
    assert not at.exception
    assert DatabaseUnavailable.MESSAGE in [seen_text(w.value) for w in at.warning]
    assert "Please keep this draft" in [c.value for c in at.code]
    assert stored(app_ctx) == []
