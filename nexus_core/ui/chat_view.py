"""Widgets of the chat page: the sessions sidebar, the conversation and its live reply.

Everything shown comes from the database; ``st.session_state`` only holds widget values. The
session being viewed lives in the URL (``links.chat_url``) so a link reopens it.
"""

from __future__ import annotations

import time
from functools import partial

import streamlit as st

from nexus_core.ai.job_store import ACTIVE_STATES, JobView
from nexus_core.ai.progress import JobUpdate
from nexus_core.app_context import AppContext
from nexus_core.ask.drafts import command_question
from nexus_core.chat import SESSION_NOT_FOUND, MessageView, SessionView
from nexus_core.errors import NotFound
from nexus_core.feedback import CATEGORIES, PRIORITIES
from nexus_core.personas import PersonaView
from nexus_core.privacy.content import is_removed
from nexus_core.ui import links, notices, show, state
from nexus_core.ui.nav import page_path
from nexus_core.ui.widgets.ask import generated_label
from nexus_core.ui.widgets.follow import follow
from nexus_core.ui.widgets.persona import persona_header, provider_label
from nexus_core.users import UserView, pages_for

USER_AVATAR = "🧑"
ERROR_AVATAR = "⚠️"
SQL_AVATAR = "🧪"
LIVE_POLL_SECONDS = 1.5
STREAM_REDRAW_SECONDS = 0.08
STREAM_CURSOR = " ▌"


def open_session(public_id: str | None) -> None:
    """Point the URL at a session (or at none) and rerun."""
    links.show_chat_session(public_id)
    st.rerun()


# --- sidebar ------------------------------------------------------------------------------


def sessions_sidebar(ctx: AppContext, user: UserView, current: str | None) -> None:
    """New chat, search and the user's sessions, newest first."""
    with st.sidebar:
        st.divider()
        if st.button("➕ New chat", key=state.NEW_CHAT_BUTTON, width="stretch"):
            new_chat_dialog(ctx, user)
        search = st.text_input("Search chats", key=state.CHAT_SEARCH, placeholder="Title…")
        show_archived = st.toggle("Show archived", key=state.CHAT_SHOW_ARCHIVED)
        sessions = ctx.chat.list_sessions(user, search=search, include_archived=show_archived)
        if not sessions:
            st.caption("No chats yet." if not search else "No chat matches that search.")
        personas = {p.id: p.name for p in ctx.personas.list(include_inactive=True)}
        for chat in sessions:
            label = ("🗄️ " if chat.status == "archived" else "") + session_label(chat, personas)
            kind = "primary" if chat.public_id == current else "tertiary"
            if st.button(
                show.plain(label),
                key=state.SESSION_PICK_PREFIX + chat.public_id,
                type=kind,
                width="stretch",
            ):
                open_session(chat.public_id)


def session_label(chat: SessionView, personas: dict[int, str]) -> str:
    """``Title · Persona · 03 Dec``: chats with the same title told apart by persona and day."""
    persona = personas.get(chat.persona_id, "?")
    return f"{chat.title} · {persona} · {chat.updated_at:%d %b}"


@st.dialog("Start a new chat", width="large")
def new_chat_dialog(ctx: AppContext, user: UserView) -> None:
    """Pick a persona; the chat starts with its current version."""
    personas = ctx.personas.list()
    columns = st.columns(2)
    for index, persona in enumerate(personas):
        with columns[index % 2].container(border=True):
            persona_header(persona)
            show.caption(persona.description)
            if st.button("Chat", key=state.PERSONA_PICK_PREFIX + str(persona.id)):
                chat = ctx.chat.create_session(user, persona.name)
                open_session(chat.public_id)


def welcome(ctx: AppContext) -> None:
    """What a user sees before choosing a chat."""
    st.title("💬 Chat")
    st.write("Start a new chat from the sidebar, or reopen one of your chats.")
    show.caption(f"Model: {provider_label(ctx)}")
    columns = st.columns(3)
    for index, persona in enumerate(ctx.personas.list()):
        with columns[index % 3].container(border=True):
            persona_header(persona)
            show.caption(persona.description)


def not_found() -> None:
    """The same friendly answer for a missing session and somebody else's."""
    st.title("💬 Chat")
    st.warning(SESSION_NOT_FOUND + " Pick one of your chats in the sidebar or start a new one.")


# --- conversation -------------------------------------------------------------------------


def conversation(
    ctx: AppContext, user: UserView, chat: SessionView, persona: PersonaView, *, writable: bool
) -> None:
    """Every stored message, with feedback on replies and Retry on the last failure."""
    notices.show(state.CHAT_NOTICE)  # e.g. why the last Retry was refused
    messages = ctx.chat.messages(chat.public_id, user)
    jobs = ctx.worker.store.for_session(chat.id)
    retryable = _retryable_errors(jobs)
    ratings = {
        f.message_id: f.rating for f in ctx.feedback.for_session(chat.id) if f.user_id == user.id
    }
    for message in messages:
        if message.role == "user":
            with st.chat_message("user", avatar=USER_AVATAR):
                _message_text(message.content)
        elif message.role == "assistant":
            with st.chat_message("assistant", avatar=show.avatar(persona.avatar)):
                _message_text(message.content)
                _reply_meta(message)
                if writable:
                    _feedback_widgets(ctx, user, message, ratings.get(message.id))
        else:
            with st.chat_message("error", avatar=ERROR_AVATAR):
                show.error(message.content)
                job = retryable.get(message.id)
                can_retry = writable and job is not None and chat.status == "active"
                if can_retry and st.button("Retry", key=state.RETRY_PREFIX + job.id, icon="🔁"):
                    retry = partial(ctx.worker.retry, job.id, user)
                    notices.act(retry, key=state.CHAT_NOTICE)  # shown after the rerun
                    st.rerun()
    active = [j for j in jobs if j.status in ACTIVE_STATES]
    if active:
        live_reply(ctx, persona, active[-1])


def _message_text(text: str) -> None:
    """A message's words, or — when retention or erasure removed them — the placeholder saying
    so, set apart as a caption."""
    if is_removed(text):
        show.caption(text)
    else:
        show.markdown(text)


def _retryable_errors(jobs: list[JobView]) -> dict[int, JobView]:
    """Error bubble id → the failed job it ends, when that job is the newest for its message."""
    newest: dict[int, JobView] = {}
    for job in jobs:
        newest[job.user_message_id] = job
    return {
        j.reply_message_id: j
        for j in newest.values()
        if j.status == "failed" and j.reply_message_id is not None
    }


def _reply_meta(message: MessageView) -> None:
    parts = [message.model or ""]
    if message.latency_ms is not None:
        parts.append(f"{message.latency_ms / 1000:.1f} s")
    if message.tokens_out is not None:
        parts.append(f"{message.tokens_in or 0} → {message.tokens_out} tokens")
    show.caption(" · ".join(p for p in parts if p))


def _feedback_widgets(
    ctx: AppContext, user: UserView, message: MessageView, rating: int | None
) -> None:
    left, right, freeze = st.columns([1, 2, 3], vertical_alignment="center")
    with left:
        key = state.RATING_PREFIX + str(message.id)
        chosen = st.feedback("thumbs", key=key, default=rating)
        if chosen is not None and chosen != rating:
            notices.act(lambda: ctx.feedback.rate(user, message.id, chosen))
    form_key = state.REPORT_FORM_PREFIX + str(message.id)
    with right, st.popover("Report", icon="📝"), st.form(form_key, clear_on_submit=True):
        category = st.selectbox("Category", CATEGORIES)
        priority = st.selectbox("Priority", PRIORITIES, index=1)
        description = st.text_area("What happened?", max_chars=5000)
        if st.form_submit_button("Send feedback"):
            notices.act(
                lambda: ctx.feedback.submit(
                    user,
                    category=category,
                    priority=priority,
                    description=description,
                    message_id=message.id,
                ),
                success="Thanks — your feedback was saved.",
            )
    if "compare" in pages_for(user, env=ctx.settings.env):  # test sets come with prompt testing
        with freeze:
            freeze_form(ctx, user, message)


DEFAULT_FROZEN_SET = "Frozen from chat"


def freeze_form(ctx: AppContext, user: UserView, message: MessageView) -> None:
    """Add this turn (the question, its history and this reply as the baseline) to a test set,
    to replay it against a persona change on the Evals page."""
    form_key = state.FREEZE_FORM_PREFIX + str(message.id)
    with st.popover("Add to test set", icon="🧊"), st.form(form_key, clear_on_submit=True):
        name = st.text_input("Test set", value=DEFAULT_FROZEN_SET, max_chars=120)
        if st.form_submit_button("Add"):
            notices.act(
                lambda: ctx.freezer.freeze(user, name, message_ids=[message.id]),
                success=lambda done: (
                    f"Added to the test set {done.test_set.name} "
                    f"({len(done.test_set.cases)} cases)."
                ),
            )


# --- /sql <question>: a draft query for analysts ---------------------------------------------


def sql_command(ctx: AppContext, user: UserView, chat: SessionView, text: str) -> bool:
    """Answer a ``/sql <question>`` message with a draft query (not sent to the persona, not
    stored in the chat); False when ``text`` is an ordinary message. Raises ``NexusError``
    (a member: the command is for analysts and admins) so the page keeps what was typed."""
    question = command_question(text)
    if question is None:
        return False
    draft = ctx.ask.draft(user, question)
    st.session_state[state.CHAT_SQL_DRAFT] = {"session": chat.public_id, "draft": draft.id}
    return True


def sql_answer(ctx: AppContext, user: UserView, chat: SessionView) -> None:
    """The draft of this chat's last ``/sql``, labelled as generated, with a link to run it."""
    kept = st.session_state.get(state.CHAT_SQL_DRAFT)
    if not kept or kept.get("session") != chat.public_id:
        return
    draft = notices.act(lambda: ctx.ask.recall(user, int(kept["draft"])))
    if draft is None:
        return
    with st.chat_message("assistant", avatar=SQL_AVATAR):
        generated_label(draft)
        st.code(draft.sql, language="sql")
        st.page_link(
            page_path("workbench"),
            label="Open it in the workbench to run it",
            icon="🧪",
            query_params=links.ask_query(draft.id),
        )


# --- the reply in flight ------------------------------------------------------------------


def live_reply(ctx: AppContext, persona: PersonaView, job: JobView) -> None:
    """Stream a reply being generated in this process, or poll one running elsewhere.

    The text so far is re-rendered through ``show.markdown`` (never ``st.write_stream``, which
    would show model Markdown unfiltered while it streams).
    """
    broker = ctx.worker.broker
    with st.chat_message("assistant", avatar=show.avatar(persona.avatar)):
        if not broker.knows(job.id):
            reply = partial(_reply_elsewhere, ctx, job.id)
            follow(ctx, reply, running=True, every_seconds=LIVE_POLL_SECONDS)
            return
        status = st.empty()
        body = st.empty()
        text = ""
        shown_at = 0.0
        for item in broker.watch(job.id):
            if isinstance(item, str):
                text += item
                status.empty()
                if time.monotonic() - shown_at >= STREAM_REDRAW_SECONDS:
                    with body.container():
                        show.markdown(text + STREAM_CURSOR)
                    shown_at = time.monotonic()
            else:
                _show_status(status, item, provider_label(ctx))
        with body.container():
            show.markdown(text)
    st.rerun()


def _show_status(status, item: JobUpdate, label: str) -> None:  # type: ignore[no-untyped-def]
    if item.status == "retrying" and item.retry_in_seconds is not None:
        status.warning(
            show.plain(
                f"{label} is unavailable — retrying in {item.retry_in_seconds:.0f} s, "
                f"attempt {item.attempt + 1} of {item.max_attempts}"
            )
        )
    elif item.status in ("queued", "running"):
        status.caption("Thinking…")


def _reply_elsewhere(ctx: AppContext, job_id: str) -> bool:
    """What a reply another process is making is doing; is it still running?"""
    try:
        job = ctx.worker.get(job_id)
    except NotFound:
        return False
    if job.status not in ACTIVE_STATES:
        return False
    if job.status == "retrying":
        st.warning(f"Retrying (attempt {job.attempt + 1:d} of {job.max_attempts:d})…")
    else:
        st.caption("Working on a reply…")
    return True
