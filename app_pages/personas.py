"""Personas page: everyone browses; admins create, edit (a new version each time) and deactivate."""

import streamlit as st

from nexus_core.ui import notices, persona_view, state
from nexus_core.ui.guard import require_page

ctx, user = require_page("personas")

st.title("🎭 Personas")
notices.show(state.ADMIN_NOTICE)
personas = ctx.personas.list(include_inactive=user.is_admin)
if user.is_admin:
    st.caption(
        "Every save creates a new version; chats keep the version they started with. "
        "Preview a reply before saving."
    )
    browse, edit, history = st.tabs(["Browse", "Create or edit", "History"])
    with edit:
        persona_view.persona_editor(ctx, user, personas)
else:
    st.caption("The personas you can chat with. Admins create and edit them.")
    browse, history = st.tabs(["Browse", "History"])
with browse:
    persona_view.persona_cards(personas, ctx.budgets.by_target("persona"))
with history:
    persona_view.version_history(ctx, user, personas)
