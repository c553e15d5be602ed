"""Users page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("users")

st.title("👥 Users")
st.info(
    "Manage accounts, roles and feature flags. Until the page lands, use `nexus "
    "users` on the server."
)
