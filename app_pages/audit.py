"""Audit page (admins): the append-only trail of sign-ins, sessions, feedback and admin actions."""

import streamlit as st

from nexus_core.ui import audit_view
from nexus_core.ui.guard import require_page

ctx, user = require_page("audit")

st.title("🧾 Audit")
st.caption(
    "Who did what, newest first. The trail is append-only: nothing in the app edits or "
    "deletes it, and a hash chain shows a change made in the database directly. Links open "
    "the chat session or the feedback item."
)
audit_view.chain_check(ctx)
query = audit_view.audit_filters(ctx)
audit_view.audit_table(ctx, query)
