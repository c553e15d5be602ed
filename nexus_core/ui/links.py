"""Page addresses: the one place that builds a link to a page and reads or writes the query
parameters that name what a page shows, so a link reopens it.

- Chat: ``/chat?session=<uuid>``, the open chat session.
- Feedback explorer: ``/explorer?item=<id>``, the open feedback item.
- Compare: ``/compare?run=<id>`` (an open comparison) or ``?view=<section>`` (leaderboard, tests).
- Workbench: ``/workbench?notebook=<id>`` (or ``starter-<key>``), the open notebook, with
  ``p.<name>=<value>`` for each parameter chosen other than its default (the value's text form,
  ``nexus_core.workbench.parameters``), so a link reopens the notebook with the same inputs;
  ``?ask=<id>``, the Ask draft on screen (its audit event), which ``/sql`` in chat links to; or
  ``?sql=<query>``, a read-only notebook of one query (an alert's offending events).
- Boards: ``/boards?board=<id>``, the open board (what a product manager bookmarks).
- Dashboard: ``/dashboard?window=<60m|6h|…>``, the window shown (an alert links to its own).
- Alert history: ``/alert_history?alert=<id>``, one alert's timeline and deliveries. The alert
  service writes these addresses into its messages (``nexus_core.alerts.service``).

The builders quote every value; the readers and writers act on ``st.query_params`` of the page
being run (only ``nav`` also reads it whole, to bring a visitor back after sign-in).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

import streamlit as st

SESSION_QUERY_PARAM = "session"
ITEM_QUERY_PARAM = "item"
RUN_QUERY_PARAM = "run"
VIEW_QUERY_PARAM = "view"
NOTEBOOK_QUERY_PARAM = "notebook"
ASK_QUERY_PARAM = "ask"
SQL_QUERY_PARAM = "sql"
WINDOW_QUERY_PARAM = "window"
ALERT_QUERY_PARAM = "alert"
BOARD_QUERY_PARAM = "board"
NOTEBOOK_PARAMETER_PREFIX = "p."


def page_url(page: str, **query: str | int) -> str:
    """The app path of the page keyed ``page`` (see ``nav.PAGES``) with ``query``, quoted."""
    params = urlencode({name: str(value) for name, value in query.items()})
    return f"/{page}?{params}" if params else f"/{page}"


def chat_url(session_id: str) -> str:
    """The link that opens a chat session."""
    return page_url("chat", **{SESSION_QUERY_PARAM: session_id})


def explorer_url(feedback_id: int | str) -> str:
    """The link that opens a feedback item in the explorer."""
    return page_url("explorer", **{ITEM_QUERY_PARAM: feedback_id})


def compare_url(run_id: str) -> str:
    """The link that opens a comparison."""
    return page_url("compare", **{RUN_QUERY_PARAM: run_id})


def workbench_url(notebook_key: str, parameters: Mapping[str, str] | None = None) -> str:
    """The link that opens a notebook (its id, or ``starter-<key>``) with chosen parameter
    values (their text form)."""
    chosen = {NOTEBOOK_PARAMETER_PREFIX + name: v for name, v in (parameters or {}).items() if v}
    return page_url("workbench", **{NOTEBOOK_QUERY_PARAM: notebook_key}, **chosen)


def ask_query(draft_id: int) -> dict[str, str]:
    """The workbench query parameters that open an Ask draft (for ``st.page_link``)."""
    return {ASK_QUERY_PARAM: str(draft_id)}


def ask_url(draft_id: int) -> str:
    """The link that opens an Ask draft in the workbench."""
    return page_url("workbench", **ask_query(draft_id))


def board_url(board_id: int) -> str:
    """The link that opens a board."""
    return page_url("boards", **{BOARD_QUERY_PARAM: board_id})


def alert_history_url(alert_id: int | None = None) -> str:
    """The link that opens the alert history (at one alert, if given)."""
    if alert_id is None:
        return page_url("alert_history")
    return page_url("alert_history", **{ALERT_QUERY_PARAM: alert_id})


# --- the query of the page being run ---------------------------------------------------------


def _read(name: str) -> str | None:
    value = st.query_params.get(name)
    return str(value) if value else None


def _write(name: str, value: str | int | None) -> None:
    if value is None or value == "":
        st.query_params.pop(name, None)
    else:
        st.query_params[name] = str(value)


def chat_session() -> str | None:
    """The chat session the address names, if any."""
    return _read(SESSION_QUERY_PARAM)


def show_chat_session(public_id: str | None) -> None:
    """Point the address at a chat session (or at none)."""
    _write(SESSION_QUERY_PARAM, public_id)


def explorer_item() -> int | None:
    """The feedback item the address names, if it is a number."""
    value = _read(ITEM_QUERY_PARAM)
    return int(value) if value and value.isdigit() else None


def show_explorer_item(feedback_id: int | None) -> None:
    """Point the address at a feedback item (or at none)."""
    _write(ITEM_QUERY_PARAM, feedback_id)


def compare_run() -> str | None:
    """The comparison the address names, if any."""
    return _read(RUN_QUERY_PARAM)


def compare_section() -> str | None:
    """The Compare section the address names, if any."""
    return _read(VIEW_QUERY_PARAM)


def show_compare(*, run_id: str | None = None, section: str | None = None) -> None:
    """Point the address at one comparison, or one section, or (neither) a new comparison."""
    st.query_params.clear()
    _write(RUN_QUERY_PARAM, run_id)
    _write(VIEW_QUERY_PARAM, section)


def notebook() -> str | None:
    """The notebook the address names (an id or ``starter-<key>``), if any."""
    return _read(NOTEBOOK_QUERY_PARAM)


def show_notebook(key: str | None) -> None:
    """Point the address at a notebook (or at none), without the last one's parameters."""
    show_notebook_parameters({})
    _write(NOTEBOOK_QUERY_PARAM, key)


def ask_draft() -> int | None:
    """The Ask draft the address names, if it is a number."""
    value = _read(ASK_QUERY_PARAM)
    return int(value) if value and value.isdigit() else None


def show_ask_draft(draft_id: int | None) -> None:
    """Point the address at an Ask draft (or at none)."""
    _write(ASK_QUERY_PARAM, draft_id)


def workbench_sql() -> str | None:
    """The one query the address asks the workbench to show, if any."""
    return _read(SQL_QUERY_PARAM)


def dashboard_window() -> str | None:
    """The dashboard window the address names, if any."""
    return _read(WINDOW_QUERY_PARAM)


def alert() -> int | None:
    """The alert the address names, if it is a number."""
    value = _read(ALERT_QUERY_PARAM)
    return int(value) if value and value.isdigit() else None


def show_alert(alert_id: int | None) -> None:
    """Point the address at an alert (or at none)."""
    _write(ALERT_QUERY_PARAM, alert_id)


def board() -> int | None:
    """The board the address names, if it is a number."""
    value = _read(BOARD_QUERY_PARAM)
    return int(value) if value and value.isdigit() else None


def show_board(board_id: int | None) -> None:
    """Point the address at a board (or at none)."""
    _write(BOARD_QUERY_PARAM, board_id)


def notebook_parameters() -> dict[str, str]:
    """The parameter values the address carries (name -> text form)."""
    prefix = NOTEBOOK_PARAMETER_PREFIX
    return {
        name.removeprefix(prefix): str(value)
        for name, value in st.query_params.to_dict().items()
        if name.startswith(prefix) and value
    }


def show_notebook_parameters(values: Mapping[str, str]) -> None:
    """Make the address carry exactly these parameter values (an empty one is left out)."""
    wanted = {NOTEBOOK_PARAMETER_PREFIX + name: value for name, value in values.items() if value}
    for name in list(st.query_params.to_dict()):
        if name.startswith(NOTEBOOK_PARAMETER_PREFIX) and name not in wanted:
            st.query_params.pop(name, None)
    for name, value in wanted.items():
        if st.query_params.get(name) != value:
            st.query_params[name] = value
