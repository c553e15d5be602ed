"""Evaluating a persona change on real traffic, in a real browser: an admin thumbs a reply down,
adds it to a test set, runs the set against the persona's new version on the Evals page, and
reads the verdict (win rate with its interval, judge–human agreement) on the version's
scorecard on the Personas page."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from nexus_core.app_context import AppContext
from nexus_core.db.models import EvalRun
from nexus_core.settings import Settings
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    CLI_TIMEOUT_SECONDS,
    REPO_ROOT,
    LiveApp,
    NewPage,
    open_from_sidebar,
    pick,
    sign_in,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

PERSONA = "Nexus Assistant"
SET_NAME = "Journey set"
EVAL_WAIT_SECONDS = 60.0


def chat_reply(app: LiveApp) -> str:
    """A conversation of the admin with the persona, through `nexus chat`; its session id."""
    args = ["chat", "--user", "admin", "--persona", PERSONA, "--json", "Draft the Q3 plan"]
    result = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=app.env,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == "ok", result.stderr
    return str(answer["session_id"])


def new_version(app: LiveApp) -> int:
    """The persona edited (a new version) through the services, as an admin would on the page."""
    ctx = AppContext(Settings.from_sources(environ=app.env, secrets_file=None))
    try:
        admin = ctx.users.get("admin")
        edited = ctx.personas.edit(
            PERSONA, actor=admin, system_instruction="You are a terse planning assistant."
        )
        return edited.version
    finally:
        ctx.close()


def eval_finished(app: LiveApp) -> bool:
    ctx = AppContext(Settings.from_sources(environ=app.env, secrets_file=None))
    try:
        with ctx.db.session() as session:
            statuses = list(session.scalars(select(EvalRun.status)))
    finally:
        ctx.close()
    assert all(s != "failed" for s in statuses), statuses
    return bool(statuses) and all(s == "finished" for s in statuses)


def test_a_thumbed_down_reply_becomes_a_case_judged_against_a_new_version(
    live_app: LiveApp, new_page: NewPage
) -> None:
    session_id = chat_reply(live_app)
    page = new_page()
    sign_in(page, live_app.url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_app.url}/?session={session_id}")
    reply = page.get_by_test_id("stChatMessage").nth(1)
    thumbs_down = reply.get_by_role("radio", name="Thumbs down")
    thumbs_down.click()
    expect(thumbs_down).to_have_attribute("aria-checked", "true")
    wait_until_idle(page)
    reply.get_by_role("button", name="Add to test set").click()
    page.get_by_label("Test set", exact=True).fill(SET_NAME)
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_text(f"Added to the test set {SET_NAME} (1 cases)")).to_be_visible()

    version = new_version(live_app)
    open_from_sidebar(page, "Evals", "🎯 Evals")
    pick(page, "Persona", PERSONA)
    page.get_by_role("button", name="Run the evaluation").click()
    expect(page.get_by_text("Started: the replies are on their way")).to_be_visible()
    deadline = time.monotonic() + EVAL_WAIT_SECONDS
    while not eval_finished(live_app):  # the open page moves the run on every two seconds
        assert time.monotonic() < deadline, "the eval did not finish"
        page.wait_for_timeout(200)  # polling the run's state in the database

    open_from_sidebar(page, "Personas", "🎭 Personas")
    page.get_by_role("tab", name="History").click()
    pick(page, "Persona", PERSONA)
    # The new version's expander (open: it is the newest) carries its scorecard.
    newest = page.get_by_test_id("stExpander").filter(has_text=f"Version {version} ·")
    scorecard = newest.get_by_text(f"Eval of {SET_NAME} against original")
    expect(scorecard).to_be_visible()
    text = scorecard.inner_text()
    assert "Win rate" in text and "95 %" in text and "judge–human agreement" in text
