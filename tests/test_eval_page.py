"""The Evals page through AppTest: an analyst starts a run of a frozen set with the page's form,
and the table shows its verdict (win/tie/loss, win rate with interval, agreement, regressions);
members do not have the page."""

from __future__ import annotations

import time

import pytest

from nexus_core.app_context import AppContext
from nexus_core.users import pages_for
from tests.apptest import signed_in_app

PASSWORD = "correct-horse-1"
PERSONA = "Nexus Assistant"
WAIT = 30.0


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    ctx = app_env
    ctx.init()
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.users.set_feature("ana", "prompt_compare", True)
    ctx.users.create("mia", PASSWORD)
    analyst = ctx.users.get("ana")
    session = ctx.chat.create_session(analyst, PERSONA)
    message, job_id = ctx.worker.ask(ctx.chat, session.public_id, analyst, "Plan a migration")
    assert ctx.worker.wait(job_id, timeout=WAIT).status == "succeeded"
    ctx.freezer.freeze(analyst, "Real traffic", message_ids=[message.id])
    return ctx


def test_an_analyst_starts_an_eval_and_sees_its_verdict(app_ctx: AppContext) -> None:
    at = signed_in_app("ana", page="evals")
    assert not at.exception
    [persona] = [box for box in at.selectbox if box.label == "Persona"]
    persona.set_value(PERSONA)
    at.button[0].click().run()  # the form's submit: the frozen set, the current version

    deadline = time.monotonic() + WAIT
    analyst = app_ctx.users.get("ana")
    while not app_ctx.evals.advance(analyst, app_ctx.evals.list_runs(analyst)[0].id).finished:
        assert time.monotonic() < deadline, "the eval did not finish"
        time.sleep(0.05)
    at.run()

    assert not at.exception
    table = at.dataframe[0].value
    assert table["Test set"][0] == "Real traffic"
    assert table["Win / tie / loss"][0] == "0 / 1 / 0"  # the same version: the same reply
    assert table["Win rate (95% CI)"][0].startswith("50% (")
    assert table["Agreement (κ, n)"][0] == "no votes yet"
    assert table["Regressions"][0] == 0


def test_the_evals_page_is_for_analysts_and_admins_with_prompt_testing(
    app_ctx: AppContext,
) -> None:
    env = app_ctx.settings.env
    assert "evals" in pages_for(app_ctx.users.get("ana"), env=env)
    assert "evals" in pages_for(app_ctx.users.get("admin"), env=env)
    assert "evals" not in pages_for(app_ctx.users.get("mia"), env=env)
