"""Audit page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("audit")

st.title("🧾 Audit")
st.info(
    "The audit trail of sign-ins, sessions, feedback and admin actions. The "
    "filterable table arrives with the admin work."
)
