"""The Workbench page through AppTest: an analyst builds a notebook (cells added, run, charted),
it is saved as they go and comes back on reload; starters are read-only until duplicated; a
notebook shared by one analyst is read-only for another; a refused query shows a message, not a
traceback; and members never reach the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.ui import links, notebook_view, state, workbench_view
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from nexus_core.ui.widgets.pin import PIN_PREFIX
from nexus_core.workbench.cells import Cell, ChartSpec
from nexus_core.workbench.parameters import Parameter
from nexus_core.workbench.query_process import ACCESS_MESSAGE
from nexus_core.workbench.starters import STARTER_NOTEBOOKS
from tests.apptest import seen_text, signed_in_app

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PASSWORD = "correct-horse-1"
TIMEOUT = 60


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A seeded database with the admin, a member, two analysts and one chat with a reply."""
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD, role="member")
    ctx.users.create("ana", PASSWORD, role="analyst", display_name="Ana Analyst")
    ctx.users.create("bo", PASSWORD, role="analyst", display_name="Bo Analyst")
    mia = ctx.users.get("mia")
    chat = ctx.chat.create_session(mia, "Nexus Assistant")
    message = ctx.chat.add_user_message(chat.public_id, mia, "How do I rotate a log file?")
    ctx.worker.wait(ctx.worker.enqueue(message.id, mia), timeout=30)
    return ctx


def open_workbench(username: str, notebook: str | None = None) -> AppTest:
    query = {} if notebook is None else {links.NOTEBOOK_QUERY_PARAM: notebook}
    return signed_in_app(username, page="workbench", query=query, timeout=TIMEOUT)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def cell_button(at: AppTest, prefix: str, notebook_key: str, cell: Cell):
    return at.button(key=f"{prefix}{notebook_key}_{cell.id}")


def test_an_analyst_builds_a_notebook_that_is_saved_and_comes_back(app_ctx: AppContext) -> None:
    at = open_workbench("ana")
    assert not at.exception
    button(at, "New notebook").click().run()
    ana = app_ctx.users.get("ana")
    [notebook] = app_ctx_notebooks(app_ctx, ana)
    key = str(notebook.id)
    assert at.query_params[links.NOTEBOOK_QUERY_PARAM] == key

    # Run the first cell: a table with its row count and run time.
    first = notebook.cells[0]
    cell_button(at, notebook_view.RUN_PREFIX, key, first).click().run()
    assert not at.exception and not at.error
    assert any(" rows · " in c.value and c.value.endswith(" ms") for c in at.caption)
    assert len(at.dataframe) == 1

    # Add a second SQL cell, write a query, chart it.
    at.button(key=notebook_view.ADD_SQL_PREFIX + key).click().run()
    second = app_ctx.notebooks.get(ana, notebook.id).cells[1]
    sql = "SELECT role, count(*) AS messages FROM messages GROUP BY role ORDER BY role"
    at.text_area(key=f"{notebook_view.SOURCE_PREFIX}{key}_{second.id}").set_value(sql).run()
    cell_button(at, notebook_view.RUN_PREFIX, key, second).click().run()
    assert not at.error
    chart = f"{notebook_view.CHART_PREFIX}{key}_{second.id}_"
    at.selectbox(key=chart + "kind").set_value("bar").run()
    at.selectbox(key=chart + "x").set_value("role").run()
    at.selectbox(key=chart + "y").set_value("messages").run()
    assert not at.exception and not at.warning
    assert len(at.get("plotly_chart")) == 1

    # Saved as the analyst went: a fresh page shows the same cells, SQL and chart.
    stored = app_ctx.notebooks.get(ana, notebook.id)
    assert [c.source for c in stored.cells] == [first.source, sql]
    assert stored.cells[1].chart == ChartSpec(kind="bar", x="role", y="messages")
    again = open_workbench("ana", key)
    assert not at.exception
    assert at.text_area(key=f"{notebook_view.SOURCE_PREFIX}{key}_{second.id}").value == sql
    again_chart = again.selectbox(key=chart + "kind")
    assert again_chart.value == "bar"


def app_ctx_notebooks(ctx: AppContext, user):
    return ctx.notebooks.list_for(user)


def test_cells_are_reordered_duplicated_and_deleted(app_ctx: AppContext) -> None:
    ana = app_ctx.users.get("ana")
    service = app_ctx.notebooks
    cells = [Cell("sql", "SELECT 1 AS one"), Cell("markdown", "## Notes"), Cell("sql", "SELECT 3")]
    notebook = service.create(ana, "Order", cells)
    key = str(notebook.id)
    at = open_workbench("ana", key)
    at.button(key=f"nexus_wb_move_down_{key}_{cells[0].id}").click().run()
    moved = [c.id for c in service.get(ana, notebook.id).cells]
    assert moved == [cells[1].id, cells[0].id, cells[2].id]
    at.button(key=f"nexus_wb_duplicate_cell_{key}_{cells[2].id}").click().run()
    sources = [c.source for c in service.get(ana, notebook.id).cells]
    assert sources == ["## Notes", "SELECT 1 AS one", "SELECT 3", "SELECT 3"]
    at.button(key=f"nexus_wb_delete_cell_{key}_{cells[0].id}").click().run()
    sources = [c.source for c in service.get(ana, notebook.id).cells]
    assert sources == ["## Notes", "SELECT 3", "SELECT 3"]
    assert len([t for t in at.text_area if t.key.startswith(notebook_view.SOURCE_PREFIX)]) == 3
    assert not at.exception


def test_a_starter_runs_read_only_and_a_duplicate_is_editable(app_ctx: AppContext) -> None:
    starter = STARTER_NOTEBOOKS[0]
    at = open_workbench("ana", workbench_view.STARTER_PREFIX + starter.key)
    assert not at.exception
    assert starter.title in [s.value for s in at.subheader]
    assert not at.text_area  # nothing to edit
    button(at, "Run all").click().run()
    assert not at.exception and not at.error
    sql_cells = [c for c in starter.cells if c.kind == "sql"]
    assert len(at.dataframe) == len(sql_cells)
    button(at, "Duplicate").click().run()
    ana = app_ctx.users.get("ana")
    [copy] = app_ctx.notebooks.list_for(ana)
    assert copy.title == f"Copy of {starter.title}" and copy.editable
    assert at.query_params[links.NOTEBOOK_QUERY_PARAM] == str(copy.id)
    sources = [t for t in at.text_area if t.key.startswith(notebook_view.SOURCE_PREFIX)]
    assert len(sources) == len(starter.cells)


def test_a_shared_notebook_is_read_only_for_another_analyst(app_ctx: AppContext) -> None:
    service = app_ctx.notebooks
    ana, bo = app_ctx.users.get("ana"), app_ctx.users.get("bo")
    private = service.create(ana, "Ana's private", [Cell("sql", "SELECT 1")])
    shared = service.create(ana, "Ana's shared", [Cell("sql", "SELECT 42 AS answer")])
    service.set_shared(ana, shared.id, True)
    at = open_workbench("bo", str(shared.id))
    assert not at.exception
    assert "Ana's shared · Ana Analyst" in [seen_text(b.label) for b in at.button]
    assert "Ana's private" not in [b.label for b in at.button]
    assert not at.text_area
    # The only toggle is the pin action's (a read-only notebook's cells can be pinned).
    assert [t.key for t in at.toggle if not t.key.startswith(PIN_PREFIX)] == []
    button(at, "Run").click().run()
    assert at.dataframe[0].value["answer"].to_list() == [42]
    hidden = open_workbench("bo", str(private.id))
    assert [w.value for w in hidden.warning] == [
        "That notebook does not exist or is not shared with you."
    ]
    assert service.get(bo, shared.id).editable is False


def test_a_refused_query_shows_the_reason_not_a_traceback(app_ctx: AppContext) -> None:
    ana = app_ctx.users.get("ana")
    cell = Cell("sql", "SELECT * FROM read_csv('/etc/passwd')")
    notebook = app_ctx.notebooks.create(ana, "Escape", [cell])
    at = open_workbench("ana", str(notebook.id))
    cell_button(at, notebook_view.RUN_PREFIX, str(notebook.id), cell).click().run()
    assert not at.exception
    (shown,) = [e.value for e in at.error]
    # The reason, as a code block: the workbench's own sentence first, then the engine's refusal.
    assert shown.startswith(f"```\n{ACCESS_MESSAGE}\n")
    assert "root:" not in shown  # nothing of the file was read
    assert not at.dataframe


def test_message_content_is_for_admins_only(app_ctx: AppContext) -> None:
    service = app_ctx.notebooks
    for username in ("ana", "admin"):
        user = app_ctx.users.get(username)
        cell = Cell("sql", "SELECT content FROM messages WHERE role = 'user'")
        notebook = service.create(user, "Content", [cell])
        at = open_workbench(username, str(notebook.id))
        cell_button(at, notebook_view.RUN_PREFIX, str(notebook.id), cell).click().run()
        assert not at.exception
        if username == "admin":
            assert at.dataframe[0].value["content"].to_list() == ["How do I rotate a log file?"]
        else:
            assert len(at.error) == 1 and "content" in at.error[0].value


def test_members_cannot_reach_the_workbench(app_ctx: AppContext) -> None:
    at = signed_in_app("mia", timeout=TIMEOUT)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("workbench"))
    direct = AppTest.from_file(page_path("workbench"), default_timeout=TIMEOUT)
    direct.session_state[state.AUTH_STATUS] = True
    direct.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    direct.run()
    assert [e.value for e in direct.error] == [ACCESS_DENIED]
    assert not direct.button


def test_a_charted_query_without_rows_says_what_its_chart_would_show(
    app_ctx: AppContext,
) -> None:
    ana = app_ctx.users.get("ana")
    # Thumbs per persona before anyone rated a reply: no feedback rows at all.
    sql = "SELECT category AS persona, 100.0 * rating AS thumbs_up_pct FROM feedback"
    chart = ChartSpec(kind="bar", x="persona", y="thumbs_up_pct")
    notebook = app_ctx.notebooks.create(ana, "Thumbs", [Cell("sql", sql, chart=chart)])
    key = str(notebook.id)
    at = open_workbench("ana", key)
    (cell,) = notebook.cells
    cell_button(at, notebook_view.RUN_PREFIX, key, cell).click().run()
    assert not at.exception and not at.error and not at.warning
    assert not at.get("plotly_chart")
    assert (
        "📭 The query returned no rows — the bar chart of thumbs_up_pct by persona appears when "
        "it returns some."
    ) in [seen_text(c.value) for c in at.caption]


def test_a_parameterised_notebook_of_chained_cells_opens_from_a_link_and_marks_stale_results(
    app_ctx: AppContext,
) -> None:
    ana = app_ctx.users.get("ana")
    parameters = [Parameter("persona", "persona"), Parameter("role", "text", "user")]
    picked = Cell(
        "sql",
        "SELECT m.role, s.persona FROM messages AS m JOIN sessions AS s ON s.id = m.session_id "
        "WHERE m.role = $role AND ($persona IS NULL OR s.persona = $persona)",
        name="picked",
    )
    counted = Cell("sql", "SELECT count(*) AS n FROM picked")  # placed first, runs second
    notebook = app_ctx.notebooks.create(ana, "Chained", [counted, picked], parameters=parameters)
    key = str(notebook.id)
    # A link carries a chosen value: the widget shows it.
    at = signed_in_app(
        "ana",
        page="workbench",
        query={
            links.NOTEBOOK_QUERY_PARAM: key,
            links.NOTEBOOK_PARAMETER_PREFIX + "role": "assistant",
        },
        timeout=TIMEOUT,
    )
    role = at.text_input(key=f"{notebook_view.PARAMETER_PREFIX}{key}_role")
    assert role.value == "assistant"
    button(at, "Run all").click().run()
    assert not at.exception and not at.error
    assert at.dataframe[0].value["n"].to_list() == [1]  # the one reply, read from `picked`
    assert at.dataframe[1].value["role"].to_list() == ["assistant"]
    assert notebook_view.STALE_TEXT not in [seen_text(c.value) for c in at.caption]

    # Picking a persona goes into the address and makes both results stale.
    persona = at.selectbox(key=f"{notebook_view.PARAMETER_PREFIX}{key}_persona")
    persona.set_value("Nexus Assistant").run()
    assert at.query_params[links.NOTEBOOK_PARAMETER_PREFIX + "persona"] == "Nexus Assistant"
    assert [seen_text(c.value) for c in at.caption].count(notebook_view.STALE_TEXT) == 2

    # Running the counting cell brings `picked` along: nothing is stale any more.
    cell_button(at, notebook_view.RUN_PREFIX, key, counted).click().run()
    assert notebook_view.STALE_TEXT not in [seen_text(c.value) for c in at.caption]

    # Editing the named cell makes the cell reading it stale too.
    editor = at.text_area(key=f"{notebook_view.SOURCE_PREFIX}{key}_{picked.id}")
    editor.set_value(picked.source + " LIMIT 1").run()
    assert [seen_text(c.value) for c in at.caption].count(notebook_view.STALE_TEXT) == 2
    assert not at.exception


def test_a_cycle_or_missing_name_shows_on_the_cell_before_any_run(app_ctx: AppContext) -> None:
    ana = app_ctx.users.get("ana")
    cells = [
        Cell("sql", "SELECT * FROM b", name="a"),
        Cell("sql", "SELECT * FROM a", name="b"),
        Cell("sql", "SELECT * FROM nowhere"),
    ]
    notebook = app_ctx.notebooks.create(ana, "Circle", cells)
    at = open_workbench("ana", str(notebook.id))
    shown = [seen_text(e.value) for e in at.error]
    assert len(shown) == 3 and "read each other in a circle" in shown[0]
    assert shown[2].startswith("No cell is named 'nowhere'")
    button(at, "Run all").click().run()
    assert not at.exception and len(at.error) == 3 and not at.dataframe


def test_naming_a_cell_is_saved_and_a_bad_name_is_refused(app_ctx: AppContext) -> None:
    ana = app_ctx.users.get("ana")
    cell = Cell("sql", "SELECT 1 AS one")
    notebook = app_ctx.notebooks.create(ana, "Names", [cell])
    key = str(notebook.id)
    at = open_workbench("ana", key)
    at.text_input(key=f"{notebook_view.NAME_PREFIX}{key}_{cell.id}").set_value("ones").run()
    assert app_ctx.notebooks.get(ana, notebook.id).cells[0].name == "ones"
    at.text_input(key=f"{notebook_view.NAME_PREFIX}{key}_{cell.id}").set_value("events").run()
    assert any("one of the workbench's views" in seen_text(e.value) for e in at.error)
    assert app_ctx.notebooks.get(ana, notebook.id).cells[0].name == "ones"
    assert [b.label for b in at.get("download_button") if b.label == "Export"]


def test_the_data_panel_and_the_import_are_built_only_when_opened(app_ctx: AppContext) -> None:
    at = open_workbench("ana")
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert workbench_view.SCHEMA_LABEL in labels and workbench_view.IMPORT_LABEL in labels
    assert not any(m.value.startswith("**events** — ") for m in at.markdown)
    assert not at.get("file_uploader")

    at.session_state[workbench_view.SCHEMA_OPEN] = True  # both expanders opened
    at.session_state[workbench_view.IMPORT_OPEN] = True
    at.run()
    listed = [m.value.split(" — ")[0] for m in at.markdown if " — `" in m.value]
    assert listed[:2] == ["**events**", "**sessions**"] and "**messages**" in listed
    assert [u.proto.label for u in at.get("file_uploader")] == ["Import a notebook (.md)"]


def test_a_starter_opens_from_the_empty_page(app_ctx: AppContext) -> None:
    at = open_workbench("ana")
    starter = STARTER_NOTEBOOKS[1]
    described = "\n".join(seen_text(m.value) for m in at.markdown)
    assert all(f"- **{s.title}** — {s.description}" in described for s in STARTER_NOTEBOOKS)
    at.button_group(key=workbench_view.STARTER_PICK).set_value(starter.title).run()
    assert not at.exception
    key = workbench_view.STARTER_PREFIX + starter.key
    assert at.query_params[links.NOTEBOOK_QUERY_PARAM] == key
    assert starter.title in [s.value for s in at.subheader]


def test_the_same_starter_opens_again_after_going_back_to_the_empty_page(
    app_ctx: AppContext,
) -> None:
    at = open_workbench("ana")
    starter = STARTER_NOTEBOOKS[0]
    at.button_group(key=workbench_view.STARTER_PICK).set_value(starter.title).run()
    del at.query_params[links.NOTEBOOK_QUERY_PARAM]
    at.run()
    assert starter.title not in [s.value for s in at.subheader]

    at.button_group(key=workbench_view.STARTER_PICK).set_value(starter.title).run()

    key = workbench_view.STARTER_PREFIX + starter.key
    assert not at.exception
    assert at.query_params[links.NOTEBOOK_QUERY_PARAM] == key
    assert starter.title in [s.value for s in at.subheader]
