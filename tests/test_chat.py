"""Chat sessions, export and feedback services: ownership, soft delete, audit events."""

from __future__ import annotations

import json

import pytest

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.chat import MAX_TITLE_CHARS, clean_message, title_from
from nexus_core.errors import NotFound, ValidationError
from nexus_core.transcripts import export_session
from nexus_core.users import UserView
from tests.constants import PASSWORD


@pytest.fixture
def people(ctx: AppContext) -> tuple[UserView, UserView, UserView]:
    ctx.init()
    owner = ctx.users.create("olga", PASSWORD)
    other = ctx.users.create("otto", PASSWORD)
    admin = ctx.users.get("admin")
    return owner, other, admin


def test_messages_are_cleaned_and_limited() -> None:
    assert clean_message("  hi\x00 there\x1b \n", 100) == "hi there"
    with pytest.raises(ValidationError, match="empty"):
        clean_message(" \x07 \n", 100)
    with pytest.raises(ValidationError, match="limit is 10"):
        clean_message("x" * 11, 10)


def test_the_title_comes_from_the_first_message() -> None:
    assert title_from("How do I rotate logs?\nmore") == "How do I rotate logs?"
    long = title_from("word " * 40)
    assert long.endswith("…") and len(long) <= 61


def test_sessions_are_listed_newest_first_and_searchable(ctx: AppContext, people) -> None:  # type: ignore[no-untyped-def]
    owner, other, _ = people
    first = ctx.chat.create_session(owner, "Nexus Assistant")
    ctx.chat.add_user_message(first.public_id, owner, "Deploying on Friday")
    second = ctx.chat.create_session(owner, "Code Reviewer")
    ctx.chat.add_user_message(second.public_id, owner, "Review my 100% SQL_query")
    ctx.chat.create_session(other, "Nexus Assistant")
    titles = [s.title for s in ctx.chat.list_sessions(owner)]
    assert titles == ["Review my 100% SQL_query", "Deploying on Friday"]
    assert [s.title for s in ctx.chat.list_sessions(owner, search="friday")] == [
        "Deploying on Friday"
    ]
    assert [s.title for s in ctx.chat.list_sessions(owner, search="100%")] == [
        "Review my 100% SQL_query"
    ]
    assert ctx.chat.list_sessions(owner, search="1%0") == []  # % is literal, not a wildcard
    assert ctx.chat.list_sessions(owner, search="m_") == []  # _ is literal too


def test_another_users_session_is_not_found_the_same_way(ctx: AppContext, people) -> None:  # type: ignore[no-untyped-def]
    owner, other, admin = people
    chat = ctx.chat.create_session(owner, "Nexus Assistant")
    with pytest.raises(NotFound) as theirs:
        ctx.chat.get_session(chat.public_id, other)
    with pytest.raises(NotFound) as missing:
        ctx.chat.get_session("00000000-0000-0000-0000-000000000000", other)
    assert str(theirs.value) == str(missing.value)
    assert ctx.chat.get_session(chat.public_id, admin).public_id == chat.public_id
    with pytest.raises(NotFound):  # admins read, they do not write
        ctx.chat.add_user_message(chat.public_id, admin, "hello")


def test_rename_archive_and_delete_are_audited(ctx: AppContext, people) -> None:  # type: ignore[no-untyped-def]
    owner, _, _ = people
    chat = ctx.chat.create_session(owner, "Nexus Assistant")
    assert ctx.chat.rename(chat.public_id, owner, "  Better title ").title == "Better title"
    with pytest.raises(ValidationError):
        ctx.chat.rename(chat.public_id, owner, "x" * (MAX_TITLE_CHARS + 1))
    ctx.chat.set_archived(chat.public_id, owner, True)
    assert ctx.chat.list_sessions(owner) == []
    assert len(ctx.chat.list_sessions(owner, include_archived=True)) == 1
    with pytest.raises(ValidationError, match="archived"):
        ctx.chat.add_user_message(chat.public_id, owner, "still there?")
    ctx.chat.delete(chat.public_id, owner)
    with pytest.raises(NotFound):
        ctx.chat.get_session(chat.public_id, owner)
    actions = [a.action for a in audit.for_target(ctx.db, "session", chat.public_id)]
    assert actions == ["session.created", "session.renamed", "session.archived", "session.deleted"]


def _chat_with_reply(ctx: AppContext, owner: UserView) -> tuple[str, int]:
    chat = ctx.chat.create_session(owner, "Nexus Assistant")
    message = ctx.chat.add_user_message(chat.public_id, owner, "What is an SLO?")
    job = ctx.worker.wait(ctx.worker.enqueue(message.id, owner), timeout=30)
    assert job.status == "succeeded" and job.reply_message_id
    return chat.public_id, job.reply_message_id


def test_json_export_has_session_persona_messages_and_feedback(ctx: AppContext, people) -> None:  # type: ignore[no-untyped-def]
    owner, other, _ = people
    public_id, reply_id = _chat_with_reply(ctx, owner)
    ctx.feedback.rate(owner, reply_id, 0)
    ctx.feedback.submit(
        owner, category="content", priority="high", description="Too vague", message_id=reply_id
    )
    exported = export_session(ctx.db, public_id, "json", actor=owner)
    document = json.loads(exported.content)
    assert set(document) == {"session", "persona", "messages", "feedback"}
    assert document["session"]["id"] == public_id
    assert (document["persona"]["name"], document["persona"]["version"]) == ("Nexus Assistant", 1)
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["messages"][0]["created_at"].endswith("Z")
    assert document["feedback"][0]["rating"] == "down"
    assert document["feedback"][0]["description"] == "Too vague"
    assert audit.for_target(ctx.db, "session", public_id)[-1].action == "session.exported"
    with pytest.raises(NotFound):
        export_session(ctx.db, public_id, "json", actor=other)


def test_markdown_export_reads_as_a_transcript(ctx: AppContext, people) -> None:  # type: ignore[no-untyped-def]
    owner, _, _ = people
    public_id, _ = _chat_with_reply(ctx, owner)
    text = export_session(ctx.db, public_id, "md", actor=owner).content
    assert text.startswith("# What is an SLO?")
    assert "Persona: 🤖 Nexus Assistant (version 1)" in text
    assert "## You ·" in text and "## Assistant ·" in text


def test_feedback_on_a_reply_is_one_row_per_user(ctx: AppContext, people) -> None:  # type: ignore[no-untyped-def]
    owner, other, _ = people
    public_id, reply_id = _chat_with_reply(ctx, owner)
    ctx.feedback.rate(owner, reply_id, 1)
    ctx.feedback.rate(owner, reply_id, 0)
    saved = ctx.feedback.submit(
        owner, category="bug", priority="critical", description="Wrong number", message_id=reply_id
    )
    rows = ctx.feedback.mine(owner)
    assert len(rows) == 1 and rows[0].id == saved.id
    assert (rows[0].rating, rows[0].category, rows[0].priority) == (0, "bug", "critical")
    assert rows[0].context["session"] == public_id
    with pytest.raises(NotFound):
        ctx.feedback.rate(other, reply_id, 1)
    with pytest.raises(ValidationError, match="category"):
        ctx.feedback.submit(
            owner, category="rant", priority="low", description="x", message_id=reply_id
        )
