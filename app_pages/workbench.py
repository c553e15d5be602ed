"""Workbench (analysts and admins): notebooks of read-only SQL and markdown over the app's data."""

import streamlit as st

from nexus_core.ui import ask_view, notebook_view, workbench_view
from nexus_core.ui.guard import require_page

ctx, user = require_page("workbench")
notebooks = ctx.notebooks

st.title("🧪 Workbench")
workbench_view.show_notice()
workbench_view.sidebar(notebooks, user)
notebook = workbench_view.opened(notebooks, user)
ask_view.ask_box(ctx, user, notebook)
if notebook is None:
    workbench_view.empty_state()
    workbench_view.schema_panel(user)
    st.stop()

workbench_view.schema_panel(user)
run_all = workbench_view.header(notebooks, user, notebook)
chosen = notebook_view.parameters(ctx, notebooks, user, notebook)
if run_all:
    notebook_view.run_all(ctx, user, notebook, chosen)
notebook_view.cells(ctx, notebooks, user, notebook, chosen)
