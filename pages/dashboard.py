"""Dashboard page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("dashboard")

st.title("📈 Dashboard")
st.info(
    "SLO dashboard: p95 response latency, API success rate, error budget and burn "
    "rate. Coming with the log analytics work."
)
