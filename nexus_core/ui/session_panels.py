"""The chat page's session header: actions (rename, archive, delete, export) and the analytics
panels (timeline, insights, run metrics, audit trail)."""

from __future__ import annotations

from functools import partial

import streamlit as st

from nexus_core import audit
from nexus_core.analytics.charts import session_timeline_figure
from nexus_core.analytics.session import session_metrics, session_timeline
from nexus_core.app_context import AppContext
from nexus_core.chat import SessionView
from nexus_core.personas import PersonaView
from nexus_core.transcripts import export_session
from nexus_core.ui import notices, show, state
from nexus_core.ui.chat_view import open_session
from nexus_core.ui.show import plain
from nexus_core.users import UserView, feature_enabled

ANALYTICS_FEATURE = "pro_session_analytics"


def session_actions(ctx: AppContext, user: UserView, chat: SessionView, *, writable: bool) -> None:
    """Rename, archive, delete and export, in a popover next to the title."""
    with st.popover("Session", icon="⚙️"):
        if writable:
            with st.form(state.CHAT_RENAME):
                title = st.text_input("Title", value=chat.title, max_chars=200)
                if st.form_submit_button("Rename"):
                    # An empty title is refused with a message above the conversation.
                    rename = partial(ctx.chat.rename, chat.public_id, user, title)
                    notices.act(rename, key=state.CHAT_NOTICE)
                    st.rerun()
            archived = chat.status == "archived"
            if st.button("Unarchive" if archived else "Archive", icon="🗄️"):
                archive = partial(ctx.chat.set_archived, chat.public_id, user, not archived)
                notices.act(archive, key=state.CHAT_NOTICE)
                st.rerun()
            if st.button("Delete…", icon="🗑️"):
                confirm_delete(ctx, user, chat)
        for fmt, label in (("md", "Export Markdown"), ("json", "Export JSON")):
            st.download_button(
                plain(label),
                # Rendered (and audited) only when the user actually downloads.
                data=lambda fmt=fmt: (
                    export_session(ctx.db, chat.public_id, fmt, actor=user).content
                ),
                file_name=f"nexus-session-{chat.public_id[:8]}.{fmt}",
                mime="application/json" if fmt == "json" else "text/markdown",
                icon="⬇️",
                on_click="ignore",
            )


@st.dialog("Delete this chat?")
def confirm_delete(ctx: AppContext, user: UserView, chat: SessionView) -> None:
    """Ask before a soft delete."""
    st.write(f"“{plain(chat.title)}” disappears from your chats. It cannot be undone from the app.")
    if st.button("Delete", type="primary") and notices.act(
        lambda: ctx.chat.delete(chat.public_id, user)
    ):
        open_session(None)


def analytics_panels(
    ctx: AppContext, user: UserView, chat: SessionView, persona: PersonaView
) -> None:
    """Timeline, insights, run metrics (and the audit trail for admins), behind a feature flag."""
    if not feature_enabled(user, ANALYTICS_FEATURE, env=ctx.settings.env):
        st.caption(
            "Session analytics (timeline, insights, run metrics) come with the "
            "Pro session analytics feature — ask an admin to turn it on."
        )
        return
    messages = ctx.chat.messages(chat.public_id, user)
    jobs = ctx.worker.store.for_session(chat.id)
    feedback = ctx.feedback.for_session(chat.id)
    tabs = st.tabs(
        ["Timeline", "Insights", "Run metrics", *(["Audit trail"] if user.is_admin else [])]
    )
    with tabs[0]:
        events = session_timeline(chat.created_at, messages, feedback)
        show.chart(session_timeline_figure(events), width="stretch")
    with tabs[1]:
        st.markdown(
            f"- **Session** {plain(chat.public_id)}\n"
            f"- **Created** {chat.created_at:%Y-%m-%d %H:%M} UTC\n"
            f"- **Status** {plain(chat.status)}\n"
            f"- **Persona** {plain(persona.name)} (version {persona.version:d})"
        )
        if feedback:
            st.dataframe(
                [
                    {
                        "when": f.updated_at,
                        "rating": {1: "👍", 0: "👎"}.get(f.rating, ""),
                        "category": f.category,
                        "priority": f.priority,
                        "status": f.status,
                        "description": f.description,
                    }
                    for f in feedback
                ],
                hide_index=True,
            )
        else:
            st.caption("No feedback on this session yet.")
    with tabs[2]:
        m = session_metrics(messages, jobs)
        cols = st.columns(4)
        cols[0].metric(
            "Messages",
            f"{m.total_messages:,}",
            help=f"{m.user_messages:,} from you, "
            f"{m.assistant_messages:,} replies, {m.error_messages:,} errors",
        )
        cols[1].metric("Duration", f"{m.duration_seconds / 60:.1f} min")
        cols[2].metric("Tokens in / out", f"{m.tokens_in:,} / {m.tokens_out:,}")
        cols[3].metric("Retries", f"{m.retries:,}", help=f"{m.failed_replies:,} replies failed")
        cols = st.columns(3)
        cols[0].metric("Median reply", plain(_ms(m.median_latency_ms)))
        cols[1].metric("p95 reply", plain(_ms(m.p95_latency_ms)))
        cols[2].metric("Median first token", plain(_ms(m.median_ttft_ms)))
    if user.is_admin:
        with tabs[3]:
            trail = audit.for_target(ctx.db, "session", chat.public_id)
            st.dataframe(
                [
                    {
                        "when": a.created_at,
                        "who": a.actor_name,
                        "action": a.action,
                        "details": a.details,
                    }
                    for a in trail
                ],
                hide_index=True,
            )


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value / 1000:.2f} s"
