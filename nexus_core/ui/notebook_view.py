"""Widgets of one open notebook: each cell's toolbar, editor, run button, result and chart.

Results of runs live in this browser session only (keyed by notebook and cell); editing one's own
notebook saves the stored cells at once through ``widgets.notebook.change_cells``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.ask.drafts import GENERATED_LABEL, is_generated
from nexus_core.errors import NexusError
from nexus_core.ui import notices, show
from nexus_core.ui.show import plain
from nexus_core.ui.widgets.notebook import NOTICE, OpenNotebook, change_cells, init_widget
from nexus_core.users import UserView, feature_enabled
from nexus_core.workbench.cells import (
    AGGREGATIONS,
    CHART_KINDS,
    Cell,
    CellKind,
    ChartSpec,
    append_cell,
    duplicate_cell,
    move_cell,
    remove_cell,
    replace_cell,
)
from nexus_core.workbench.charts import build_chart
from nexus_core.workbench.notebooks import NotebookService
from nexus_core.workbench.results import DISPLAY_LIMIT, QueryResult

RESULTS = "nexus_wb_results"
CELL_PREFIX = "nexus_wb_cell_"
SOURCE_PREFIX = "nexus_wb_source_"
RUN_PREFIX = "nexus_wb_run_"
CHART_PREFIX = "nexus_wb_chart_"
ADD_SQL_PREFIX = "nexus_wb_add_sql_"
ADD_MARKDOWN_PREFIX = "nexus_wb_add_md_"
NO_CHART = "none"
NO_COLUMN = ""
SQL_EDITOR_HEIGHT = 140
EXPORT_FEATURE = "workbench_export"


@dataclass(frozen=True)
class CellOutcome:
    """The last run of a cell in this browser session: its SQL and the result or the error."""

    source: str
    result: QueryResult | None = None
    error: str | None = None


def run_all(ctx: AppContext, user: UserView, notebook: OpenNotebook) -> None:
    """Run every SQL cell, top to bottom, over one snapshot of the data."""
    sql_cells = [cell for cell in notebook.cells if cell.kind == "sql"]
    if not sql_cells:
        st.info("This notebook has no SQL cells to run.")
        return
    progress = st.progress(0.0, text="Taking a snapshot of the data…")

    def run_cells() -> None:
        with ctx.workbench.open(include_message_content=user.is_admin) as session:
            for done, cell in enumerate(sql_cells, start=1):
                progress.progress(
                    done / len(sql_cells), text=f"Running cell {done:d} of {len(sql_cells)}…"
                )
                source = _source(notebook, cell)
                _store(
                    notebook,
                    cell,
                    _outcome(source, lambda s=source: session.run(s, keep=DISPLAY_LIMIT)),
                )

    notices.act(run_cells)  # a cell's own error stays with the cell; this is the snapshot's
    progress.empty()


def _outcome(source: str, run: Callable[[], QueryResult]) -> CellOutcome:
    try:
        return CellOutcome(source, result=run())
    except NexusError as exc:
        return CellOutcome(source, error=str(exc))


def cells(
    ctx: AppContext, service: NotebookService, user: UserView, notebook: OpenNotebook
) -> None:
    """Every cell with its toolbar, editor or text, last result and chart; then "add cell"."""
    for number, cell in enumerate(notebook.cells, start=1):
        with st.container(border=True, key=f"{CELL_PREFIX}{notebook.key}_{cell.id}"):
            _toolbar(service, user, notebook, cell, number)
            if cell.kind == "markdown":
                _markdown_cell(service, user, notebook, cell)
            else:
                _sql_cell(ctx, service, user, notebook, cell)
    if not notebook.cells:
        st.caption("This notebook has no cells yet.")
    if notebook.editable:
        left, right, _ = st.columns([1, 1, 3])
        for column, kind, label, prefix in (
            (left, "sql", "SQL cell", ADD_SQL_PREFIX),
            (right, "markdown", "Markdown cell", ADD_MARKDOWN_PREFIX),
        ):
            column.button(
                plain(label),
                icon=":material/add:",
                key=prefix + notebook.key,
                on_click=notices.act,
                kwargs={"key": NOTICE},
                args=(_adder(service, user, notebook, kind),),
            )


def _adder(
    service: NotebookService, user: UserView, notebook: OpenNotebook, kind: CellKind
) -> Callable[[], None]:
    return lambda: change_cells(service, user, notebook, lambda cs: append_cell(cs, kind))


def _toolbar(
    service: NotebookService, user: UserView, notebook: OpenNotebook, cell: Cell, number: int
) -> None:
    label = "SQL" if cell.kind == "sql" else "Markdown"
    if cell.kind == "sql" and is_generated(cell.source):
        label += f" · {GENERATED_LABEL}"
    if not notebook.editable:
        st.caption(f"[{number:d}] {plain(label)}")
        return
    columns = st.columns([3, 1, 1, 1, 1])
    columns[0].caption(f"[{number:d}] {plain(label)}")
    actions: list[tuple[str, str, Callable[[list[Cell]], list[Cell]]]] = [
        (":material/arrow_upward:", "Move up", lambda cs: move_cell(cs, cell.id, -1)),
        (":material/arrow_downward:", "Move down", lambda cs: move_cell(cs, cell.id, 1)),
        (":material/content_copy:", "Duplicate cell", lambda cs: duplicate_cell(cs, cell.id)),
        (":material/delete:", "Delete cell", lambda cs: remove_cell(cs, cell.id)),
    ]
    for column, (icon, help_text, change) in zip(columns[1:], actions, strict=True):
        column.button(
            icon,
            key=f"nexus_wb_{help_text.replace(' ', '_').lower()}_{notebook.key}_{cell.id}",
            help=help_text,
            on_click=notices.act,
            kwargs={"key": NOTICE},
            args=(lambda change=change: change_cells(service, user, notebook, change),),
        )


def _markdown_cell(
    service: NotebookService, user: UserView, notebook: OpenNotebook, cell: Cell
) -> None:
    if notebook.editable:
        _editor(service, user, notebook, cell, "Markdown")
    show.markdown(_source(notebook, cell))


def _sql_cell(
    ctx: AppContext, service: NotebookService, user: UserView, notebook: OpenNotebook, cell: Cell
) -> None:
    if notebook.editable:
        _editor(service, user, notebook, cell, "SQL")
    else:
        st.code(cell.source, language="sql")
    if st.button("Run", icon=":material/play_arrow:", key=f"{RUN_PREFIX}{notebook.key}_{cell.id}"):
        source = _source(notebook, cell)
        with st.spinner("Running…"):
            outcome = _outcome(
                source,
                lambda: ctx.workbench.run(
                    source, include_message_content=user.is_admin, keep=DISPLAY_LIMIT
                ),
            )
        _store(notebook, cell, outcome)
    outcome = st.session_state.get(RESULTS, {}).get(_result_key(notebook, cell))
    if outcome is not None:
        exports = feature_enabled(user, EXPORT_FEATURE, env=ctx.settings.env)
        _show_outcome(notebook, cell, outcome, exports=exports)
    if notebook.editable:
        _chart_settings(service, user, notebook, cell, outcome)
    if outcome is not None and outcome.result is not None:
        _chart(cell, outcome.result)


def _editor(
    service: NotebookService, user: UserView, notebook: OpenNotebook, cell: Cell, label: str
) -> None:
    key = _source_key(notebook, cell)
    init_widget(key, cell.source)

    def save() -> None:
        source = str(st.session_state[key])

        def change(cs: list[Cell]) -> list[Cell]:
            stored = next(c for c in cs if c.id == cell.id)
            return replace_cell(cs, Cell(stored.kind, source, stored.chart, stored.id))

        change_cells(service, user, notebook, change)

    st.text_area(
        plain(label),
        key=key,
        height=SQL_EDITOR_HEIGHT,
        label_visibility="collapsed",
        placeholder="SELECT … FROM events" if label == "SQL" else "Notes in markdown",
        on_change=notices.act,
        kwargs={"key": NOTICE},
        args=(save,),
    )


def _source(notebook: OpenNotebook, cell: Cell) -> str:
    """The cell's SQL or text as on screen (the editor's value for one's own notebook)."""
    if notebook.editable:
        return str(st.session_state.get(_source_key(notebook, cell), cell.source))
    return cell.source


def _source_key(notebook: OpenNotebook, cell: Cell) -> str:
    return f"{SOURCE_PREFIX}{notebook.key}_{cell.id}"


def _result_key(notebook: OpenNotebook, cell: Cell) -> str:
    return f"{notebook.key}:{cell.id}"


def _store(notebook: OpenNotebook, cell: Cell, outcome: CellOutcome) -> None:
    st.session_state.setdefault(RESULTS, {})[_result_key(notebook, cell)] = outcome


def _show_outcome(
    notebook: OpenNotebook, cell: Cell, outcome: CellOutcome, *, exports: bool
) -> None:
    if outcome.error is not None:
        # DuckDB's message echoes the query; as code it is shown as typed, carets aligned.
        show.error(outcome.error, verbatim=True)
        return
    result = outcome.result
    assert result is not None
    facts = [f"{result.row_count:,} rows", f"{result.elapsed_ms:,.0f} ms"]
    if result.truncated:
        facts.append(f"showing the first {result.display.height:,}")
    if outcome.source != _source(notebook, cell):
        facts.append("the SQL changed since this run")
    show.caption(" · ".join(facts))
    st.dataframe(result.display, hide_index=True, width="stretch")
    _downloads(notebook, cell, result, exports=exports)


def _chart(cell: Cell, result: QueryResult) -> None:
    """The cell's chart of its last result (of the rows on display), or why it cannot be drawn."""
    if cell.chart is None:
        return
    try:
        show.chart(build_chart(result.display, cell.chart), width="stretch")
    except NexusError as exc:
        show.warning(exc)


def _downloads(notebook: OpenNotebook, cell: Cell, result: QueryResult, *, exports: bool) -> None:
    if not exports:
        st.caption("Full-result downloads need the “workbench_export” feature; ask an admin.")
        return
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    formats = (
        ("CSV", "csv", "text/csv", result.to_csv),
        ("Parquet", "parquet", "application/vnd.apache.parquet", result.to_parquet),
    )
    for column, (label, suffix, mime, build) in zip(st.columns([1, 1, 3]), formats, strict=False):
        column.download_button(
            plain(label),
            icon=":material/download:",
            data=partial(_download, build),
            file_name=f"workbench-{stamp}.{suffix}",
            mime=mime,
            key=f"nexus_wb_{suffix}_{notebook.key}_{cell.id}",
        )


def _download(build: Callable[[], bytes]) -> bytes:
    """The file's bytes; when running the query again fails, a file that says why.

    A download builds its file outside the page's run, where an error could only show as
    Streamlit's "failed to generate file"; the message is more use in the file itself.
    """
    try:
        return build()
    except NexusError as exc:
        return f"The download could not be made: {exc}\n".encode()


def _chart_settings(
    service: NotebookService,
    user: UserView,
    notebook: OpenNotebook,
    cell: Cell,
    outcome: CellOutcome | None,
) -> None:
    spec = cell.chart
    prefix = f"{CHART_PREFIX}{notebook.key}_{cell.id}_"
    columns = [NO_COLUMN]
    if outcome is not None and outcome.result is not None:
        columns += list(outcome.result.display.columns)
    for name in (spec.x, spec.y, spec.color) if spec else ():
        if name and name not in columns:
            columns.append(name)

    def save() -> None:
        kind = st.session_state[prefix + "kind"]
        new = (
            None
            if kind == NO_CHART
            else ChartSpec.from_json(
                {
                    "kind": kind,
                    "x": st.session_state.get(prefix + "x") or "",
                    "y": st.session_state.get(prefix + "y") or None,
                    "color": st.session_state.get(prefix + "color") or None,
                    "aggregation": st.session_state.get(prefix + "aggregation", "none"),
                }
            )
        )

        def change(cs: list[Cell]) -> list[Cell]:
            stored = next(c for c in cs if c.id == cell.id)
            return replace_cell(cs, Cell(stored.kind, stored.source, new, stored.id))

        change_cells(service, user, notebook, change)

    with st.expander("📈 Chart", expanded=spec is not None):
        init_widget(prefix + "kind", spec.kind if spec else NO_CHART)
        st.selectbox(
            "Chart",
            (NO_CHART, *CHART_KINDS),
            key=prefix + "kind",
            on_change=notices.act,
            kwargs={"key": NOTICE},
            args=(save,),
        )
        if st.session_state[prefix + "kind"] == NO_CHART:
            return
        left, middle, right, last = st.columns(4)
        for column, name, label, value in (
            (left, "x", "x", spec.x if spec else ""),
            (middle, "y", "y", spec.y if spec else ""),
            (right, "color", "Colour", spec.color if spec else ""),
        ):
            init_widget(prefix + name, value or NO_COLUMN)
            column.selectbox(
                plain(label),
                columns,
                key=prefix + name,
                accept_new_options=True,
                on_change=notices.act,
                kwargs={"key": NOTICE},
                args=(save,),
            )
        init_widget(prefix + "aggregation", spec.aggregation if spec else "none")
        last.selectbox(
            "Aggregation",
            AGGREGATIONS,
            key=prefix + "aggregation",
            on_change=notices.act,
            kwargs={"key": NOTICE},
            args=(save,),
        )
