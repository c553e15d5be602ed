"""Personas page."""

import streamlit as st

from nexus_core.ui.guard import require_page

ctx, user = require_page("personas")

st.title("🎭 Personas")
st.info("Create and edit personas. Until the page lands, use `nexus personas` on the server.")
