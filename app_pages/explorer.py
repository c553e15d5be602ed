"""Feedback explorer page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("explorer")

st.title("🔎 Feedback explorer")
st.info("Filter, chart and triage all user feedback. Coming with the feedback explorer work.")
