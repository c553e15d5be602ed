"""Boards (analysts and admins): pages of pinned workbench results, each refreshing on its own."""

import streamlit as st

from nexus_core.ui import boards_view
from nexus_core.ui.guard import require_page

ctx, user = require_page("boards")
boards = ctx.boards

st.title("📌 Boards")
boards_view.show_notice()
boards_view.sidebar(boards, user)
board = boards_view.opened(boards, user)
if board is None:
    boards_view.empty_state()
    st.stop()

boards_view.header(boards, user, board)
boards_view.pins(boards, user, board)
