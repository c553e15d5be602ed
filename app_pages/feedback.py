"""Feedback page: send feedback about Nexus AI and follow the status of what you sent."""

import streamlit as st

from nexus_core.feedback.triage import can_triage
from nexus_core.ui import feedback_view
from nexus_core.ui.guard import require_page
from nexus_core.ui.nav import page_path

ctx, user = require_page("feedback")

st.title("📝 Feedback")
st.write(
    "Tell us what works, what does not and what you miss. To comment on one reply, use "
    "**Report** under it in the chat."
)
feedback_view.general_form(ctx, user)

st.subheader("My submissions")
feedback_view.my_submissions(ctx, user)
if can_triage(user):
    st.page_link(page_path("explorer"), label="Explore and triage all feedback", icon="🔎")
