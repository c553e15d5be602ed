"""Alerts page (admins): the rules with their state, editing, silences, webhooks, check now."""

import streamlit as st

from nexus_core.ui import alerts_view, notices
from nexus_core.ui.guard import require_page

ctx, user = require_page("alerts")

st.title("🚨 Alerts")
st.caption(
    "Rules are evaluated every minute by one process of the deployment (and by "
    "`nexus alerts check`). A rule breaching for its 'for' minutes fires; a message goes to "
    "the webhooks when it fires and when it resolves."
)
notices.show(alerts_view.NOTICE)
alerts_view.check_now(ctx)
alerts_view.rules_table(ctx)
st.divider()
alerts_view.rule_editor(ctx, user)
st.divider()
alerts_view.webhooks_admin(ctx, user)
