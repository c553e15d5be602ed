"""Notebooks whose cells build on each other, with parameters, kept as Markdown files: cells run in
dependency order on one snapshot, a changed cell makes its readers stale, cycles and missing
names are errors on the cell, parameters are bound values (an injection attempt stays a value),
and a file read and written again keeps everything — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from nexus_core.app_context import AppContext
from nexus_core.errors import ValidationError
from nexus_core.ops.events import ApiEventLogger
from nexus_core.users import UserView
from nexus_core.workbench.cells import RESERVED_NAMES, Cell, ChartSpec, cells_from_json
from nexus_core.workbench.data import view_schemas
from nexus_core.workbench.dependencies import plan, references
from nexus_core.workbench.notebook_file import notebook_from_markdown, notebook_to_markdown
from nexus_core.workbench.parameters import (
    Parameter,
    bindings,
    chosen_values,
    parse_declarations,
    parse_value,
)
from nexus_core.workbench.runs import NotebookRunner, stale_cells
from nexus_core.workbench.sandbox import Workbench

TODAY = date(2026, 12, 8)
INJECTION = "Helper' OR 1=1 --"
PERSONAS = ("Helper", "Helper", "Coder", "Helper", INJECTION)


@pytest.fixture
def app(ctx: AppContext) -> AppContext:
    """A fresh install whose event log holds five replies by persona over five days."""
    ctx.init()
    days = iter(datetime(2026, 12, 3 + n, 12) for n in range(len(PERSONAS)))
    logger = ApiEventLogger(ctx.settings.event_log_path, clock=lambda: next(days))
    for n, persona in enumerate(PERSONAS):
        logger.emit("job_success", job_id=f"j{n}", latency_ms=1000.0 * (n + 1), persona=persona)
    logger.close()
    ctx.users.create("ana", "correct-horse-1", role="analyst")
    return ctx


@pytest.fixture
def ana(app: AppContext) -> UserView:
    return app.users.get("ana")


@pytest.fixture
def runner(app: AppContext) -> NotebookRunner:
    return NotebookRunner(Workbench(app.settings, app.db), include_message_content=False)


def sql(source: str, name: str | None = None, chart: ChartSpec | None = None) -> Cell:
    return Cell(kind="sql", source=source, name=name, chart=chart)


PARAMETERS = [
    Parameter("persona", "persona", "Helper"),
    Parameter("period", "date_range", "2026-12-01..2026-12-31"),
    Parameter("slow_ms", "int", "1500"),
]
REPLIES = sql(
    "SELECT persona, latency_ms FROM events WHERE event = 'job_success' "
    "AND persona = $persona AND ts >= $period_start AND ts < $period_end",
    name="replies",
)
SLOW = sql("SELECT * FROM replies WHERE latency_ms > $slow_ms", name="slow")
COUNT = sql("SELECT count(*) AS n, max(latency_ms) AS worst FROM slow")


# --- dependency order --------------------------------------------------------------------------


def test_cells_run_after_the_cells_they_read_whatever_their_place(
    runner: NotebookRunner,
) -> None:
    cells = [COUNT, Cell(kind="markdown", source="notes"), SLOW, REPLIES]
    assert plan(cells, ["persona", "period_start", "period_end", "slow_ms"]).order == (
        REPLIES.id,
        SLOW.id,
        COUNT.id,
    )
    runs = runner.run(cells, PARAMETERS, {}, today=TODAY)
    assert all(run.error is None for run in runs.values()), runs
    assert runs[REPLIES.id].result.frame["latency_ms"].to_list() == [1000.0, 2000.0, 4000.0]
    assert runs[COUNT.id].result.frame.rows() == [(2, 4000.0)]
    assert runs[COUNT.id].inputs == {SLOW.id: runs[SLOW.id].token}


def test_a_name_in_a_string_column_or_cte_is_not_a_dependency() -> None:
    read = references(
        "WITH slow AS (SELECT 1 AS replies) SELECT 'replies' AS x, replies FROM slow, events"
    )
    assert read.tables == {"events"}
    assert (
        plan([REPLIES, sql("SELECT 'replies', replies FROM events")], PARAMETER_NAMES).inputs[
            REPLIES.id
        ]
        == ()
    )


PARAMETER_NAMES = ["persona", "period_start", "period_end", "slow_ms"]


def test_running_one_cell_runs_the_cells_it_reads_first_and_nothing_else(
    runner: NotebookRunner,
) -> None:
    other = sql("SELECT 1 AS one")
    runs = runner.run([REPLIES, other, SLOW, COUNT], PARAMETERS, {}, only=SLOW.id, today=TODAY)
    assert set(runs) == {REPLIES.id, SLOW.id}
    assert runs[SLOW.id].result.row_count == 2


def test_a_chained_cells_full_download_reruns_what_it_reads(runner: NotebookRunner) -> None:
    runs = runner.run([REPLIES, SLOW], PARAMETERS, {}, today=TODAY)
    csv = runs[SLOW.id].result.export("csv").decode()  # the export path, not the kept rows
    assert csv.splitlines() == ["persona,latency_ms", "Helper,2000.0", "Helper,4000.0"]


# --- cycles and missing names ------------------------------------------------------------------


def test_a_cycle_is_an_error_on_each_cell_in_it_and_on_cells_behind_it(
    runner: NotebookRunner,
) -> None:
    a = sql("SELECT * FROM b", name="a")
    b = sql("SELECT * FROM a", name="b")
    behind = sql("SELECT * FROM a", name="c")
    fine = sql("SELECT 1 AS one")
    runs = runner.run([a, b, behind, fine], [], {}, today=TODAY)
    assert "read each other in a circle" in runs[a.id].error
    assert "a → b → a" in runs[a.id].error and "b → a → b" in runs[b.id].error
    assert runs[behind.id].error == "Not run: it reads 'a', which cannot run (see that cell)."
    assert runs[fine.id].result is not None and runs[fine.id].result.frame.rows() == [(1,)]


def test_a_cell_reading_its_own_name_or_a_missing_name_says_so(runner: NotebookRunner) -> None:
    me = sql("SELECT * FROM me", name="me")
    missing = sql("SELECT * FROM slow_sesions")
    undeclared = sql("SELECT $nobody AS x")
    runs = runner.run([me, missing, undeclared], [], {}, today=TODAY)
    assert runs[me.id].error == "Cell 'me' reads its own name; a cell reads earlier results only."
    assert runs[missing.id].error.startswith("No cell is named 'slow_sesions'")
    assert "$nobody is not a parameter of this notebook" in runs[undeclared.id].error


def test_a_cell_reading_a_failed_cell_is_not_run(runner: NotebookRunner) -> None:
    broken = sql("SELECT nope FROM events", name="broken")
    reader = sql("SELECT * FROM broken")
    runs = runner.run([broken, reader], [], {}, today=TODAY)
    assert 'Referenced column "nope" not found' in runs[broken.id].error
    assert runs[reader.id].error == "Not run: it reads 'broken', which failed (see that cell)."


def test_a_deeply_nested_cell_is_an_error_on_that_cell_not_a_crash(runner: NotebookRunner) -> None:
    deep = sql("SELECT " + "+".join(["1"] * 800), name="deep")  # 3 KB of SQL, 800 levels deep
    after = sql("SELECT 2 AS two")

    order = plan([deep, after])  # reading what each cell names must not overflow Python's stack
    runs = runner.run([deep, after], [], {}, today=TODAY)

    assert set(order.order) == {deep.id, after.id}
    assert "nested too deeply to check" in runs[deep.id].error
    assert runs[after.id].error is None


def test_cell_names_are_sql_names_unique_and_not_a_view() -> None:
    assert set(view_schemas(include_message_content=True)) == RESERVED_NAMES
    for bad in ("events", "two words", "1st", "x" * 64):
        with pytest.raises(ValidationError):
            cells_from_json([sql("SELECT 1", name=bad).to_json()])
    with pytest.raises(ValidationError, match="Two cells are named 'x'"):
        cells_from_json([sql("SELECT 1", name="x").to_json(), sql("SELECT 2", name="X").to_json()])


# --- stale marking -----------------------------------------------------------------------------


def test_changing_a_cell_marks_it_and_every_cell_reading_it_stale(
    runner: NotebookRunner,
) -> None:
    other = sql("SELECT 1 AS one")
    cells = [REPLIES, SLOW, COUNT, other]
    runs = runner.run(cells, PARAMETERS, {}, today=TODAY)
    assert stale_cells(cells, PARAMETERS, {}, runs, today=TODAY) == set()

    edited = sql(SLOW.source.replace(">", ">="), name="slow")
    edited = Cell(edited.kind, edited.source, None, SLOW.id, "slow")
    now = [REPLIES, edited, COUNT, other]
    assert stale_cells(now, PARAMETERS, {}, runs, today=TODAY) == {SLOW.id, COUNT.id}

    # Running the edited cell brings its own inputs along; its reader is still behind.
    runs |= runner.run(now, PARAMETERS, {}, only=SLOW.id, today=TODAY)
    assert stale_cells(now, PARAMETERS, {}, runs, today=TODAY) == {COUNT.id}


def test_a_new_parameter_value_makes_only_the_cells_using_it_stale(
    runner: NotebookRunner,
) -> None:
    other = sql("SELECT 1 AS one")
    cells = [REPLIES, SLOW, COUNT, other]
    runs = runner.run(cells, PARAMETERS, {}, today=TODAY)
    assert stale_cells(cells, PARAMETERS, {"slow_ms": "3000"}, runs, today=TODAY) == {
        SLOW.id,
        COUNT.id,
    }
    assert stale_cells(cells, PARAMETERS, {"persona": "Coder"}, runs, today=TODAY) == {
        REPLIES.id,
        SLOW.id,
        COUNT.id,
    }


# --- parameters --------------------------------------------------------------------------------


def test_an_injection_attempt_through_a_parameter_stays_a_value(runner: NotebookRunner) -> None:
    cells = [REPLIES]
    runs = runner.run(cells, PARAMETERS, {"persona": INJECTION}, today=TODAY)
    assert runs[REPLIES.id].error is None
    # Only the one reply whose persona is literally that text: not every row, no error.
    assert runs[REPLIES.id].result.frame.rows() == [(INJECTION, 5000.0)]
    counted = sql("SELECT count(*) AS n FROM events WHERE persona = $persona")
    runs = runner.run([counted], PARAMETERS, {"persona": "x'; DROP TABLE events; --"}, today=TODAY)
    assert runs[counted.id].result.frame.rows() == [(0,)]


def test_date_ranges_bind_inclusive_days_and_relative_defaults_follow_today(
    runner: NotebookRunner,
) -> None:
    declared = parse_declarations("period: date_range = last 2 days\nsince: date = today-1\n")
    values = chosen_values(declared, {}, today=TODAY)
    assert values == {"period": (date(2026, 12, 7), TODAY), "since": date(2026, 12, 7)}
    bound = bindings(declared, values)
    assert bound["period_start"] == datetime(2026, 12, 7)
    assert bound["period_end"] == datetime(2026, 12, 9)
    runs = runner.run([REPLIES], PARAMETERS, {"period": "2026-12-04..2026-12-06"}, today=TODAY)
    assert runs[REPLIES.id].result.frame["latency_ms"].to_list() == [2000.0, 4000.0]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("date_range", "last 999999999 days"),
        ("date", "today-99999999"),
        ("date_range", "9999-12-31..9999-12-31"),
        ("date", "9999-12-31"),
    ],
)
def test_a_value_beyond_the_calendar_is_refused_not_a_crash(kind: str, text: str) -> None:
    with pytest.raises(ValidationError, match="is not a value of p"):
        parse_value(Parameter("p", kind, ""), text, today=TODAY)


def test_a_chosen_value_of_the_wrong_type_or_an_unknown_parameter_is_refused(
    runner: NotebookRunner,
) -> None:
    with pytest.raises(ValidationError, match="'soon' is not a value of slow_ms"):
        runner.run([SLOW], PARAMETERS, {"slow_ms": "soon"}, today=TODAY)
    with pytest.raises(ValidationError, match="no parameter 'colour'"):
        runner.run([SLOW], PARAMETERS, {"colour": "red"}, today=TODAY)
    with pytest.raises(ValidationError, match="unknown type 'color'"):
        parse_declarations("x: color = red")
    with pytest.raises(ValidationError, match="Two parameters bind \\$p_start"):
        parse_declarations("p: date_range\np_start: date")


# --- notebooks as files ------------------------------------------------------------------------

FILE = """# Slow replies by persona

```params
persona: persona = Helper
period: date_range = last 30 days
slow_ms: int = 1500
note: text
```

Replies of one persona in the period, then the slow ones.

```sql replies
-- chart: bar x=persona y=latency_ms
SELECT persona, latency_ms FROM events
WHERE event = 'job_success' AND persona = $persona
  AND ts >= $period_start AND ts < $period_end
```

```sql slow
-- chart: line x=persona y=latency_ms color='the colour' agg=mean
SELECT * FROM replies WHERE latency_ms > $slow_ms
```

A second text cell, with code that is not a cell:

```python
print("```sql not_a_cell")
```

<!-- cell -->

## A third text cell

```sql
SELECT count(*) AS n FROM slow
```
"""


def test_a_notebook_file_reads_into_cells_names_parameters_and_charts() -> None:
    read = notebook_from_markdown(FILE)
    assert read.title == "Slow replies by persona"
    assert [p.declaration() for p in read.parameters] == [
        "persona: persona = Helper",
        "period: date_range = last 30 days",
        "slow_ms: int = 1500",
        "note: text",
    ]
    assert [(c.kind, c.name) for c in read.cells] == [
        ("markdown", None),
        ("sql", "replies"),
        ("sql", "slow"),
        ("markdown", None),
        ("markdown", None),
        ("sql", None),
    ]
    assert read.cells[1].chart == ChartSpec(kind="bar", x="persona", y="latency_ms")
    assert read.cells[2].chart == ChartSpec(
        kind="line", x="persona", y="latency_ms", color="the colour", aggregation="mean"
    )
    assert read.cells[2].source == "SELECT * FROM replies WHERE latency_ms > $slow_ms"
    assert '```sql not_a_cell")' in read.cells[3].source


def test_export_of_an_imported_file_is_the_same_file_on_both_databases(
    app: AppContext, ana: UserView
) -> None:
    imported = app.notebooks.import_markdown(ana, FILE)
    exported = app.notebooks.export_markdown(ana, imported.id)
    assert exported == FILE
    again = notebook_from_markdown(exported)
    stored = app.notebooks.get(ana, imported.id)
    assert again.parameters == stored.parameters
    assert [(c.kind, c.source, c.name, c.chart) for c in again.cells] == [
        (c.kind, c.source, c.name, c.chart) for c in stored.cells
    ]


def test_a_notebook_made_on_the_page_survives_export_and_import(
    app: AppContext, ana: UserView
) -> None:
    cells = [
        Cell(kind="markdown", source="one"),
        Cell(kind="markdown", source="two"),
        sql("SELECT '```' AS ticks\n```", name="ticks"),
        sql(""),
    ]
    made = app.notebooks.create(ana, "Made here", cells, parameters=PARAMETERS)
    text = notebook_to_markdown(made.title, made.parameters, made.cells)
    back = app.notebooks.import_markdown(ana, text)
    assert back.title == "Made here" and back.parameters == PARAMETERS
    assert [(c.kind, c.source, c.name) for c in back.cells] == [
        (c.kind, c.source, c.name) for c in cells
    ]


def test_a_broken_file_names_the_line_and_imports_nothing(app: AppContext, ana: UserView) -> None:
    for text, message in (
        ("# T\n\n```sql\nSELECT 1\n", "opens on line 3 is never closed"),
        ("```sql events\nSELECT 1\n```", "line 1: 'events' is one of the workbench's views"),
        ("```params\nx = 1\n```", "is not `name: type = default`"),
        ("```sql\n-- chart: pie x=a\nSELECT 1\n```", "Unknown chart kind 'pie'"),
        ("```params\nn: int = many\n```", "'many' is not a value of n"),
    ):
        with pytest.raises(ValidationError, match=message):
            app.notebooks.import_markdown(ana, text)
    assert app.notebooks.list_for(ana) == []


def test_very_long_title_chart_and_parameter_lines_are_read_not_backtracked_over() -> None:
    """Lines of tens of thousands of characters (a 3,000-space title once took 22 s to read,
    longer ones hours, holding up the whole app) are read in one pass."""
    pad = " " * 50_000
    text = (
        f"# a{pad}b\n\n```params\nperiod{pad}: int{pad}= 5{pad}\n```\n\n"
        f"```sql\n-- chart: bar x=a{pad}\nSELECT 1 AS a\n```\n"
    )
    notebook = notebook_from_markdown(text)
    assert notebook.title.startswith("a ") and notebook.title.endswith("b")
    assert notebook.parameters == [Parameter("period", "int", "5")]
    assert notebook.cells[0].chart is not None and notebook.cells[0].chart.x == "a"
    with pytest.raises(ValidationError):
        parse_declarations(f"n: {'i' * 100_000} x")


def test_a_file_without_a_title_takes_the_fallback_and_relative_dates_stay_relative() -> None:
    read = notebook_from_markdown(
        "```params\nsince: date = today-7\n```\n", fallback_title="weekly"
    )
    assert read.title == "weekly"
    assert chosen_values(read.parameters, {}, today=TODAY)["since"] == TODAY - timedelta(days=7)
