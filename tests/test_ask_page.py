"""Ask on the pages, through AppTest with the offline model: the Workbench's Ask box drafts SQL,
shows it (labelled as generated) before anything runs, runs it, offers a fix for a failed run,
and saves it as a generated cell; `/sql` in chat answers analysts with the draft and a link to the
workbench, and tells members it is not for them without losing what they typed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.ask.drafts import GENERATED_LABEL, GENERATED_PREFIX
from nexus_core.ask.service import ROLE_MESSAGE
from nexus_core.db.models import Message
from nexus_core.ui import ask_view, links, state
from tests.apptest import seen_text, signed_in_app

PASSWORD = "correct-horse-1"
TIMEOUT = 60
QUESTION = "Replies by persona per day"


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """An analyst, a member, and one chat reply in the event log."""
    ctx = app_env
    ctx.init()
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.users.create("mia", PASSWORD, role="member")
    mia = ctx.users.get("mia")
    chat = ctx.chat.create_session(mia, "Nexus Assistant")
    message = ctx.chat.add_user_message(chat.public_id, mia, "How do I rotate a log file?")
    ctx.worker.wait(ctx.worker.enqueue(message.id, mia), timeout=30)
    return ctx


def ask(at: AppTest, question: str) -> AppTest:
    at.text_input(key=ask_view.QUESTION).set_value(question)
    return next(b for b in at.button if b.label == "Draft SQL").click().run()


def shown(elements) -> list[str]:
    return [seen_text(e.value) for e in elements]


def test_an_analyst_asks_sees_the_draft_runs_it_and_saves_it_as_a_generated_cell(
    app_ctx: AppContext,
) -> None:
    at = signed_in_app("ana", page="workbench", timeout=TIMEOUT)
    at = ask(at, QUESTION)
    assert not at.exception and not at.error
    draft_id = int(at.query_params[links.ASK_QUERY_PARAM])
    draft = app_ctx.ask.recall(app_ctx.users.get("ana"), draft_id)
    editor = at.text_area(key=f"{ask_view.SQL_PREFIX}{draft_id}")
    assert editor.value == draft.sql and "GROUP BY ALL" in draft.sql
    assert any(GENERATED_LABEL in m.value for m in at.markdown)  # the badge
    assert any(f"asked: “{QUESTION}”" in c for c in shown(at.caption))
    assert len(at.dataframe) == 0  # shown, not run

    at.button(key=ask_view.RUN).click().run()
    assert not at.exception and not at.error
    [table] = at.dataframe
    assert list(table.value.columns) == ["persona", "day", "replies"]
    assert table.value["replies"].sum() == 1

    at.button(key=ask_view.SAVE_NEW).click().run()
    ana = app_ctx.users.get("ana")
    [notebook] = app_ctx.notebooks.list_for(ana)
    assert at.query_params[links.NOTEBOOK_QUERY_PARAM] == str(notebook.id)
    [cell] = notebook.cells
    assert cell.source == f"{GENERATED_PREFIX}{QUESTION}\n{draft.sql}"
    assert cell.chart == draft.chart
    assert f"[1] SQL · {GENERATED_LABEL} · name" in [seen_text(t.label) for t in at.text_input]


def test_a_failed_run_offers_a_fix_that_says_what_is_wrong(app_ctx: AppContext) -> None:
    at = ask(signed_in_app("ana", page="workbench", timeout=TIMEOUT), "feedback by category")
    first = int(at.query_params[links.ASK_QUERY_PARAM])
    editor = at.text_area(key=f"{ask_view.SQL_PREFIX}{first}")
    editor.set_value(editor.value.replace("f.category AS", "f.categry AS")).run()
    at.button(key=ask_view.RUN).click().run()
    assert any("categry" in e.value for e in at.error)
    at.button(key=ask_view.FIX).click().run()
    assert not at.exception
    fixed = int(at.query_params[links.ASK_QUERY_PARAM])
    assert fixed != first
    assert any("“categry”" in w for w in shown(at.info))
    assert "f.category AS" in at.text_area(key=f"{ask_view.SQL_PREFIX}{fixed}").value
    actions = [e.action for e in audit.search(app_ctx.db, audit.AuditQuery(), limit=5)]
    assert actions[:2] == [audit.ASK_CORRECTED, audit.ASK_DRAFTED]


def test_a_question_the_templates_do_not_cover_says_so(app_ctx: AppContext) -> None:
    at = ask(signed_in_app("ana", page="workbench", timeout=TIMEOUT), "Who will win the cup?")
    assert any("None of the offline templates matches" in w for w in shown(at.warning))
    assert not at.exception


def messages_stored(ctx: AppContext) -> int:
    with ctx.db.session() as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def test_sql_in_chat_answers_an_analyst_with_the_draft_and_a_workbench_link(
    app_ctx: AppContext,
) -> None:
    chat = app_ctx.chat.create_session(app_ctx.users.get("ana"), "Nexus Assistant")
    before = messages_stored(app_ctx)
    at = signed_in_app("ana", query={links.SESSION_QUERY_PARAM: chat.public_id}, timeout=TIMEOUT)
    at.chat_input(key=state.CHAT_INPUT).set_value("/sql errors by day").run()
    assert not at.exception
    assert messages_stored(app_ctx) == before  # not a chat message, not sent to the persona
    [draft] = audit.search(app_ctx.db, audit.AuditQuery(action_prefix="ask."), limit=5)
    [answer] = [m for m in at.chat_message if m.name == "assistant"]
    assert [c.value for c in answer.code] == [draft.details["sql"]]
    [link] = answer.get("page_link")
    assert (link.proto.page, link.proto.query_string) == ("workbench", f"ask={draft.id}")
    assert links.ask_url(int(draft.id)) == f"/workbench?ask={draft.id}"


def test_sql_in_chat_tells_a_member_it_is_for_analysts_and_keeps_the_text(
    app_ctx: AppContext,
) -> None:
    chat = app_ctx.chat.create_session(app_ctx.users.get("mia"), "Nexus Assistant")
    before = messages_stored(app_ctx)
    at = signed_in_app("mia", query={links.SESSION_QUERY_PARAM: chat.public_id}, timeout=TIMEOUT)
    at.chat_input(key=state.CHAT_INPUT).set_value("/sql replies by persona").run()
    assert ROLE_MESSAGE in shown(at.warning)
    assert [c.value for c in at.code] == ["/sql replies by persona"]
    assert messages_stored(app_ctx) == before
    assert audit.search(app_ctx.db, audit.AuditQuery(action_prefix="ask."), limit=5) == []
