"""Evals page: persona versions replayed on frozen real traffic and judged against the original
replies."""

import streamlit as st

from nexus_core.ui import eval_view
from nexus_core.ui.guard import require_page

ctx, user = require_page("evals")

st.title("🎯 Evals")
eval_view.start_form(ctx, user)
st.divider()
eval_view.runs_table(ctx, user)
