"""Typed SQLAlchemy 2.0 models: users and their sign-in sessions, personas (versioned), chat
sessions, messages, AI jobs, feedback, workbench notebooks, prompt runs (comparisons, test sets) and
the audit trail, internal notes on feedback, evaluations (eval runs, their per-case verdicts, the
judge's calibration against people's votes), boards of pinned workbench results. Every timestamp
is UTC."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from nexus_core.db.columns import JSONType, UTCDateTime, utc_now

MESSAGE_ROLES = ("user", "assistant", "error")
SESSION_STATUSES = ("active", "archived")
JOB_STATUSES = ("queued", "running", "retrying", "succeeded", "failed")
FEEDBACK_CATEGORIES = ("bug", "performance", "ux", "content", "suggestion", "other")
FEEDBACK_PRIORITIES = ("low", "medium", "high", "critical")
FEEDBACK_STATUSES = ("open", "in_progress", "resolved", "closed")
RUN_KINDS = ("compare", "test_set", "eval")
# An eval case's outcome: the new reply won, tied or lost against the baseline, or was not judged.
EVAL_OUTCOMES = ("win", "tie", "loss", "unjudged")
EVAL_STATUSES = ("replaying", "judging", "finished", "failed")
CHANNELS = ("chat", "compare", "test_set", "eval", "cli")
BUDGET_SCOPES = ("user", "persona")
# Why a sign-in session ended: the user signed out, their password changed, or they were disabled.
SESSION_END_REASONS = ("sign_out", "password", "disabled")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_uuid() -> str:
    """A new random UUID as a string (the public id of sessions and jobs)."""
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints predictably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)


class User(TimestampMixin, Base):
    """A person who signs in; ``role`` decides the pages, ``features`` the optional extras."""

    __tablename__ = "users"
    # One Nexus user per single sign-on identity (issuer and subject together name a person).
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="member")
    features: Mapped[dict[str, bool]] = mapped_column(JSONType, default=dict)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The single sign-on identity (the ID token's ``iss`` and ``sub``); None for password users.
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))


class AuthSession(Base):
    """One sign-in: the browser session that signed in and, once claimed, its login cookie.

    Only keyed hashes are stored: of the cookie's random token (``token_hash``, set when the
    browser claims its cookie) and of the one-time code that claims it (``handoff_hash``). A
    session is valid while it has not ended and ``expires_at`` (fixed when it was issued) is ahead.
    Ids are never reused (AUTOINCREMENT on SQLite), so a browser still holding the id of a pruned
    session can never find another one under it.
    """

    __tablename__ = "auth_sessions"
    __table_args__ = (
        Index("ix_auth_sessions_user_id", "user_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str | None] = mapped_column(String(16))  # ``password`` or ``oidc``

    user: Mapped[User] = relationship()


class Persona(TimestampMixin, Base):
    """An AI persona; the columns hold its current version, ``PersonaVersion`` keeps every one."""

    __tablename__ = "personas"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    system_instruction: Mapped[str] = mapped_column(Text)
    avatar: Mapped[str] = mapped_column(String(16), default="🤖")
    color: Mapped[str] = mapped_column(String(7), default="#4F46E5")
    model: Mapped[str | None] = mapped_column(String(80))
    temperature: Mapped[float] = mapped_column(Float, default=0.7)
    version: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    versions: Mapped[list[PersonaVersion]] = relationship(
        back_populates="persona", order_by="PersonaVersion.version"
    )


class PersonaVersion(Base):
    """One saved version of a persona; sessions point at the version they started with."""

    __tablename__ = "persona_versions"
    __table_args__ = (UniqueConstraint("persona_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    system_instruction: Mapped[str] = mapped_column(Text)
    avatar: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(7))
    model: Mapped[str | None] = mapped_column(String(80))
    temperature: Mapped[float] = mapped_column(Float)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)

    persona: Mapped[Persona] = relationship(back_populates="versions")


class ChatSession(TimestampMixin, Base):
    """A conversation of one user with one persona version.

    A session with a ``run_id`` (a ``PromptRun``) is hidden: it holds one variant's answer in a
    comparison, or in one case of a test set, and never shows in the chat page. Its ``provider``,
    ``model`` and ``temperature`` override the app's provider and the persona's settings for its
    replies (null: no override); ``instruction`` replaces the persona's system instruction (an eval
    judge's session).
    """

    __tablename__ = "chat_sessions"
    __table_args__ = (
        Index("ix_chat_sessions_user_updated", "user_id", "updated_at"),
        Index("ix_chat_sessions_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id"))
    persona_version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    status: Mapped[str] = mapped_column(String(16), default="active")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Not a foreign key: SQLite can add one to an existing table only by rebuilding it, and the
    # rebuild (with foreign keys on) would cascade-delete every message. Runs are never deleted
    # on their own; a user's runs and sessions go together with the user.
    run_id: Mapped[str | None] = mapped_column(String(36))
    variant_position: Mapped[int | None] = mapped_column(Integer)
    case_index: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(80))
    temperature: Mapped[float | None] = mapped_column(Float)
    instruction: Mapped[str | None] = mapped_column(Text)

    persona: Mapped[Persona] = relationship()
    user: Mapped[User] = relationship()


class Message(Base):
    """A user message, an assistant reply or an error bubble."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_session_created", "session_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The user message a reply or error bubble answers.
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    model: Mapped[str | None] = mapped_column(String(80))
    provider: Mapped[str | None] = mapped_column(String(32))
    persona_version: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    # Token counts as the provider reported them (None: it did not say). ``tokens_in`` is all input
    # (cached included), ``tokens_out`` the visible output; reasoning is billed as output.
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    cached_input_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    # USD at the price in effect when the reply was stored; None: the model had no price.
    cost_usd: Mapped[float | None] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(String(32))


class AiJob(TimestampMixin, Base):
    """The stored state of one AI response job, so any page can show its progress."""

    __tablename__ = "ai_jobs"
    __table_args__ = (Index("ix_ai_jobs_status", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    session_id: Mapped[int] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    user_message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=4)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(80))
    # Where the job came from: chat, compare, test_set, eval or cli (see CHANNELS).
    channel: Mapped[str] = mapped_column(String(16), default="chat", server_default="chat")
    # host:pid:token of the process whose worker runs the job (for crash recovery).
    owner: Mapped[str | None] = mapped_column(String(160))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reply_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Feedback(TimestampMixin, Base):
    """A user's report on a reply, a session or the app, triaged by product managers."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_status_priority", "status", "priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="SET NULL")
    )
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    category: Mapped[str] = mapped_column(String(16), default="other")
    priority: Mapped[str] = mapped_column(String(16), default="medium")
    status: Mapped[str] = mapped_column(String(16), default="open")
    rating: Mapped[int | None] = mapped_column(Integer)  # thumbs: 1 up, 0 down
    description: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuditEvent(Base):
    """One append-only line of the audit trail: who did what to which object, and when."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The hash chain (``nexus_core.audit_chain``): place in the chain, the previous event's
    # SHA-256 and this one's; null only until the writing transaction commits.
    seq: Mapped[int | None] = mapped_column(Integer, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The newest link of the audit hash chain (one row): the row writers lock to append."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Notebook(TimestampMixin, Base):
    """A workbench notebook: an ordered list of SQL and markdown cells, private unless shared."""

    __tablename__ = "notebooks"
    __table_args__ = (Index("ix_notebooks_owner_id", "owner_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(120))
    # The JSON form of the cells (``nexus_core.workbench.cells.cells_to_json``), in order.
    cells: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Its declared inputs (``nexus_core.workbench.parameters.parameters_to_json``), in order.
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, default=list, server_default="[]"
    )
    # Shared notebooks are readable (never editable) by every analyst and admin.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)

    owner: Mapped[User] = relationship()


class TestSet(TimestampMixin, Base):
    """A named list of prompts with the checks their replies must pass; only its owner edits it."""

    __test__ = False  # not a pytest test class, despite its name
    __tablename__ = "test_sets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    # The JSON form of the cases (``nexus_core.compare.checks.cases_to_json``), in order.
    cases: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class PromptRun(Base):
    """One comparison (a prompt sent to several variants), one run of a test set, or one eval run
    (a test set replayed and judged against its baselines, see ``EvalRun``)."""

    __tablename__ = "prompt_runs"
    __table_args__ = (
        Index("ix_prompt_runs_user_created", "user_id", "created_at"),
        Index("ix_prompt_runs_test_set_id", "test_set_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    prompt: Mapped[str | None] = mapped_column(Text)  # a comparison's prompt
    # A comparison's shared history before the prompt: [{"role": ..., "content": ...}].
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    tag: Mapped[str | None] = mapped_column(String(40))
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    test_set_id: Mapped[int | None] = mapped_column(ForeignKey("test_sets.id", ondelete="SET NULL"))
    test_set_name: Mapped[str | None] = mapped_column(String(120))
    # A test-set run's cases as they were when it ran (the set may change or go later).
    cases: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class RunVariant(Base):
    """One variant of a run: a persona version, a provider and model, a temperature, resolved.

    ``label`` names the variant readably and identifies it on the leaderboard.
    """

    __tablename__ = "run_variants"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("prompt_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    persona_id: Mapped[int] = mapped_column(ForeignKey("personas.id"))
    persona_version: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(80))
    temperature: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(200))


class CompareVote(Base):
    """One person's judgement of a comparison: the best reply and/or good/bad ratings with notes.

    ``ratings`` maps a variant position (as text) to ``{"good": bool, "note": str}``.
    """

    __tablename__ = "compare_votes"
    __table_args__ = (
        UniqueConstraint("run_id", "user_id"),
        Index("ix_compare_votes_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("prompt_runs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    best_position: Mapped[int | None] = mapped_column(Integer)
    ratings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


# Internal notes on feedback: what the triage team writes about an item, never shown to its author.
class FeedbackNote(Base):
    """One internal note on a feedback item, by an analyst or admin."""

    __tablename__ = "feedback_notes"
    __table_args__ = (Index("ix_feedback_notes_feedback_created", "feedback_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class ModelPrice(Base):
    """One version of a model's price, in USD per million tokens, effective from a day (UTC).

    Rows are only added: a new price is a new row, so the cost stored with each reply (at the
    price in effect when it ran) is never rewritten. ``model`` is an exact name or a prefix
    ending in ``*``.
    """

    __tablename__ = "model_prices"
    __table_args__ = (
        UniqueConstraint("model", "effective_from", name="uq_model_prices_model_effective_from"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(120))
    input_usd: Mapped[float] = mapped_column(Float)
    cached_input_usd: Mapped[float | None] = mapped_column(Float)
    output_usd: Mapped[float] = mapped_column(Float)
    effective_from: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    created_by: Mapped[str | None] = mapped_column(String(80))


class Budget(TimestampMixin, Base):
    """A monthly spending limit in USD for one user or one persona; ``hard`` stops new messages."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("scope", "target_id", name="uq_budgets_scope_target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # BUDGET_SCOPES
    target_id: Mapped[int] = mapped_column(Integer)  # users.id or personas.id
    monthly_usd: Mapped[float] = mapped_column(Float)
    hard: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(80))


class BudgetCrossing(Base):
    """That a budget's spend reached a share (80 or 100 %) in a month: each is told once."""

    __tablename__ = "budget_crossings"
    __table_args__ = (
        UniqueConstraint("budget_id", "month", "percent", name="uq_budget_crossings_once"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM (UTC)
    percent: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class EvalRun(Base):
    """What an eval run (a ``PromptRun`` of kind ``eval``) adds: its baseline, its judge, how far
    it has got and its aggregate verdict.

    Variant 0 of the run is the version under test; variants 1 and 2 are the judge asked with the
    new reply shown first and second. ``baseline`` is null for the frozen original replies, else
    the id of the run whose replies are the baseline. ``summary`` holds the aggregate
    (``nexus_core.eval.runs``), ``calibration`` the blind-vote pairs judged along with the cases.
    """

    __tablename__ = "eval_runs"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("prompt_runs.id", ondelete="CASCADE"), primary_key=True
    )
    baseline: Mapped[str | None] = mapped_column(String(36))
    judge_provider: Mapped[str] = mapped_column(String(32))
    judge_model: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="replaying")  # EVAL_STATUSES
    error: Mapped[str | None] = mapped_column(Text)
    calibration: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EvalVerdict(Base):
    """The judged outcome of one case of an eval run, both orders' answers and the judge's reasons.

    ``first`` and ``second`` are the judge's pick with the new reply shown first and second
    (``new``, ``baseline``, ``tie``, or null when that call failed or was unreadable).
    """

    __tablename__ = "eval_verdicts"
    __table_args__ = (UniqueConstraint("run_id", "case_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("prompt_runs.id", ondelete="CASCADE"))
    case_index: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # EVAL_OUTCOMES
    order_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    first: Mapped[str | None] = mapped_column(String(16))
    second: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline_passed: Mapped[bool | None] = mapped_column(Boolean)
    failures: Mapped[list[Any]] = mapped_column(JSONType, default=list)


class JudgeCalibration(Base):
    """A judge's verdict on one pair of replies of a blind comparison (positions ``first`` <
    ``second``), kept so that its agreement with people's votes is computed without asking again.

    ``judge`` names the judge (``provider · model``); ``verdict`` is ``first``, ``second``,
    ``tie`` or ``none`` (a call failed).
    """

    __tablename__ = "judge_calibrations"
    __table_args__ = (
        UniqueConstraint(
            "compare_run_id", "first", "second", "judge", name="uq_judge_calibrations_pair"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    compare_run_id: Mapped[str] = mapped_column(ForeignKey("prompt_runs.id", ondelete="CASCADE"))
    first: Mapped[int] = mapped_column(Integer)
    second: Mapped[int] = mapped_column(Integer)
    judge: Mapped[str] = mapped_column(String(120))
    verdict: Mapped[str] = mapped_column(String(16))
    order_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    reasons: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class AlertRule(TimestampMixin, Base):
    """What to watch and when to tell people: a kind of measurement (``nexus_core.alerts.rules``)
    with its parameters, a threshold, a severity, how missing data counts and how long a breach
    must last before it fires; ``silenced_until`` mutes its notifications (audited)."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # alerts.rules.RULE_KINDS
    severity: Mapped[str] = mapped_column(String(16))  # page | ticket
    threshold: Mapped[float] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    missing_data: Mapped[str] = mapped_column(String(16), default="ok")  # ok | breaching | keep
    for_minutes: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    silenced_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    silence_reason: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(80))


class Alert(Base):
    """One episode of a rule breaching: pending, then firing, then resolved (a pending alert
    whose breach ends before ``for_minutes`` resolves without ever firing)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_rule_state", "rule_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # pending | firing | resolved
    severity: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timeline: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    links: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # app paths


class AlertNotification(Base):
    """A message about an alert, claimed once: the unique (alert, state, sequence) is what keeps
    two evaluators from ever sending the same message twice (sequence > 0: a re-notification)."""

    __tablename__ = "alert_notifications"
    __table_args__ = (
        UniqueConstraint("alert_id", "state", "sequence", name="uq_alert_notifications_once"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # firing | resolved
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | silenced | none
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class AlertDelivery(Base):
    """One webhook's answer to one notification: sent, or failed with the reason."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("alert_notifications.id", ondelete="CASCADE")
    )
    target: Mapped[str] = mapped_column(String(200))  # the webhook's host and a short hash
    status: Mapped[str] = mapped_column(String(16))  # sent | failed
    attempts: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class AlertWebhook(Base):
    """A webhook URL added on the Alerts page (``NEXUS_ALERT_WEBHOOK_URLS`` adds more)."""

    __tablename__ = "alert_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    created_by: Mapped[str | None] = mapped_column(String(80))


class SchedulerLease(Base):
    """Who runs a periodic task in a deployment of several processes, until when."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Board(TimestampMixin, Base):
    """A page of pinned workbench results: its owner's alone, or shared with analysts and admins."""

    __tablename__ = "boards"
    __table_args__ = (Index("ix_boards_owner_id", "owner_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(120))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)

    owner: Mapped[User] = relationship()


class BoardPin(Base):
    """One pinned cell: enough of its notebook to run it on its own, and how often to refresh."""

    __tablename__ = "board_pins"
    __table_args__ = (Index("ix_board_pins_board_id", "board_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("boards.id", ondelete="CASCADE"))
    pinned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(120))
    # The pinned cell and the named cells it reads (``cells_to_json``), in run order.
    cells: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    cell_id: Mapped[str] = mapped_column(String(64))
    # The parameters those cells use (``parameters_to_json``) and the values chosen (text forms).
    parameters: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    chosen: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    chart: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    refresh: Mapped[str] = mapped_column(String(16))  # hourly | daily | manual
    notebook_id: Mapped[int | None] = mapped_column(ForeignKey("notebooks.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class BoardPinResult(Base):
    """A pin's last result as one class of viewer sees it (``admin`` or ``analyst``): the rows
    kept as Parquet, or the error; one row per pin and visibility."""

    __tablename__ = "board_pin_results"
    __table_args__ = (UniqueConstraint("pin_id", "visibility"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pin_id: Mapped[int] = mapped_column(ForeignKey("board_pins.id", ondelete="CASCADE"))
    visibility: Mapped[str] = mapped_column(String(16))
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rows: Mapped[bytes | None] = mapped_column(LargeBinary)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
