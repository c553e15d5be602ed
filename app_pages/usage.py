"""Usage page: my usage for everyone; the organisation's for analysts and admins; prices and
budgets for admins."""

import streamlit as st

from nexus_core.ui import usage_view
from nexus_core.ui.guard import require_page

ctx, user = require_page("usage")

st.title("💰 Usage")
usage_view.my_usage(ctx, user)
if user.role in ("admin", "analyst"):
    st.divider()
    usage_view.organisation_usage(ctx)
if user.is_admin:
    st.divider()
    usage_view.admin_settings(ctx, user)
