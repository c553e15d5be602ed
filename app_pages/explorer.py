"""Feedback explorer (analysts and admins): filter, chart, export and triage all feedback."""

import streamlit as st

from nexus_core.ui import explorer_view, links, notices
from nexus_core.ui.guard import require_page

ctx, user = require_page("explorer")
triage = ctx.triage

st.title("🔎 Feedback explorer")
explorer_view.show_notice()
filters, sort, bucket = explorer_view.filters_sidebar(ctx, triage, user)
total = notices.act(lambda: triage.count(filters, viewer=user))
if total is None:
    st.stop()
page = explorer_view.table_page(filters, sort, total)
rows = notices.act(
    lambda: triage.search(filters, viewer=user, sort=sort, limit=page.size, offset=page.offset)
)
if rows is None:
    st.stop()

# Charts only while their tab is open: not on the first screen (no chart code to load, no stats).
items_tab, charts_tab = st.tabs(["Items", "Charts"], key=explorer_view.TABS, on_change="rerun")
with items_tab:
    selected = explorer_view.feedback_table(rows, page)
    explorer_view.bulk_actions(triage, user, selected)
    explorer_view.freeze_selected(ctx, user, rows, selected)
    explorer_view.downloads(triage, user, filters, total)
if charts_tab.open:
    with charts_tab:
        explorer_view.charts(triage, user, filters, bucket)

opened = links.explorer_item()
if opened is not None:
    st.divider()
    explorer_view.detail(triage, user, opened)
