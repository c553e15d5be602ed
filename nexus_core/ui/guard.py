"""Role checks at the top of every page: a page not allowed for the role stops right there."""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.errors import NotFound
from nexus_core.ui import state
from nexus_core.ui.resources import get_context
from nexus_core.users import UserView, pages_for_role

ACCESS_DENIED = "You do not have access to this page. Ask an administrator if you need it."


def require_page(page_key: str) -> tuple[AppContext, UserView]:
    """The context and signed-in user, or stop the page when the user may not open it."""
    ctx = get_context()
    user_id = st.session_state.get(state.USER_ID)
    user: UserView | None = None
    if user_id is not None and st.session_state.get(state.AUTH_STATUS):
        try:
            user = ctx.users.get_by_id(int(user_id))
        except NotFound:
            user = None
    if user is None or user.disabled or page_key not in pages_for_role(user.role):
        st.error(ACCESS_DENIED)
        st.stop()
    return ctx, user
