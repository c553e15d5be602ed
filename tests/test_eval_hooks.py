"""Where evals meet the rest of the app, through AppTest: a reply's "Add to test set" in the
chat, a persona version's scorecard on the Personas page, and the judge's agreement with
people under the Compare page's leaderboard."""

from __future__ import annotations

import time

import pytest

from nexus_core.app_context import AppContext
from nexus_core.eval.runs import EvalSpec
from nexus_core.ui import links, persona_view, state
from tests.apptest import seen_text, signed_in_app

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
    ctx.users.create("max", PASSWORD)
    ctx.users.set_feature("mia", "prompt_compare", True)  # test sets come with prompt testing
    return ctx


def replied(ctx: AppContext, username: str, text: str) -> tuple[str, int]:
    """A stored question and reply of ``username``: (session id, reply id)."""
    user = ctx.users.get(username)
    session = ctx.chat.create_session(user, PERSONA)
    _message, job_id = ctx.worker.ask(ctx.chat, session.public_id, user, text)
    job = ctx.worker.wait(job_id, timeout=WAIT)
    assert job.status == "succeeded" and job.reply_message_id is not None
    return session.public_id, job.reply_message_id


def test_a_reply_is_added_to_a_test_set_from_the_chat(app_ctx: AppContext) -> None:
    session_id, reply_id = replied(app_ctx, "mia", "Summarise the Q3 incident review")
    at = signed_in_app("mia", query={links.SESSION_QUERY_PARAM: session_id})
    assert not at.exception
    [name] = [t for t in at.text_input if t.label == "Test set"]
    name.set_value("Incidents")
    at.button(key=f"FormSubmitter:{state.FREEZE_FORM_PREFIX}{reply_id}-Add").click().run()

    assert not at.exception
    assert any(
        "Added to the test set Incidents (1 cases)" in seen_text(s.value) for s in at.success
    )
    mia = app_ctx.users.get("mia")
    [saved] = [s for s in app_ctx.test_sets.list(mia) if s.name == "Incidents"]
    [case] = saved.cases
    assert case.prompt == "Summarise the Q3 incident review"
    reply = app_ctx.chat.message(reply_id, mia)
    assert case.baseline is not None and case.baseline.text == reply.content

    # Without prompt testing there are no test sets, so no such button.
    _session, other_reply = replied(app_ctx, "max", "Anything")
    other = signed_in_app("max", query={links.SESSION_QUERY_PARAM: _session})
    assert not [t for t in other.text_input if t.label == "Test set"]
    assert other_reply


def finished_eval(ctx: AppContext) -> str:
    analyst = ctx.users.get("ana")
    _session, reply_id = replied(ctx, "ana", "Plan a database migration")
    ctx.freezer.freeze(analyst, "Real traffic", message_ids=[reply_id])
    [frozen] = [s for s in ctx.test_sets.list(analyst) if s.name == "Real traffic"]
    run = ctx.evals.start(analyst, EvalSpec(test_set=str(frozen.id), persona=PERSONA))
    deadline = time.monotonic() + WAIT
    while not ctx.evals.advance(analyst, run.id).finished:
        assert time.monotonic() < deadline, "the eval did not finish"
        time.sleep(0.05)  # polling the run's state, not waiting a fixed time
    return run.id


def test_a_persona_version_shows_its_latest_eval_scorecard(app_ctx: AppContext) -> None:
    run_id = finished_eval(app_ctx)
    at = signed_in_app("ana", page="personas")
    at.selectbox(key=persona_view.HISTORY_PICK).set_value(PERSONA).run()
    assert not at.exception
    scorecards = [seen_text(i.value) for i in at.info if "Eval of Real traffic" in i.value]
    assert scorecards, ([i.value for i in at.info], [c.value for c in at.caption])
    assert "Win rate 50% (" in scorecards[0] and "0 regressions" in scorecards[0]
    assert "judge–human agreement no votes yet" in scorecards[0]
    assert any(run_id in seen_text(c.value) for c in at.caption)

    member = signed_in_app("max", page="personas")  # no prompt testing: no evals, no scorecard
    member.selectbox(key=persona_view.HISTORY_PICK).set_value(PERSONA).run()
    assert not member.exception
    assert not [i for i in member.info if "Eval of" in i.value]


def test_the_leaderboard_says_how_far_the_judge_agrees_with_people(app_ctx: AppContext) -> None:
    at = signed_in_app("ana", page="compare", query={links.VIEW_QUERY_PARAM: "leaderboard"})
    assert not at.exception
    captions = [seen_text(c.value) for c in at.caption]
    assert (
        "These votes calibrate the eval judge. The default judge (simulated, simulated-1) "
        "against people's votes: no votes yet."
    ) in captions
