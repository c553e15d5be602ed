"""Widgets of one open notebook: its parameters, each cell's toolbar, name, editor, run button,
result and chart.

Results of runs live in this browser session only (keyed by notebook and cell); editing one's own
notebook saves the stored cells at once through ``widgets.notebook.change_cells``. A run's cells
go through ``workbench.runs``: in dependency order on one snapshot; running one cell runs the
cells it reads first. A result whose inputs changed since is marked stale, not re-run (the README
says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.ask.drafts import GENERATED_LABEL, is_generated
from nexus_core.boards.service import BoardView
from nexus_core.errors import NexusError
from nexus_core.ui import dates, links, notices, show
from nexus_core.ui.show import plain
from nexus_core.ui.widgets.notebook import (
    NOTICE,
    OpenNotebook,
    change_cells,
    init_widget,
    result_table,
)
from nexus_core.ui.widgets.pin import pin_popover
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
    validate_name,
)
from nexus_core.workbench.charts import build_chart
from nexus_core.workbench.dependencies import plan
from nexus_core.workbench.notebooks import NotebookService
from nexus_core.workbench.parameters import (
    PICKED_TYPES,
    Parameter,
    Value,
    declarations,
    format_value,
    parse_declarations,
    parse_value,
)
from nexus_core.workbench.results import QueryResult
from nexus_core.workbench.runs import CellRun, NotebookRunner, stale_cells

RESULTS = "nexus_wb_results"
CELL_PREFIX = "nexus_wb_cell_"
SOURCE_PREFIX = "nexus_wb_source_"
RUN_PREFIX = "nexus_wb_run_"
CHART_PREFIX = "nexus_wb_chart_"
ADD_SQL_PREFIX = "nexus_wb_add_sql_"
ADD_MARKDOWN_PREFIX = "nexus_wb_add_md_"
NAME_PREFIX = "nexus_wb_name_"
PARAMETER_PREFIX = "nexus_wb_param_"
DECLARATIONS_PREFIX = "nexus_wb_params_"
ANY = "(any)"
STALE_TEXT = (
    "Stale: its SQL, a parameter it uses or a cell it reads changed since this run; run it again."
)
NO_CHART = "none"
NO_COLUMN = ""
SQL_EDITOR_HEIGHT = 140
EXPORT_FEATURE = "workbench_export"


# --- parameters ---------------------------------------------------------------------------------


def parameters(
    ctx: AppContext, service: NotebookService, user: UserView, notebook: OpenNotebook
) -> dict[str, str]:
    """The notebook's inputs as widgets above its cells (and, for its owner, their declaration);
    returns the chosen values' text forms, which the page address carries."""
    if notebook.editable:
        _declarations_editor(service, user, notebook)
    if not notebook.parameters:
        return {}
    today = datetime.now(UTC).date()
    from_address = links.notebook_parameters()
    chosen: dict[str, str] = {}
    changed: dict[str, str] = {}
    columns = st.columns(min(len(notebook.parameters), 4))
    for n, declared in enumerate(notebook.parameters):
        default = _value(declared, declared.default, today)
        initial = _value(declared, from_address.get(declared.name, declared.default), today)
        value = _parameter_widget(ctx, notebook, declared, initial, columns[n % len(columns)])
        chosen[declared.name] = format_value(declared, value)
        if chosen[declared.name] != format_value(declared, default):
            changed[declared.name] = chosen[declared.name] or ANY
    links.show_notebook_parameters(changed)
    return {name: "" if text == ANY else text for name, text in chosen.items()}


def _value(declared: Parameter, text: str, today: date) -> Value:
    """The value a text form means; the default when the address carries something else."""
    try:
        return parse_value(declared, "" if text == ANY else text, today=today)
    except NexusError:
        show.warning(f"The link's value of {declared.name} is not valid; the default is used.")
        return parse_value(declared, declared.default, today=today)


def _parameter_widget(
    ctx: AppContext, notebook: OpenNotebook, declared: Parameter, initial: Value, where: Any
) -> Value:
    """One parameter's widget (in ``where``, a column) and the value it holds."""
    key = f"{PARAMETER_PREFIX}{notebook.key}_{declared.name}"
    if declared.type == "date_range":
        days = initial if isinstance(initial, tuple) else ()
        picked = dates.day_range(declared.name, key=key, value=days, where=where)
        return None if picked.first is None or picked.last is None else (picked.first, picked.last)
    if declared.type in PICKED_TYPES:
        options = [ANY, *_choices(ctx, declared.type)]
        if isinstance(initial, str) and initial not in options:
            options.append(initial)
        init_widget(key, initial or ANY)
        choice = where.selectbox(
            plain(declared.name),
            options,
            key=key,
            accept_new_options=declared.type == "model",
        )
        return None if choice in (None, ANY) else str(choice)
    init_widget(key, initial)
    if declared.type == "date":
        value: Value = where.date_input(plain(declared.name), key=key, format=dates.DATE_FORMAT)
    elif declared.type in ("int", "float"):
        step = 1 if declared.type == "int" else None
        value = where.number_input(plain(declared.name), key=key, step=step)
    else:
        value = where.text_input(plain(declared.name), key=key) or None
    return value


def _choices(ctx: AppContext, kind: str) -> list[str]:
    """What a persona, model or user picker offers."""
    if kind == "persona":
        return [p.name for p in ctx.personas.list()]
    if kind == "user":
        return [u.username for u in ctx.users.list()]
    models = {p.model for p in ctx.personas.list() if p.model} | {ctx.settings.gemini_model}
    return sorted(m for m in models if m)


def _declarations_editor(service: NotebookService, user: UserView, notebook: OpenNotebook) -> None:
    key = DECLARATIONS_PREFIX + notebook.key
    init_widget(key, declarations(notebook.parameters))

    def save() -> None:
        declared = parse_declarations(str(st.session_state[key]))
        assert notebook.notebook_id is not None
        current = service.get(user, notebook.notebook_id)
        service.save(user, notebook.notebook_id, current.title, current.cells, declared)

    with st.expander("🎛️ Parameters", expanded=False):
        st.caption(
            "One a line, `name: type = default`; types: text, int, float, date, date_range, "
            "persona, model, user. Use them in SQL as `$name` (a date range as "
            "`$name_start` and `$name_end`)."
        )
        st.text_area(
            "Parameters",
            key=key,
            label_visibility="collapsed",
            placeholder="period: date_range = last 30 days\npersona: persona",
            on_change=notices.act,
            kwargs={"key": NOTICE},
            args=(save,),
        )


# --- running ------------------------------------------------------------------------------------


def _runner(ctx: AppContext, user: UserView) -> NotebookRunner:
    return NotebookRunner(ctx.workbench, include_message_content=user.is_admin)


def _runs(notebook: OpenNotebook) -> dict[str, CellRun]:
    return st.session_state.setdefault(RESULTS, {}).setdefault(notebook.key, {})


def _on_screen(notebook: OpenNotebook) -> list[Cell]:
    """The cells as on screen (the editors' SQL for one's own notebook)."""
    return [Cell(c.kind, _source(notebook, c), c.chart, c.id, c.name) for c in notebook.cells]


def run_all(
    ctx: AppContext, user: UserView, notebook: OpenNotebook, chosen: dict[str, str]
) -> None:
    """Run every SQL cell, in dependency order, over one snapshot of the data."""
    if not any(cell.kind == "sql" for cell in notebook.cells):
        st.info("This notebook has no SQL cells to run.")
        return
    progress = st.progress(0.0, text="Taking a snapshot of the data…")

    def step(done: int, total: int) -> None:
        progress.progress(done / total, text=f"Running cell {done + 1:d} of {total:d}…")

    runs = notices.act(
        lambda: _runner(ctx, user).run(
            _on_screen(notebook), notebook.parameters, chosen, progress=step
        )
    )  # a cell's own error stays with the cell; this is the snapshot's or a parameter's
    if runs is not None:
        st.session_state.setdefault(RESULTS, {})[notebook.key] = runs
    progress.empty()


def _run_one(
    ctx: AppContext, user: UserView, notebook: OpenNotebook, cell: Cell, chosen: dict[str, str]
) -> None:
    runs = notices.act(
        lambda: _runner(ctx, user).run(
            _on_screen(notebook), notebook.parameters, chosen, only=cell.id
        ),
        key=NOTICE,
    )
    if runs is not None:
        _runs(notebook).update(runs)


def cells(
    ctx: AppContext,
    service: NotebookService,
    user: UserView,
    notebook: OpenNotebook,
    chosen: dict[str, str],
) -> None:
    """Every cell with its toolbar, editor or text, last result and chart; then "add cell"."""
    on_screen = _on_screen(notebook)
    bound_names = [name for p in notebook.parameters for name in p.bound_names]
    problems = plan(on_screen, bound_names).errors
    stale = stale_cells(on_screen, notebook.parameters, chosen, _runs(notebook))
    boards = notices.act(lambda: ctx.boards.list_for(user)) or []  # where a cell can be pinned
    for number, cell in enumerate(notebook.cells, start=1):
        with st.container(border=True, key=f"{CELL_PREFIX}{notebook.key}_{cell.id}"):
            _toolbar(service, user, notebook, cell, number)
            if cell.kind == "markdown":
                _markdown_cell(service, user, notebook, cell)
            else:
                state = _CellState(chosen, problems.get(cell.id), cell.id in stale, boards)
                _sql_cell(ctx, service, user, notebook, cell, state)
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
        named = f" · {cell.name}" if cell.name else ""
        st.caption(f"[{number:d}] {plain(label + named)}")
        return
    columns = st.columns([3, 1, 1, 1, 1])
    if cell.kind == "sql":
        _name_input(service, user, notebook, cell, f"[{number:d}] {label}", columns[0])
    else:
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


def _name_input(
    service: NotebookService,
    user: UserView,
    notebook: OpenNotebook,
    cell: Cell,
    heading: str,
    where: object,
) -> None:
    key = f"{NAME_PREFIX}{notebook.key}_{cell.id}"
    init_widget(key, cell.name or "")

    def save() -> None:
        name = validate_name(st.session_state[key])

        def change(cs: list[Cell]) -> list[Cell]:
            stored = next(c for c in cs if c.id == cell.id)
            return replace_cell(cs, Cell(stored.kind, stored.source, stored.chart, stored.id, name))

        change_cells(service, user, notebook, change)

    where.text_input(  # type: ignore[attr-defined]
        f"{plain(heading)} · name",
        key=key,
        placeholder="name (optional): later cells read it as a table",
        help="Later cells can read this cell's result as a table of this name.",
        on_change=notices.act,
        kwargs={"key": NOTICE},
        args=(save,),
    )


def _markdown_cell(
    service: NotebookService, user: UserView, notebook: OpenNotebook, cell: Cell
) -> None:
    if notebook.editable:
        _editor(service, user, notebook, cell, "Markdown")
    show.markdown(_source(notebook, cell))


@dataclass(frozen=True)
class _CellState:
    """What the page knows of a SQL cell beyond its text: the chosen values, why it cannot run
    (a cycle, a missing name), whether its last result is stale, and the boards it can be
    pinned to."""

    chosen: dict[str, str]
    problem: str | None
    stale: bool
    boards: list[BoardView]


def _sql_cell(
    ctx: AppContext,
    service: NotebookService,
    user: UserView,
    notebook: OpenNotebook,
    cell: Cell,
    state: _CellState,
) -> None:
    if notebook.editable:
        _editor(service, user, notebook, cell, "SQL")
    else:
        st.code(cell.source, language="sql")
    run, pin, _ = st.columns([1, 2, 3])
    # Run in the button's callback, before the page is drawn: every cell then shows this run.
    run.button(
        "Run",
        icon=":material/play_arrow:",
        key=f"{RUN_PREFIX}{notebook.key}_{cell.id}",
        on_click=_run_one,
        args=(ctx, user, notebook, cell, state.chosen),
    )
    with pin:
        on_screen = partial(_on_screen, notebook)
        pin_popover(ctx.boards, user, notebook, cell, on_screen, state.chosen, state.boards)
    outcome = _runs(notebook).get(cell.id)
    if outcome is not None:
        exports = feature_enabled(user, EXPORT_FEATURE, env=ctx.settings.env)
        _show_outcome(notebook, cell, outcome, exports=exports, stale=state.stale)
    elif state.problem is not None:
        show.error(state.problem)
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
            return replace_cell(cs, Cell(stored.kind, source, stored.chart, stored.id, stored.name))

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


def _show_outcome(
    notebook: OpenNotebook, cell: Cell, outcome: CellRun, *, exports: bool, stale: bool
) -> None:
    if stale:
        show.caption(STALE_TEXT)
    if outcome.error is not None:
        # DuckDB's message echoes the query; as code it is shown as typed, carets aligned.
        show.error(outcome.error, verbatim=True)
        return
    result = outcome.result
    assert result is not None
    result_table(
        result.display,
        row_count=result.row_count,
        elapsed_ms=result.elapsed_ms,
        truncated=result.truncated,
    )
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
    outcome: CellRun | None,
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
            return replace_cell(cs, Cell(stored.kind, stored.source, new, stored.id, stored.name))

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
