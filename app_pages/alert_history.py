"""Alert history page (admins): every alert with its timeline and deliveries."""

import streamlit as st

from nexus_core.ui import alerts_view, links
from nexus_core.ui.guard import require_page

ctx, user = require_page("alert_history")

st.title("🕰️ Alert history")
opened = links.alert()
if opened is not None:
    alerts_view.alert_detail(ctx, opened)
    st.link_button("All alerts", links.alert_history_url())
    st.divider()
alerts_view.history_table(ctx)
