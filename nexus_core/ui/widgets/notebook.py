"""The open notebook as the Workbench's views share it: what is on screen, how an edit is saved,
and where a change's outcome is reported.

Every edit of one's own notebook is saved at once (``change_cells``) from a widget callback run
through ``notices.act`` with ``key=NOTICE``, so a refused change is the next run's notice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
import streamlit as st

from nexus_core.ui import show
from nexus_core.users import UserView
from nexus_core.workbench.cells import Cell
from nexus_core.workbench.notebooks import NotebookService
from nexus_core.workbench.parameters import Parameter

NOTICE = "nexus_wb_notice"


@dataclass(frozen=True)
class OpenNotebook:
    """The notebook on screen: one of the viewer's, one shared with them, or a starter."""

    key: str  # the URL value; also part of every widget key of the notebook
    title: str
    cells: list[Cell]
    editable: bool
    notebook_id: int | None
    shared: bool
    owner_name: str
    description: str = ""
    parameters: list[Parameter] = field(default_factory=list)


def change_cells(
    service: NotebookService,
    user: UserView,
    notebook: OpenNotebook,
    change: Callable[[list[Cell]], list[Cell]],
) -> None:
    """Apply ``change`` to the stored cells (not the ones on screen) and save at once."""
    assert notebook.notebook_id is not None
    current = service.get(user, notebook.notebook_id)
    service.save(user, notebook.notebook_id, current.title, change(list(current.cells)))


def init_widget(key: str, value: object) -> None:
    """Give a widget its stored value the first time it is drawn (later the widget owns it)."""
    if key not in st.session_state:
        st.session_state[key] = value


def result_table(
    frame: pl.DataFrame, *, row_count: int, elapsed_ms: float, truncated: bool, table: bool = True
) -> None:
    """A query result as every workbench surface shows it (a cell, an Ask draft, a pin): "N rows
    · T ms", how many are shown when the result was cut, then the rows (unless ``table`` is off)."""
    facts = [f"{row_count:,} rows", f"{elapsed_ms:,.0f} ms"]
    if truncated:
        facts.append(f"showing the first {frame.height:,}")
    show.caption(" · ".join(facts))
    if table:
        st.dataframe(frame, hide_index=True, width="stretch")
