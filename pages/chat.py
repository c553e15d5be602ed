"""Chat page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("chat")

st.title("💬 Chat")
st.info(
    "Talk to a persona. Sessions, streamed replies, retries, export and feedback "
    "arrive with the Chat page work."
)
