"""Dashboard page (admins): SLOs from the event log, and operations checks."""

import streamlit as st

from nexus_core.ui.guard import require_page
from nexus_core.ui.operations import operations_panel

ctx, user = require_page("dashboard")

st.title("📈 Dashboard")
st.info(
    "SLO dashboard: p95 response latency, API success rate, error budget and burn rate. "
    "Coming with the log analytics work."
)
operations_panel(ctx)
