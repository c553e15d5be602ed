"""The Boards page and the workbench's pin action through AppTest: an analyst pins a cell's chart
to a new board from the workbench; a board's link shows each pin with its chart or table, its
parameters and its time, a broken pin's error on that pin only; another analyst opens a shared
board but not a personal one; unpin and refresh work; members never reach the page."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.ui import boards_view, links, state
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from nexus_core.ui.widgets.pin import NEW_BOARD, pin_keys
from nexus_core.workbench.cells import Cell, ChartSpec
from nexus_core.workbench.parameters import Parameter
from tests.apptest import seen_text, signed_in_app

PASSWORD = "correct-horse-1"
TIMEOUT = 60
CHART_CELL = Cell(
    "sql",
    "SELECT role, count(*) AS messages FROM messages WHERE $role IS NULL OR role = $role "
    "GROUP BY role ORDER BY role",
    chart=ChartSpec(kind="bar", x="role", y="messages"),
    name="by_role",
)
TABLE_CELL = Cell("sql", "SELECT count(*) AS users FROM users")
BROKEN_CELL = Cell("sql", "SELECT no_such_column FROM users")
PARAMETERS = [Parameter("role", "text", "user")]


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A seeded database: the admin, a member, two analysts, one chat with a reply."""
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


def open_board(username: str, board_id: int | None = None) -> AppTest:
    query = {} if board_id is None else {links.BOARD_QUERY_PARAM: str(board_id)}
    return signed_in_app(username, page="boards", query=query, timeout=TIMEOUT)


def texts(at: AppTest) -> list[str]:
    return [seen_text(str(e.value)) for e in [*at.caption, *at.subheader, *at.markdown]]


def test_an_analyst_pins_a_cells_chart_to_a_new_board_from_the_workbench(
    app_ctx: AppContext,
) -> None:
    ana = app_ctx.users.get("ana")
    notebook = app_ctx.notebooks.create(ana, "Roles", [CHART_CELL], parameters=PARAMETERS)
    key = str(notebook.id)
    at = signed_in_app(
        "ana",
        page="workbench",
        query={links.NOTEBOOK_QUERY_PARAM: key, "p.role": "assistant"},
        timeout=TIMEOUT,
    )
    assert not at.exception
    keys = pin_keys(key, CHART_CELL.id)
    assert at.selectbox(key=keys["board"]).value == NEW_BOARD  # no board yet: a new one
    assert at.text_input(key=keys["title"]).value == "Roles · by_role"
    at.text_input(key=keys["new"]).set_value("Monday")
    at.toggle(key=keys["shared"]).set_value(True)
    at.selectbox(key=keys["refresh"]).set_value("hourly")
    at.button(key=keys["go"]).click().run()
    assert not at.exception and not at.error

    [board] = app_ctx.boards.list_for(ana)
    assert (board.title, board.shared) == ("Monday", True)
    [pin] = app_ctx.boards.get(ana, board.id).pins
    assert (pin.title, pin.refresh, pin.values) == (
        "Roles · by_role",
        "hourly",
        {"role": "assistant"},
    )
    assert pin.sql == CHART_CELL.source and pin.chart == CHART_CELL.chart
    assert any(links.board_url(board.id) in seen_text(s.value) for s in at.success)
    # The next pin offers the same board.
    assert at.selectbox(key=keys["board"]).value == board.id


def test_a_board_link_shows_each_pin_with_its_chart_parameters_and_time(
    app_ctx: AppContext,
) -> None:
    ana = app_ctx.users.get("ana")
    boards = app_ctx.boards
    board = boards.create(ana, "Team board", shared=True)
    for title, cell in (("By role", CHART_CELL), ("Broken", BROKEN_CELL), ("Users", TABLE_CELL)):
        boards.pin(
            ana,
            board.id,
            title=title,
            cells=[cell],
            cell_id=cell.id,
            parameters=PARAMETERS,
            chosen={"role": "assistant"} if cell is CHART_CELL else {},
        )
    at = open_board("bo", board.id)  # another analyst, by the link
    assert not at.exception
    seen = texts(at)
    assert "Team board" in seen and any("Shared board by Ana Analyst" in t for t in seen)
    assert any(t.startswith("as of ") and "role = assistant" in t for t in seen)
    assert len(at.get("plotly_chart")) == 1  # the chart pin; the table pin is a table
    assert len(at.dataframe) == 1
    [error] = at.error  # the broken pin's own error, and no other
    assert "no_such_column" in error.value
    # Bo did not pin them and does not own the board: refresh, no unpin.
    pins = boards.get(ana, board.id).pins
    assert not [b for b in at.button if b.key.startswith(boards_view.UNPIN_PREFIX)]
    before = boards.get(app_ctx.users.get("bo"), board.id).pins[2].result
    at.button(key=f"{boards_view.REFRESH_PREFIX}{pins[2].id}").click().run()
    after = boards.get(app_ctx.users.get("bo"), board.id).pins[2].result
    assert before is not None and after is not None and after.refreshed_at > before.refreshed_at

    # The owner unpins the broken one.
    own = open_board("ana", board.id)
    own.button(key=f"{boards_view.UNPIN_PREFIX}{pins[1].id}").click().run()
    assert [p.title for p in boards.get(ana, board.id).pins] == ["By role", "Users"]
    assert not own.error


def test_a_personal_board_is_not_shown_to_another_analyst(app_ctx: AppContext) -> None:
    ana = app_ctx.users.get("ana")
    board = app_ctx.boards.create(ana, "Private plans")
    at = open_board("bo", board.id)
    assert [w.value for w in at.warning] == [boards_view.NOT_VISIBLE]
    assert "Private plans" not in str([b.label for b in at.button])


def test_a_new_board_is_made_from_the_sidebar_and_opened(app_ctx: AppContext) -> None:
    at = open_board("ana")
    assert not at.exception
    at.text_input(key=boards_view.NEW_TITLE).set_value("Weekly")
    at.button(key=boards_view.NEW_BUTTON).click().run()
    [board] = app_ctx.boards.list_for(app_ctx.users.get("ana"))
    assert at.query_params[links.BOARD_QUERY_PARAM] == str(board.id)
    assert "Weekly" in texts(at)


def test_members_never_reach_the_boards_page(app_ctx: AppContext) -> None:
    board = app_ctx.boards.create(app_ctx.users.get("ana"), "Team", shared=True)
    at = signed_in_app("mia", timeout=TIMEOUT)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("boards"))
    direct = AppTest.from_file(page_path("boards"), default_timeout=TIMEOUT)
    direct.session_state[state.AUTH_STATUS] = True
    direct.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    direct.query_params[links.BOARD_QUERY_PARAM] = str(board.id)
    direct.run()
    assert [e.value for e in direct.error] == [ACCESS_DENIED]
    assert not direct.button and "Team" not in texts(direct)
