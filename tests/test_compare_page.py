"""The Compare page through AppTest: two personas compared blind, replies side by side, a vote
that reveals the variants and moves the leaderboard; a test set written, run and shown as a
matrix; and people without the prompt_compare feature never reach the page."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.compare.checks import TestCase
from nexus_core.ui import compare_view, links, state, test_set_view
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from nexus_core.ui.resources import get_context
from tests.apptest import seen_text, signed_in_app

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PASSWORD = "correct-horse-1"
TIMEOUT = 60
POLL = 0.05


def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait for the background work a page follows (the page redraws it in a fragment, which
    AppTest does not rerun on its own; the test reruns the page once it is done). Ask the app's
    own context (``get_context``): the test's context would start a second worker, which fails
    the jobs the first one is running as interrupted by a restart."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(POLL)


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A seeded database with the admin, a member with the feature and one without."""
    ctx = app_env
    ctx.init()
    ctx.users.create("tess", PASSWORD, role="member")
    ctx.users.set_feature("tess", "prompt_compare", True)
    ctx.users.create("mia", PASSWORD, role="member")
    return ctx


def open_compare(username: str, **query: str) -> AppTest:
    return signed_in_app(username, page="compare", query=query, timeout=TIMEOUT)


def labelled(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_a_blind_comparison_streams_side_by_side_and_a_vote_moves_the_leaderboard(
    app_ctx: AppContext,
) -> None:
    at = open_compare("tess")
    assert not at.exception
    at.text_area(key=compare_view.PROMPT).set_value("Explain retries in one line.")
    at.toggle(key=compare_view.BLIND).set_value(True)
    at.selectbox(key=f"{compare_view.VARIANT_PREFIX}0_persona").set_value("Code Reviewer")
    at.selectbox(key=f"{compare_view.VARIANT_PREFIX}1_persona").set_value("Technical Writer")
    labelled(at, "Compare").click().run()
    assert not at.exception and not at.error
    run_id = at.query_params[links.RUN_QUERY_PARAM]
    tess = app_ctx.users.get("tess")
    until(lambda: get_context().compare.get(tess, run_id).finished)
    at.run()
    assert not at.exception and not at.error
    view = app_ctx.compare.get(tess, run_id)
    assert view.finished and view.blind and not view.revealed
    headings = [m.value for m in at.markdown]
    assert "### A" in headings and "### B" in headings
    # Blind: no variant labels on screen until the vote.
    captions = " ".join(c.value for c in at.caption)
    assert "Code Reviewer" not in captions and "Technical Writer" not in captions
    assert captions.count(" ms") >= 2  # latency of each reply

    best = view.slots[0]
    at.radio(key=f"{compare_view.BEST}_{run_id}").set_value(best.letter)
    labelled(at, "Submit vote").click().run()
    assert not at.exception
    after = app_ctx.compare.get(tess, run_id)
    assert after.revealed and after.my_vote is not None
    # One banner for one vote.
    assert [seen_text(s.value) for s in at.success] == [
        f"Your vote is in: {best.letter} is best. Thanks!"
    ]
    captions = " ".join(c.value for c in at.caption)
    assert "Code Reviewer" in captions and "Technical Writer" in captions

    board = open_compare("tess", view="leaderboard")
    table = board.dataframe[0].value
    winner = after.slot(best.position).variant
    assert winner is not None
    row = table[table["Variant"] == winner.label]
    assert row["Wins"].to_list() == [1] and row["Comparisons"].to_list() == [1]


def test_a_test_set_is_written_run_and_shown_as_a_matrix(app_ctx: AppContext) -> None:
    at = open_compare("tess", view="tests")
    assert not at.exception
    at.text_input(key=f"{test_set_view.SET_NAME}_new").set_value("Smoke")
    text = "Say hello.\ncontains: hello\n---\nName a colour.\nnot contains: zzzz"
    at.text_area(key=f"{test_set_view.SET_TEXT}_new").set_value(text)
    labelled(at, "Save").click().run()
    assert not at.exception and not at.error
    [saved] = app_ctx.test_sets.list(app_ctx.users.get("tess"))
    assert [case.prompt for case in saved.cases] == ["Say hello.", "Name a colour."]
    labelled(at, "Run test set").click().run()
    assert not at.exception and not at.error
    tess = app_ctx.users.get("tess")
    runs = get_context().test_sets  # the app's own: another worker would fail its running jobs
    until(lambda: all(r.done >= r.total for r in runs.list_runs(tess, saved.id)))
    at.run()
    assert not at.exception and not at.error
    matrix = at.dataframe[0].value
    assert matrix["Prompt"].to_list() == ["Say hello.", "Name a colour."]
    assert len(matrix.columns) == 3  # the prompt and two variants
    cells = [value for column in matrix.columns[1:] for value in matrix[column].to_list()]
    assert all(value.startswith(("✅", "❌")) for value in cells)


def test_an_admin_tells_same_named_sets_apart_and_cannot_edit_someone_elses(
    app_ctx: AppContext,
) -> None:
    tess, admin = app_ctx.users.get("tess"), app_ctx.users.get("admin")
    theirs = app_ctx.test_sets.create(tess, "Smoke", [TestCase("Say hello.")])
    mine = app_ctx.test_sets.create(admin, "Smoke", [TestCase("Name a colour.")])
    at = open_compare("admin", view="tests")
    picker = at.selectbox(key=test_set_view.SET_PICK)
    assert picker.options == [test_set_view.NEW_SET, "Smoke · tess", "Smoke"]  # name, then age
    assert picker.value == test_set_view.NEW_SET_ID  # "(new test set)" shown, not a blank box

    at.selectbox(key=test_set_view.SET_PICK).set_value(theirs.id).run()
    assert not at.exception and not at.error
    assert "Say hello." in at.code[0].value
    assert not [b for b in at.button if b.label in ("Save", "Delete")]
    assert any("only its owner can change it" in c.value for c in at.caption)

    at.selectbox(key=test_set_view.SET_PICK).set_value(mine.id).run()
    assert at.text_input(key=f"{test_set_view.SET_NAME}_{mine.id}").value == "Smoke"
    assert {"Save", "Delete"} <= {b.label for b in at.button}


def test_the_page_needs_the_prompt_compare_feature(app_ctx: AppContext) -> None:
    at = signed_in_app("mia", timeout=TIMEOUT)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("compare"))
    direct = AppTest.from_file(page_path("compare"), default_timeout=TIMEOUT)
    direct.session_state[state.AUTH_STATUS] = True
    direct.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    direct.run()
    assert [e.value for e in direct.error] == [ACCESS_DENIED]


def test_shared_history_typed_in_its_expander_goes_with_the_comparison_once_it_is_closed(
    app_ctx: AppContext,
) -> None:
    at = open_compare("tess")
    assert not [t for t in at.text_area if t.key == compare_view.HISTORY]  # lazy: not drawn
    at.session_state[compare_view.HISTORY_OPEN] = True  # the expander opened
    at.run()
    at.text_area(key=compare_view.HISTORY).set_value("user: Hi\nassistant: Hello!").run()
    at.session_state[compare_view.HISTORY_OPEN] = False  # and closed again
    at.run()
    assert not [t for t in at.text_area if t.key == compare_view.HISTORY]
    at.text_area(key=compare_view.PROMPT).set_value("And now?")
    labelled(at, "Compare").click().run()
    assert not at.exception and not at.error
    view = app_ctx.compare.get(app_ctx.users.get("tess"), at.query_params[links.RUN_QUERY_PARAM])
    assert [(item.role, item.content) for item in view.history] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
    ]


def test_a_version_choice_shows_only_for_a_persona_with_earlier_versions(
    app_ctx: AppContext,
) -> None:
    at = open_compare("tess")
    persona = at.selectbox(key=f"{compare_view.VARIANT_PREFIX}0_persona").value
    assert [b.label for b in at.selectbox].count("Version") == 0  # each has only its current one
    assert "current version" in [c.value.split(" · ")[0] for c in at.caption]

    first = app_ctx.personas.versions(persona)[0]
    assert first.temperature != 1.2
    app_ctx.personas.edit(persona, temperature=1.2)
    at = open_compare("tess")
    version = at.selectbox(key=f"{compare_view.VARIANT_PREFIX}0_version")
    assert version.options == ["current", "v2", "v1"]
    prefix = f"{compare_view.VARIANT_PREFIX}0_temperature_{persona}"
    assert at.slider(key=f"{prefix}_{version.value}").value == 1.2
    version.set_value(1).run()  # the temperature follows the version chosen
    assert at.slider(key=f"{prefix}_1").value == first.temperature
