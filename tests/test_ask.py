"""Ask: questions in plain words to draft SQL. Offline templates answer the common questions (and
their SQL runs in the sandbox), say so when a question is not covered, and explain a failed run;
a real model (the fake Gemini server on loopback) gets the schema — never rows unless allowed —
and its fenced SQL is extracted; every draft is audited and reopens by id for its owner only.

Every database test runs on SQLite and (with NEXUS_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from nexus_core import audit
from nexus_core.app_context import AppContext
from nexus_core.ask import templates
from nexus_core.ask.drafts import (
    GENERATED_PREFIX,
    NO_SQL_MESSAGE,
    extract_sql,
    generated_cell_source,
    is_generated,
)
from nexus_core.ask.schema import VIEW_DESCRIPTIONS
from nexus_core.ask.service import ROLE_MESSAGE, without_values
from nexus_core.errors import NotFound, PermissionDenied, QueryError, ValidationError
from nexus_core.settings import Settings
from nexus_core.users import UserView
from nexus_core.workbench.data import view_schemas
from tests.fakes.gemini_server import FakeGeminiServer

PASSWORD = "correct-horse-1"
CANARY = "zebra-canary-7731"  # a value only the data holds
GEMINI_KEY = "test-gemini-key-123"
# The common questions, each with the columns its answer has.
COMMON_QUESTIONS = {
    "How many replies per persona?": ["persona", "replies"],
    "Replies by persona per day over the last 7 days": ["persona", "day", "replies"],
    "Reply volume by model": ["model", "replies"],
    "p95 latency by persona": ["persona", "replies", "p95_latency_ms", "avg_latency_ms"],
    "Latency per day": ["day", "replies", "p95_latency_ms", "avg_latency_ms"],
    "Errors by day in the last 24 hours": ["day", "failed_requests"],
    "Errors by model": ["model", "failed_requests"],
    "Error rate by model": ["model", "requests", "failed_requests", "error_rate_pct"],
    "Errors by type": ["error_type", "failed_requests"],
    "Feedback by category": ["category", "feedback", "thumbs_up", "thumbs_down", "reports"],
    "Feedback by priority and persona": [
        "priority",
        "persona",
        "feedback",
        "thumbs_up",
        "thumbs_down",
        "reports",
    ],
    "Cost by user this month": ["username", "replies", "cost_usd", "unpriced_replies"],
    "Tokens by model": [
        "model",
        "replies",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
    ],
}


@pytest.fixture
def app(ctx: AppContext) -> AppContext:
    """An analyst, a member, one chat with a reply (events in the log), a report holding the
    canary, and one failed request."""
    ctx.init()
    ctx.users.create("ana", PASSWORD, role="analyst")
    ctx.users.create("mia", PASSWORD, role="member")
    mia = ctx.users.get("mia")
    chat = ctx.chat.create_session(mia, "Nexus Assistant")
    message = ctx.chat.add_user_message(chat.public_id, mia, "How do I rotate a log file?")
    ctx.worker.wait(ctx.worker.enqueue(message.id, mia), timeout=30)
    ctx.feedback.submit(mia, category="bug", priority="high", description=CANARY)
    ctx.event_log.emit(
        "request_start", chat_session_id=chat.public_id, request_id="r-1", attempt=1,
        model="gemini-test", provider="gemini",
    )  # fmt: skip
    ctx.event_log.emit(
        "request_failure", chat_session_id=chat.public_id, request_id="r-1", attempt=1,
        latency_ms=12.0, status_code=503, error_type="http_503", retryable=True,
    )  # fmt: skip
    return ctx


@pytest.fixture
def analyst(app: AppContext) -> UserView:
    return app.users.get("ana")


def ask_events(app: AppContext) -> list[audit.AuditRecord]:
    return audit.search(app.db, audit.AuditQuery(action_prefix="ask."), limit=100)[::-1]


# --- offline: templates ---------------------------------------------------------------------------


def test_the_offline_model_answers_the_common_questions_with_sql_that_runs(
    app: AppContext, analyst: UserView
) -> None:
    drafts = {q: app.ask.draft(analyst, q) for q in COMMON_QUESTIONS}
    assert all(d.covered and d.source == "template" for d in drafts.values())
    with app.workbench.open(include_message_content=False) as session:
        results = {q: session.run(d.sql) for q, d in drafts.items()}
    for question, columns in COMMON_QUESTIONS.items():
        assert results[question].frame.columns == columns, question
    by_persona = results["How many replies per persona?"].frame.rows()
    assert by_persona == [("Nexus Assistant", 1)]
    assert results["Errors by model"].frame.rows() == [("gemini-test", 1)]
    assert results["Errors by type"].frame.rows() == [("http_503", 1)]
    assert results["Feedback by category"].frame.select("category", "feedback").rows() == [
        ("bug", 1)
    ]


def test_a_question_no_template_covers_says_so_and_offers_a_starting_query(
    app: AppContext, analyst: UserView
) -> None:
    draft = app.ask.draft(analyst, "What will the weather be tomorrow?")
    assert not draft.covered
    assert "None of the offline templates matches" in draft.note
    assert "starting query" in draft.note
    assert draft.sql == templates.STARTING_SQL
    assert app.ask.run(analyst, draft.sql).frame.columns == ["event", "events", "last_seen"]


@pytest.mark.parametrize(
    ("question", "asked"),
    [("Feedback by model", "“model”"), ("Replies by country", "“country”")],
)
def test_a_grouping_the_templates_lack_is_not_guessed(question: str, asked: str) -> None:
    answer = templates.answer(question)
    assert not answer.covered
    assert f"not by {asked}" in answer.note
    assert "GROUP BY" not in answer.sql  # the measure's total, to edit


def test_a_window_is_not_taken_for_a_grouping() -> None:
    answer = templates.answer("replies in the last 3 days")
    assert answer.covered
    assert "GROUP BY" not in answer.sql
    assert "INTERVAL 3 DAY" in answer.sql
    assert answer.title == "Replies, last 3 days"


def test_a_failed_run_offline_says_what_is_wrong_and_offers_the_template_again(
    app: AppContext, analyst: UserView
) -> None:
    draft = app.ask.draft(analyst, "replies by persona")
    edited = draft.sql.replace("e.persona AS persona", "e.personna AS persona")
    with pytest.raises(QueryError) as failed:
        app.ask.run(analyst, edited)
    fixed = app.ask.correct(analyst, draft.id, edited, str(failed.value))
    assert "“personna”" in fixed.note
    assert fixed.sql == draft.sql
    assert fixed.corrects == draft.id
    assert app.ask.run(analyst, fixed.sql).frame.columns == ["persona", "replies"]


# --- who may ask, what is stored ----------------------------------------------------------------


def test_members_may_not_ask(app: AppContext) -> None:
    member = app.users.get("mia")
    with pytest.raises(PermissionDenied) as refused:
        app.ask.draft(member, "replies by persona")
    assert str(refused.value) == ROLE_MESSAGE
    with pytest.raises(PermissionDenied):
        app.ask.run(member, "SELECT 1")
    assert ask_events(app) == []


@pytest.mark.parametrize("question", ["", "   ", "x" * 501])
def test_an_empty_or_overlong_question_is_refused_with_a_message(
    app: AppContext, analyst: UserView, question: str
) -> None:
    with pytest.raises(ValidationError):
        app.ask.draft(analyst, question)


def test_every_draft_is_audited_and_reopens_by_id_for_its_owner_only(
    app: AppContext, analyst: UserView
) -> None:
    draft = app.ask.draft(analyst, "errors by day")
    [event] = ask_events(app)
    assert event.id == draft.id
    assert event.action == audit.ASK_DRAFTED
    assert (event.actor_id, event.actor_name, event.target_type) == (analyst.id, "ana", "ask")
    assert event.details["question"] == "errors by day"
    assert event.details["sql"] == draft.sql
    assert (event.details["model"], event.details["provider"]) == ("simulated-1", "simulated")
    assert app.ask.recall(analyst, draft.id) == draft
    trail = "SELECT details FROM audit_events WHERE action LIKE 'ask.%'"
    [[public]] = app.workbench.run(trail, include_message_content=False).frame.rows()
    # Analysts querying the trail see neither the question nor the SQL drafted from it (which
    # repeats its values); the model and provider stay.
    assert "errors by day" not in public and draft.sql.splitlines()[1] not in public
    assert "simulated-1" in public

    app.users.create("bo", PASSWORD, role="analyst")
    with pytest.raises(NotFound):
        app.ask.recall(app.users.get("bo"), draft.id)
    other = audit.search(app.db, audit.AuditQuery(action_prefix="user."), limit=1)[0]
    with pytest.raises(NotFound):  # an audit event that is not a draft
        app.ask.recall(analyst, other.id)


def test_a_generated_cell_is_labelled_on_its_first_line() -> None:
    source = generated_cell_source("errors\nDROP TABLE x -- by day", "SELECT 1;\n")
    first, rest = source.split("\n", 1)
    assert first == f"{GENERATED_PREFIX}errors DROP TABLE x -- by day"
    assert rest == "SELECT 1;"
    assert is_generated(source)
    assert not is_generated("SELECT 1 -- generated by Ask from: x")


# --- what a model is told ---------------------------------------------------------------------


def test_the_prompt_describes_the_views_but_holds_no_rows_unless_allowed(
    app: AppContext, analyst: UserView
) -> None:
    prompt = app.ask.request(analyst, "feedback by category").system_instruction
    for view, columns in view_schemas(include_message_content=False).items():
        assert f"{view} — {VIEW_DESCRIPTIONS[view]}" in prompt
        for column, kind in columns.items():
            assert f"  {column} {kind}" in prompt
    assert "  content VARCHAR" not in prompt  # message text is for admins only
    assert CANARY not in prompt
    assert "sample rows" not in prompt

    allowed = app.ask.request(analyst, "feedback by category", allow_samples=True)
    assert CANARY in allowed.system_instruction
    assert "sample rows:" in allowed.system_instruction


def test_a_quoted_value_in_an_error_is_masked_unless_the_sql_holds_it() -> None:
    error = "Conversion Error: Could not convert string 'zebra-canary' to INT32 near 'abc'"
    assert without_values(error, "SELECT 'abc'::INT") == (
        "Conversion Error: Could not convert string '…' to INT32 near 'abc'"
    )


@pytest.mark.parametrize(
    ("reply", "sql"),
    [
        ("Here:\n```sql\nSELECT 1 AS one;\n```\nThis counts.", "SELECT 1 AS one"),
        ("```SQL\nWITH a AS (SELECT 1)\nSELECT 1\n```", "WITH a AS (SELECT 1)\nSELECT 1"),
        ("```python\nprint(1)\n```\n```\nSELECT 2\n```", "SELECT 2"),
        ("```text\nnote\n```\n```duckdb\nSELECT 3\n```\n```sql\nSELECT 4\n```", "SELECT 3"),
        ("  ~~~sql\n  SELECT 5\n  ~~~", "SELECT 5"),
        ("```sql\nSELECT 6 FROM events\nWHERE", "SELECT 6 FROM events\nWHERE"),  # cut short
        ("SELECT 7;", "SELECT 7"),
        ("-- replies\nSELECT 8", "-- replies\nSELECT 8"),
    ],
)
def test_the_sql_is_taken_from_a_model_reply(reply: str, sql: str) -> None:
    assert extract_sql(reply) == sql


@pytest.mark.parametrize("reply", ["I cannot help with that.", "```python\nprint(1)\n```", ""])
def test_a_reply_without_sql_is_a_clear_error(reply: str) -> None:
    with pytest.raises(ValidationError) as failed:
        extract_sql(reply)
    assert str(failed.value) == NO_SQL_MESSAGE


# --- a real model, faked on loopback ------------------------------------------------------------


@pytest.fixture
def gemini_app(app: AppContext, gemini_server: FakeGeminiServer) -> Iterator[AppContext]:
    """The same data, with Gemini (the fake server) as the app's model."""
    settings = dataclasses.replace(
        app.settings,
        ai_provider="gemini",
        gemini_api_key=GEMINI_KEY,
        gemini_api_base=gemini_server.base_url,
    )
    context = AppContext(settings)
    yield context
    context.close()


def sent_text(server: FakeGeminiServer, index: int) -> str:
    return json.dumps(server.requests[index].body, ensure_ascii=False)


def test_gemini_drafts_from_the_schema_and_a_failed_run_gets_a_corrected_draft(
    gemini_app: AppContext, gemini_server: FakeGeminiServer
) -> None:
    analyst = gemini_app.users.get("ana")
    gemini_server.enqueue(
        text="Replies per persona:\n\n```sql\nSELECT persona, count(*) AS n\nFROM events\n"
        "WHERE event = 'job_sucess' AND nope\nGROUP BY persona;\n```\nIt counts replies."
    )
    draft = gemini_app.ask.draft(analyst, "How many replies per persona?")
    assert draft.sql.startswith("SELECT persona, count(*) AS n") and draft.sql.endswith("persona")
    assert (draft.source, draft.provider, draft.model) == ("model", "gemini", "gemini-flash-latest")
    first = gemini_server.requests[0]
    assert first.headers["x-goog-api-key"] == GEMINI_KEY
    body = sent_text(gemini_server, 0)
    assert "How many replies per persona?" in body
    assert "feedback — " in body and "  latency_ms DOUBLE" in body
    assert CANARY not in body and "Nexus Assistant" not in body  # no rows

    with pytest.raises(QueryError) as failed:
        gemini_app.ask.run(analyst, draft.sql)
    gemini_server.enqueue(
        text="```sql\nSELECT persona, count(*) AS replies FROM events "
        "WHERE event = 'job_success' GROUP BY persona\n```"
    )
    fixed = gemini_app.ask.correct(analyst, draft.id, draft.sql, str(failed.value))
    turns = gemini_server.requests[1].body["contents"]
    assert [t["role"] for t in turns] == ["user", "model", "user"]
    assert draft.sql in turns[1]["parts"][0]["text"]
    assert "nope" in turns[2]["parts"][0]["text"]  # DuckDB's message, sent back
    assert gemini_app.ask.run(analyst, fixed.sql).frame.rows() == [("Nexus Assistant", 1)]

    drafted, corrected = ask_events(gemini_app)
    assert (drafted.action, corrected.action) == (audit.ASK_DRAFTED, audit.ASK_CORRECTED)
    assert corrected.details["corrects"] == draft.id
    assert all(GEMINI_KEY not in json.dumps(e.details) for e in (drafted, corrected))


def test_a_gemini_reply_without_sql_is_not_stored(
    gemini_app: AppContext, gemini_server: FakeGeminiServer
) -> None:
    gemini_server.enqueue(text="I would rather not.")
    with pytest.raises(ValidationError):
        gemini_app.ask.draft(gemini_app.users.get("ana"), "replies by persona")
    assert ask_events(gemini_app) == []


def test_a_key_typed_into_a_question_is_not_audited(app: AppContext, analyst: UserView) -> None:
    settings: Settings = dataclasses.replace(app.settings, gemini_api_key=GEMINI_KEY)
    context = AppContext(settings)
    try:
        context.ask.draft(analyst, f"replies by persona {GEMINI_KEY}")
    finally:
        context.close()
    [event] = ask_events(app)
    assert GEMINI_KEY not in json.dumps(event.details)
