"""Role checks at the top of every page: a page not allowed for the role stops right there."""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.errors import NotFound
from nexus_core.ui import state
from nexus_core.ui.resources import get_context
from nexus_core.users import UserView, pages_for

ACCESS_DENIED = "You do not have access to this page. Ask an administrator if you need it."


def current_user(ctx: AppContext) -> UserView | None:
    """The signed-in user of this browser session, if any."""
    user_id = st.session_state.get(state.USER_ID)
    if user_id is None or not st.session_state.get(state.AUTH_STATUS):
        return None
    try:
        return ctx.users.get_by_id(int(user_id))
    except NotFound:
        return None


def require_page(page_key: str) -> tuple[AppContext, UserView]:
    """The context and signed-in user, or stop the page when the user may not open it."""
    ctx = get_context()
    st.session_state[state.CURRENT_PAGE] = page_key
    user = current_user(ctx)
    if user is None or user.disabled or page_key not in pages_for(user, env=ctx.settings.env):
        st.error(ACCESS_DENIED)
        st.stop()
    return ctx, user
