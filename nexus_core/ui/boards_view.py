"""Widgets of the Boards page: the boards the viewer may open, a new board, and one board's pins.

The open board lives in the address (``links.board_url``: ``/boards?board=<id>``), so a board is
a link to bookmark. Drawing a board shows each pin from its cache and runs, first, the pins that
are due (``boards.pins.is_due``), one after the other, each in its own box: a pin's failure is
shown on that pin only.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from nexus_core.boards.pins import interval_of
from nexus_core.boards.service import BoardService, BoardView, PinResult, PinView
from nexus_core.errors import NexusError, NotFound
from nexus_core.ui import links, notices, show
from nexus_core.ui.show import plain
from nexus_core.ui.widgets.notebook import init_widget, result_table
from nexus_core.users import UserView
from nexus_core.workbench.charts import build_chart

NOTICE = "nexus_board_notice"
NEW_TITLE = "nexus_board_new_title"
NEW_SHARED = "nexus_board_new_shared"
NEW_BUTTON = "nexus_board_new"
OPEN_PREFIX = "nexus_board_open_"
SHARE_PREFIX = "nexus_board_share_"
DELETE_PREFIX = "nexus_board_delete_"
REFRESH_ALL_PREFIX = "nexus_board_refresh_all_"
PIN_PREFIX = "nexus_board_pin_"
REFRESH_PREFIX = "nexus_board_refresh_"
UNPIN_PREFIX = "nexus_board_unpin_"
ANY = "(any)"
NOT_VISIBLE = "That board does not exist or is not shared with you."


def show_notice() -> None:
    """The outcome of the last change, once, on the run after it."""
    notices.show(NOTICE)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# --- the board list -----------------------------------------------------------------------------


def sidebar(service: BoardService, user: UserView) -> None:
    """The viewer's boards, the shared ones, and a form for a new one."""
    with st.sidebar:
        st.subheader("Boards")
        listed = notices.act(lambda: service.list_for(user))
        if listed is None:
            return
        mine = [b for b in listed if b.owner_id == user.id]
        others = [b for b in listed if b.owner_id != user.id]
        _links("Mine", [(b.id, b.title) for b in mine], "No boards yet.")
        _links("Shared with me", [(b.id, f"{b.title} · {b.owner_name}") for b in others], "")
        with st.expander("New board", icon=":material/add:"):
            st.text_input("Title", key=NEW_TITLE)
            st.toggle("Shared with analysts and admins", key=NEW_SHARED)
            st.button(
                "Create board",
                key=NEW_BUTTON,
                on_click=notices.act,
                kwargs={"key": NOTICE},
                args=(lambda: _create(service, user),),
            )


def _links(heading: str, items: list[tuple[int, str]], empty: str) -> None:
    st.caption(plain(heading))
    if not items and empty:
        st.caption(f"_{plain(empty)}_")
    current = links.board()
    for board_id, label in items:
        st.button(
            plain(label),
            key=f"{OPEN_PREFIX}{board_id}",
            type="primary" if board_id == current else "tertiary",
            on_click=links.show_board,
            args=(board_id,),
        )


def _create(service: BoardService, user: UserView) -> None:
    title = str(st.session_state.get(NEW_TITLE, ""))
    board = service.create(user, title, shared=bool(st.session_state.get(NEW_SHARED)))
    st.session_state[NEW_TITLE] = ""
    links.show_board(board.id)


def empty_state() -> None:
    """What the page shows before a board is opened."""
    st.info(
        "A board is a page of pinned workbench results, each refreshing on its own schedule. "
        "Pin a SQL cell's chart or table with “📌 Pin to board” in the Workbench, then open "
        "the board here; its address is a link to share or bookmark."
    )


# --- one board ----------------------------------------------------------------------------------


def opened(service: BoardService, user: UserView) -> BoardView | None:
    """The board the address names, if the viewer may see it (else a note and None)."""
    board_id = links.board()
    if board_id is None:
        return None
    try:
        return service.get(user, board_id)
    except NotFound:
        st.warning(NOT_VISIBLE)
        return None


def header(service: BoardService, user: UserView, board: BoardView) -> None:
    """Title, whose it is, its link; for its owner, sharing and delete; "Refresh all"."""
    show.subheader(board.title)
    kind = "Shared board" if board.shared else "Personal board"
    show.caption(f"{kind} by {board.owner_name} · link: {links.board_url(board.id)}")
    columns = st.columns([1, 1, 1, 2])
    columns[0].button(
        "Refresh all",
        icon=":material/refresh:",
        key=f"{REFRESH_ALL_PREFIX}{board.id}",
        on_click=notices.act,
        kwargs={"key": NOTICE},
        args=(lambda: _refresh_all(service, user, board),),
    )
    if not board.editable:
        return
    share_key = f"{SHARE_PREFIX}{board.id}"
    init_widget(share_key, board.shared)
    columns[1].toggle(
        "Shared",
        key=share_key,
        help="Every analyst and admin can open a shared board and pin to it; each sees what "
        "their own role may see.",
        on_change=notices.act,
        kwargs={"key": NOTICE},
        args=(lambda: service.set_shared(user, board.id, bool(st.session_state[share_key])),),
    )
    with columns[2].popover("Delete", icon=":material/delete:"):
        st.write("Delete this board and its pins for good?")
        st.button(
            "Delete board",
            key=f"{DELETE_PREFIX}{board.id}",
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _delete(service, user, board.id),),
        )


def _refresh_all(service: BoardService, user: UserView, board: BoardView) -> None:
    for pin in board.pins:
        service.refresh(user, pin.id)


def _delete(service: BoardService, user: UserView, board_id: int) -> None:
    service.delete(user, board_id)
    links.show_board(None)
    notices.leave(NOTICE, "Board deleted.")


def pins(service: BoardService, user: UserView, board: BoardView) -> None:
    """Every pin in its own box: due ones run first, each with its chart or table, its
    parameters, its "as of" time, Refresh and (for its owner or pinner) Unpin."""
    if not board.pins:
        st.caption("Nothing pinned yet: use “📌 Pin to board” on a SQL cell in the Workbench.")
    for pin in board.pins:
        with st.container(border=True, key=f"{PIN_PREFIX}{pin.id}"):
            _pin(service, user, pin)


def _pin(service: BoardService, user: UserView, pin: PinView) -> None:
    show.subheader(pin.title)
    result = pin.result
    if pin.due and pin.snapshot is not None:
        with st.spinner("Refreshing…"):
            result = notices.act(lambda: service.refresh(user, pin.id)) or result
    facts = [_values(pin), _schedule(pin)]
    if result is not None:
        facts.insert(0, f"as of {_when(result.refreshed_at)}")
    show.caption(" · ".join(f for f in facts if f))
    if pin.problem is not None:
        show.error(pin.problem)
    elif result is not None:
        _result(pin, result)
    with st.expander("SQL"):
        st.code(pin.sql, language="sql")
    _actions(service, user, pin)


def _values(pin: PinView) -> str:
    return ", ".join(f"{name} = {value or ANY}" for name, value in pin.values.items())


def _schedule(pin: PinView) -> str:
    if interval_of(pin.refresh) is None:
        return "refreshed by hand"
    by = f" · pinned by {pin.pinned_by}" if pin.pinned_by else ""
    return f"refreshes {pin.refresh}{by}"


def _result(pin: PinView, result: PinResult) -> None:
    if result.error is not None:
        # DuckDB's message echoes the query; as code it is shown as typed, carets aligned.
        show.error(result.error, verbatim=True)
        return
    frame = result.frame
    assert frame is not None
    result_table(  # the chart, or else the table, follows
        frame,
        row_count=result.row_count,
        elapsed_ms=result.elapsed_ms,
        truncated=result.truncated,
        table=False,
    )
    if pin.chart is not None:
        try:
            show.chart(build_chart(frame, pin.chart), width="stretch")
            return
        except NexusError as exc:
            show.warning(exc)
    st.dataframe(frame, hide_index=True, width="stretch")


def _actions(service: BoardService, user: UserView, pin: PinView) -> None:
    left, right, _ = st.columns([1, 1, 4])
    left.button(
        "Refresh",
        icon=":material/refresh:",
        key=f"{REFRESH_PREFIX}{pin.id}",
        on_click=notices.act,
        kwargs={"key": NOTICE},
        args=(lambda: service.refresh(user, pin.id),),
    )
    if pin.removable:
        right.button(
            "Unpin",
            icon=":material/keep_off:",
            key=f"{UNPIN_PREFIX}{pin.id}",
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda: _unpin(service, user, pin),),
        )


def _unpin(service: BoardService, user: UserView, pin: PinView) -> None:
    service.unpin(user, pin.id)
    notices.leave(NOTICE, f"Unpinned “{pin.title}”.")
