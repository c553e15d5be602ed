"""Dashboard page (admins): SLOs from the event log, feedback incidents, and operations checks."""

import streamlit as st

from nexus_core.ui.dashboard_view import dashboard
from nexus_core.ui.guard import require_page
from nexus_core.ui.operations import operations_panel

ctx, user = require_page("dashboard")

st.title("📈 Dashboard")
dashboard(ctx, user)
operations_panel(ctx)
