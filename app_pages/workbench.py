"""Workbench page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("workbench")

st.title("🧪 Workbench")
st.info(
    "Notebook-style SQL over events, sessions and feedback. Coming with the analytics workbench."
)
