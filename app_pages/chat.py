"""Chat page: sessions in the sidebar, the conversation, streamed replies, analytics."""

import streamlit as st

from nexus_core.errors import NexusError, NotFound
from nexus_core.ui import chat_view, links, show, state
from nexus_core.ui.guard import require_page
from nexus_core.ui.session_panels import analytics_panels, session_actions
from nexus_core.ui.widgets.persona import persona_header, provider_label

ctx, user = require_page("chat")
public_id = links.chat_session()
chat_view.sessions_sidebar(ctx, user, public_id)

if public_id is None:
    chat_view.welcome(ctx)
    st.stop()

try:
    chat = ctx.chat.get_session(public_id, user)
except NotFound:
    chat_view.not_found()
    st.stop()
persona = ctx.personas.get_by_id(chat.persona_id, chat.persona_version)
writable = chat.user_id == user.id

title, actions = st.columns([5, 1], vertical_alignment="bottom")
with title:
    show.title(chat.title)
    persona_header(persona, f" · v{persona.version}")
    show.caption(f"Model: {provider_label(ctx)}")
with actions:
    session_actions(ctx, user, chat, writable=writable)
if not writable:
    st.info("Read-only: this chat belongs to another user.")
elif chat.status == "archived":
    st.info("This chat is archived. Unarchive it from the ⚙️ Session menu to continue.")

chat_view.conversation(ctx, user, chat, persona, writable=writable)
chat_view.sql_answer(ctx, user, chat)

if st.session_state.get(state.CHAT_REJECTED_DRAFT):
    show.warning(st.session_state[state.CHAT_REJECTED_DRAFT]["reason"])
    st.code(st.session_state[state.CHAT_REJECTED_DRAFT]["text"], language=None, wrap_lines=True)

if writable and chat.status == "active":
    for notice in ctx.budgets.notices(user.id, chat.persona_id):
        show.warning(notice)
    prompt = st.chat_input(f"Message {persona.name}", key=state.CHAT_INPUT)
    if prompt:
        st.session_state.pop(state.CHAT_REJECTED_DRAFT, None)
        try:
            if not chat_view.sql_command(ctx, user, chat, prompt):
                ctx.worker.ask(ctx.chat, chat.public_id, user, prompt)
        except NexusError as exc:
            # Keep the draft visible so nothing typed is lost.
            st.session_state[state.CHAT_REJECTED_DRAFT] = {"reason": str(exc), "text": prompt}
        st.rerun()

with st.expander("Session analytics"):
    analytics_panels(ctx, user, chat, persona)
