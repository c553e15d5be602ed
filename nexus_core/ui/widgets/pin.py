"""The "📌 Pin to board" action of a workbench SQL cell: choose one of the boards the viewer may
pin to (their own and the shared ones) or name a new one, a title and a refresh interval.

The pin keeps the cell as on screen with the named cells it reads and the parameter values
chosen (``boards.pins``); the outcome, with the board's link, is the workbench's next notice.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from nexus_core.boards.pins import DEFAULT_REFRESH, REFRESH_INTERVALS
from nexus_core.boards.service import BoardService, BoardView
from nexus_core.ui import links, notices
from nexus_core.ui.widgets.notebook import NOTICE, OpenNotebook
from nexus_core.users import UserView
from nexus_core.workbench.cells import MAX_TITLE_CHARS, Cell

PIN_PREFIX = "nexus_wb_pin_"
NEW_BOARD = 0  # the board choice that makes a new board
NEW_BOARD_LABEL = "➕ New board…"
NEW_BOARD_TITLE = "My board"
PIN_LABEL = "📌 Pin to board"


def pin_keys(notebook_key: str, cell_id: str) -> dict[str, str]:
    """The widget keys of one cell's pin action, by role."""
    prefix = f"{PIN_PREFIX}{notebook_key}_{cell_id}_"
    return {part: prefix + part for part in ("board", "new", "shared", "title", "refresh", "go")}


def pin_popover(
    service: BoardService,
    user: UserView,
    notebook: OpenNotebook,
    cell: Cell,
    on_screen: Callable[[], list[Cell]],
    chosen: dict[str, str],
    boards: list[BoardView],
) -> None:
    """The cell's pin action: a popover that pins the cell's result (chart or table)."""
    keys = pin_keys(notebook.key, cell.id)
    titles = {board.id: _board_label(board, user) for board in boards}
    with st.popover(PIN_LABEL):
        choice = st.selectbox(
            "Board",
            [*titles, NEW_BOARD],
            key=keys["board"],
            format_func=lambda board_id: titles.get(board_id, NEW_BOARD_LABEL),
        )
        if choice == NEW_BOARD:
            st.text_input(
                "New board's title",
                value=NEW_BOARD_TITLE,
                key=keys["new"],
                max_chars=MAX_TITLE_CHARS,
            )
            st.toggle(
                "Shared with analysts and admins",
                key=keys["shared"],
                help="Every analyst and admin can open a shared board; each sees what their "
                "own role may see.",
            )
        st.text_input(
            "Pin title",
            value=_pin_title(notebook, cell),
            key=keys["title"],
            max_chars=MAX_TITLE_CHARS,
        )
        intervals = list(REFRESH_INTERVALS)
        st.selectbox(
            "Refresh", intervals, index=intervals.index(DEFAULT_REFRESH), key=keys["refresh"]
        )
        st.button(
            "Pin",
            key=keys["go"],
            type="primary",
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _pin(service, user, notebook, cell, on_screen(), chosen, keys),),
        )


def _board_label(board: BoardView, user: UserView) -> str:
    whose = "" if board.owner_id == user.id else f" · {board.owner_name}"
    kind = "shared" if board.shared else "personal"
    return f"{board.title} ({kind}{whose})"  # an option's text is shown as it is


def _pin_title(notebook: OpenNotebook, cell: Cell) -> str:
    title = f"{notebook.title} · {cell.name}" if cell.name else notebook.title
    return title[:MAX_TITLE_CHARS]


def _pin(
    service: BoardService,
    user: UserView,
    notebook: OpenNotebook,
    cell: Cell,
    cells: list[Cell],
    chosen: dict[str, str],
    keys: dict[str, str],
) -> None:
    board_id = st.session_state.get(keys["board"], NEW_BOARD)
    if board_id == NEW_BOARD:
        title = str(st.session_state.get(keys["new"], ""))
        shared = bool(st.session_state.get(keys["shared"], False))
        board_id = service.create(user, title, shared=shared).id
    pin = service.pin(
        user,
        board_id,
        title=str(st.session_state.get(keys["title"], "")),
        cells=cells,
        cell_id=cell.id,
        parameters=notebook.parameters,
        chosen=chosen,
        refresh=str(st.session_state.get(keys["refresh"], DEFAULT_REFRESH)),
        notebook_id=notebook.notebook_id,
    )
    st.session_state[keys["board"]] = board_id  # the next pin goes to the same board
    notices.leave(NOTICE, f"Pinned “{pin.title}” — open the board at {links.board_url(board_id)}")
