"""Users page (admins): accounts with their role, status and last sign-in, and which features
each user has and why."""

import streamlit as st

from nexus_core.ui import admin_view, notices, state
from nexus_core.ui.guard import require_page

ctx, user = require_page("users")

st.title("👥 Users")
st.caption(
    "New users get a temporary password they must change at first sign-in. "
    "The last active admin cannot be disabled or demoted. Every change is audited."
)
notices.show(state.ADMIN_NOTICE)
users = ctx.users.list()
admin_view.users_table(users, ctx.budgets.by_target("user"))
st.markdown("**Features**")
admin_view.features_table(users, env=ctx.settings.env)
create, change = st.columns(2, gap="large")
with create:
    admin_view.create_user_form(ctx, user)
with change:
    admin_view.user_actions(ctx, user, users)
