"""Feedback explorer (analysts and admins): filter, chart, export and triage all feedback."""

import streamlit as st

from nexus_core.errors import NexusError
from nexus_core.ui import explorer_view, show
from nexus_core.ui.guard import require_page

ctx, user = require_page("explorer")
triage = explorer_view.triage_service(ctx)

st.title("🔎 Feedback explorer")
explorer_view.show_notice()
filters, sort, bucket = explorer_view.filters_sidebar(ctx, triage, user)
try:
    total = triage.count(filters, viewer=user)
    page = explorer_view.table_page(filters, sort, total)
    rows = triage.search(filters, viewer=user, sort=sort, limit=page.size, offset=page.offset)
except NexusError as exc:
    show.error(exc)
    st.stop()

items_tab, charts_tab = st.tabs(["Items", "Charts"])
with items_tab:
    selected = explorer_view.feedback_table(rows, page)
    explorer_view.bulk_actions(triage, user, selected)
    explorer_view.downloads(triage, user, filters, total)
with charts_tab:
    explorer_view.charts(triage, user, filters, bucket)

opened = explorer_view.opened_item()
if opened is not None:
    st.divider()
    explorer_view.detail(triage, user, opened)
