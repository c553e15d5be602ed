"""Widgets of the Feedback page: the general-feedback form and the user's own submissions.

Everyone signed in may send feedback about the app, optionally about one of their chats, and
follow its status here. Triage (notes, assignees) stays on the explorer and is never shown here.
"""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.feedback import CATEGORIES, MAX_DESCRIPTION_CHARS, PRIORITIES, FeedbackView
from nexus_core.feedback.triage import STATUS_LABELS
from nexus_core.ui import notices
from nexus_core.users import UserView

# Widget and session keys of the Feedback page.
FORM = "nexus_feedback_form"
CATEGORY = "nexus_feedback_category"
PRIORITY = "nexus_feedback_priority"
DESCRIPTION = "nexus_feedback_description"
SESSION = "nexus_feedback_session"
SEND = "nexus_feedback_send"

DEFAULT_PRIORITY = "medium"
TIME_FORMAT = "%Y-%m-%d %H:%M"
RATING_TEXT: dict[int | None, str] = {0: "👎 thumbs down", 1: "👍 thumbs up"}


def general_form(ctx: AppContext, user: UserView) -> None:
    """Category, priority, description and an optional chat to link; saved on submit."""
    sessions = {s.public_id: s.title for s in ctx.chat.list_sessions(user, include_archived=True)}
    with st.form(FORM, clear_on_submit=True):
        left, right = st.columns(2)
        category = left.selectbox("Category", CATEGORIES, key=CATEGORY)
        priority = right.selectbox(
            "Priority", PRIORITIES, index=PRIORITIES.index(DEFAULT_PRIORITY), key=PRIORITY
        )
        description = st.text_area(
            "What would you like us to know?",
            max_chars=MAX_DESCRIPTION_CHARS,
            key=DESCRIPTION,
            placeholder="What happened, what you expected, or the idea you have.",
        )
        linked = st.selectbox(
            "About one of your chats (optional)",
            list(sessions),
            index=None,
            format_func=lambda public_id: sessions[public_id],
            placeholder="No chat — about Nexus AI in general",
            key=SESSION,
        )
        if not st.form_submit_button("Send feedback", key=SEND, type="primary"):
            return
    notices.act(
        lambda: ctx.feedback.submit(
            user,
            category=category,
            priority=priority,
            description=description,
            session_public_id=linked,
        ),
        success=lambda saved: (
            f"Thanks — feedback #{saved.id:d} was saved. Follow its status below."
        ),
    )


def _about(item: FeedbackView) -> str:
    if item.message_id is not None:
        return "a reply"
    return "a chat" if item.session_id is not None else "Nexus AI"


def _submission(item: FeedbackView) -> dict[str, object]:
    return {
        "#": item.id,
        "Sent (UTC)": item.created_at.strftime(TIME_FORMAT),
        "About": _about(item),
        "Category": item.category,
        "Priority": item.priority,
        "Status": STATUS_LABELS.get(item.status, item.status),
        "Feedback": item.description or RATING_TEXT.get(item.rating, ""),
    }


def my_submissions(ctx: AppContext, user: UserView) -> None:
    """The user's own feedback, newest first, with its status."""
    items = ctx.feedback.mine(user)
    if not items:
        st.info("You have not sent any feedback yet.")
        return
    st.dataframe(
        [_submission(item) for item in items],
        hide_index=True,
        column_config={
            "#": st.column_config.NumberColumn(width="small"),
            "Feedback": st.column_config.TextColumn(width="large"),
        },
    )
