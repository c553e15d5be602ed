"""`AskService`: a question in plain words in, an audited draft query out; drafts run on demand.

With a real provider the configured model writes the draft (one synchronous call, no retries:
the user is waiting and can ask again) from the schema of the views this user may query; with
the offline simulated model the templates answer. Either way the draft is stored as an audit
event — question, model, SQL; never a key — and read back from it by id (``recall``), so a link
reopens it. A failed run can be sent back (``correct``): the model sees its own SQL and the
error and writes a corrected draft; the offline model says what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import polars as pl
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.ai.protocol import ChatTurn, GenerationRequest, Provider, run_stream
from nexus_core.ask import templates
from nexus_core.ask.drafts import Draft, extract_sql
from nexus_core.ask.schema import SAMPLE_ROWS, SAMPLE_SQL, describe_schema
from nexus_core.credentials import scrub
from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.users import UserView
from nexus_core.workbench.cells import ChartSpec
from nexus_core.workbench.data import view_schemas
from nexus_core.workbench.notebooks import can_use_notebooks
from nexus_core.workbench.results import DISPLAY_LIMIT, QueryResult
from nexus_core.workbench.sandbox import Workbench

MAX_QUESTION_CHARS: Final = 500
MAX_ERROR_CHARS: Final = 2_000  # of a failed run's message, sent back to the model
ASK_TEMPERATURE: Final = 0.0  # the same question should get the same query
OFFLINE_PROVIDER: Final = "simulated"
TARGET_TYPE: Final = "ask"
DRAFT_ACTIONS: Final = (audit.ASK_DRAFTED, audit.ASK_CORRECTED)
ROLE_MESSAGE: Final = (
    "Ask (and /sql in chat) is for analysts and admins: it drafts SQL over the workbench's "
    "data. Ask an admin for the analyst role."
)
EMPTY_MESSAGE: Final = "Type a question first, for example “replies by persona per day”."
TOO_LONG_MESSAGE: Final = f"Keep the question under {MAX_QUESTION_CHARS} characters."
NOT_FOUND_MESSAGE: Final = "Draft #{id} does not exist or is not yours; ask the question again."
SYSTEM_PROMPT: Final = """You write SQL for the Nexus AI analytics workbench (DuckDB, read-only).
Answer with exactly one query — one SELECT, or WITH … SELECT — in one ```sql fenced block, and \
nothing else. Use only the views and columns listed below. Times are naive UTC TIMESTAMPs; the \
current time is now()::TIMESTAMP. Name every computed column. Aggregate where you can; a list \
of rows ends in ORDER BY and LIMIT 1000. If the views cannot answer the question, write the \
closest useful query and say what it leaves out in a SQL comment.

Views:
{schema}"""
CORRECTION_PROMPT: Final = """Running that query failed with this error:
{error}

Write a corrected query, again in one ```sql fenced block."""
# A quoted literal in an error message; one the SQL does not hold came from the data.
_QUOTED: Final = re.compile(r"'(?:[^']|'')*'")


class AskService:
    """Questions in plain words to draft SQL (audited), and drafts run in the workbench."""

    def __init__(
        self,
        db: Database,
        workbench: Workbench,
        provider: Provider,
        *,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.db = db
        self.workbench = workbench
        self.provider = provider
        self._secrets = tuple(s for s in secrets if s)

    @property
    def offline(self) -> bool:
        """Whether drafts come from the templates (the simulated model) rather than a model."""
        return self.provider.name == OFFLINE_PROVIDER

    # --- drafting -------------------------------------------------------------------------------

    def draft(self, user: UserView, question: str, *, allow_samples: bool = False) -> Draft:
        """A draft query for ``question``, audited; a few rows of each view go to the model
        only with ``allow_samples`` (the offline templates never need them)."""
        _require(user)
        question = clean_question(question)
        if self.offline:
            answer = templates.answer(question)
            return self._store(
                user,
                audit.ASK_DRAFTED,
                question=question,
                sql=answer.sql,
                model=self.provider.default_model,
                source="template",
                covered=answer.covered,
                title=answer.title,
                note=answer.note,
                chart=answer.chart,
            )
        request = self.request(user, question, allow_samples=allow_samples)
        return self._from_model(user, audit.ASK_DRAFTED, question, request, allow_samples)

    def correct(self, user: UserView, draft_id: int, sql: str, error: str) -> Draft:
        """A corrected draft for ``sql`` (draft ``draft_id`` as run, perhaps edited) that failed
        with ``error``: the model's rewrite, or offline what is wrong (and the template again)."""
        previous = self.recall(user, draft_id)
        error = error.strip()[:MAX_ERROR_CHARS]
        if self.offline:
            return self._offline_correction(user, previous, sql, error)
        shown_error = error if previous.sample_rows else without_values(error, sql)
        request = self.request(user, previous.question, allow_samples=previous.sample_rows)
        turns = (
            *request.turns,
            ChatTurn(role="model", text=f"```sql\n{sql.strip()}\n```"),
            ChatTurn(role="user", text=CORRECTION_PROMPT.format(error=shown_error)),
        )
        request = GenerationRequest(
            system_instruction=request.system_instruction,
            turns=turns,
            temperature=request.temperature,
        )
        return self._from_model(
            user,
            audit.ASK_CORRECTED,
            previous.question,
            request,
            previous.sample_rows,
            corrects=previous.id,
            error=shown_error,
        )

    def request(
        self, user: UserView, question: str, *, allow_samples: bool = False
    ) -> GenerationRequest:
        """What the model is sent for ``question``: the schema of the views ``user`` may query,
        with a few rows of each only when ``allow_samples``."""
        _require(user)
        schemas = view_schemas(include_message_content=user.is_admin)
        samples = self._samples(user, list(schemas)) if allow_samples else None
        return GenerationRequest(
            system_instruction=SYSTEM_PROMPT.format(schema=describe_schema(schemas, samples)),
            turns=(ChatTurn(role="user", text=clean_question(question)),),
            temperature=ASK_TEMPERATURE,
        )

    def _from_model(
        self,
        user: UserView,
        action: str,
        question: str,
        request: GenerationRequest,
        sample_rows: bool,
        **extra: Any,
    ) -> Draft:
        result = run_stream(self.provider, request)
        return self._store(
            user,
            action,
            question=question,
            sql=extract_sql(result.text),
            model=result.model or request.model or self.provider.default_model,
            source="model",
            sample_rows=sample_rows,
            **extra,
        )

    def _offline_correction(self, user: UserView, previous: Draft, sql: str, error: str) -> Draft:
        views = list(view_schemas(include_message_content=user.is_admin))
        note = templates.explain_error(error, views)
        answer = templates.answer(previous.question)
        if answer.covered and answer.sql.strip() != sql.strip():
            sql, note = answer.sql, note + " Here is the template's query again."
        else:
            note += " Edit the query and run it again."
        return self._store(
            user,
            audit.ASK_CORRECTED,
            question=previous.question,
            sql=sql,
            model=self.provider.default_model,
            source="template",
            covered=previous.covered,
            title=previous.title,
            note=note,
            chart=previous.chart,
            corrects=previous.id,
            error=error,
        )

    def _samples(self, user: UserView, views: list[str]) -> dict[str, pl.DataFrame]:
        with self.workbench.open(include_message_content=user.is_admin) as session:
            return {
                view: session.run(
                    SAMPLE_SQL.format(view=view, rows=SAMPLE_ROWS), keep=SAMPLE_ROWS
                ).frame
                for view in views
            }

    # --- storing and reading back ---------------------------------------------------------------

    def _store(self, user: UserView, action: str, **fields: Any) -> Draft:
        """Audit the draft and return it with its id."""
        chart = fields.pop("chart", None)
        details = {
            "provider": self.provider.name,
            **fields,
            "question": self._scrub(fields["question"]),
            "sql": self._scrub(fields["sql"]),
            "chart": None if chart is None else chart.to_json(),
        }
        if "error" in details:
            details["error"] = self._scrub(details["error"])
        with self.db.session() as session:
            event = audit.record(
                session,
                action,
                actor_id=user.id,
                actor_name=user.username,
                target_type=TARGET_TYPE,
                details=details,
            )
            session.flush()
            return _draft(event)

    def recall(self, user: UserView, draft_id: int) -> Draft:
        """A draft ``user`` was given earlier (by its id, as in a link); ``NotFound`` otherwise."""
        _require(user)
        with self.db.session() as session:
            return _draft(_own_event(session, user, draft_id))

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # --- running --------------------------------------------------------------------------------

    def run(self, user: UserView, sql: str) -> QueryResult:
        """Run a draft (as the user left it) in the workbench's sandbox, like a notebook cell."""
        _require(user)
        return self.workbench.run(sql, include_message_content=user.is_admin, keep=DISPLAY_LIMIT)


def _require(user: UserView) -> None:
    if not can_use_notebooks(user):
        raise PermissionDenied(ROLE_MESSAGE)


def clean_question(question: str) -> str:
    """The question without surrounding space; refuses an empty or over-long one."""
    question = question.strip()
    if not question:
        raise ValidationError(EMPTY_MESSAGE)
    if len(question) > MAX_QUESTION_CHARS:
        raise ValidationError(TOO_LONG_MESSAGE)
    return question


def without_values(error: str, sql: str) -> str:
    """``error`` with every quoted literal that is not in ``sql`` masked: DuckDB quotes the
    value it could not convert, and that value is row data."""
    return _QUOTED.sub(lambda m: m.group(0) if m.group(0) in sql else "'…'", error)


def _own_event(session: Session, user: UserView, draft_id: int) -> AuditEvent:
    event = session.get(AuditEvent, draft_id)
    if event is None or event.action not in DRAFT_ACTIONS or event.actor_id != user.id:
        raise NotFound(NOT_FOUND_MESSAGE.format(id=draft_id))
    return event


def _draft(event: AuditEvent) -> Draft:
    details = dict(event.details or {})
    chart = details.get("chart")
    return Draft(
        id=event.id,
        question=str(details.get("question", "")),
        sql=str(details.get("sql", "")),
        model=str(details.get("model", "")),
        provider=str(details.get("provider", "")),
        created_at=event.created_at,
        source=str(details.get("source", "model")),
        covered=bool(details.get("covered", True)),
        title=str(details.get("title", "")),
        note=str(details.get("note", "")),
        chart=None if chart is None else ChartSpec.from_json(chart),
        sample_rows=bool(details.get("sample_rows", False)),
        corrects=details.get("corrects"),
    )
