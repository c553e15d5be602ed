"""Feedback page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("feedback")

st.title("📝 Feedback")
st.info(
    "Submit feedback about Nexus AI and follow its status. The submission form "
    "arrives with the feedback work."
)
