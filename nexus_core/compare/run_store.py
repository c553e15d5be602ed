"""The stored side of prompt runs: the run, its hidden sessions and jobs, and their replies.

Starting a run is one transaction: the run, its variants, one hidden chat session per prompt and
variant holding its messages (the shared history, then the prompt), the audit record and one
queued reply job per session. The jobs start on the worker only once it has committed, so they
always find their rows. A session's reply is its newest job's: a retried variant shows the retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.progress import FINISHED_STATES
from nexus_core.ai.response import HistoryItem
from nexus_core.chat import title_from
from nexus_core.compare.variants import VariantView
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, ChatSession, Message, Persona, PromptRun, RunVariant
from nexus_core.errors import NotFound
from nexus_core.users import UserView

RUN_NOT_FOUND: Final = "That run does not exist or is not yours."
AUDIT_TARGET: Final = "prompt_run"
NOT_STARTED: Final = "queued"  # a session whose job row is missing shows as waiting

# Every session of a run with its jobs (oldest first) and each job's reply or error bubble.
RUN_REPLIES: Final = (
    select(
        ChatSession.id.label("chat_id"),
        ChatSession.public_id,
        ChatSession.variant_position,
        ChatSession.case_index,
        AiJob.id.label("job_id"),
        AiJob.status,
        AiJob.attempt,
        AiJob.max_attempts,
        AiJob.last_error,
        AiJob.error_type,
        Message.role,
        Message.content,
        Message.latency_ms,
        Message.ttft_ms,
        Message.tokens_in,
        Message.tokens_out,
        Message.model,
    )
    .outerjoin(AiJob, AiJob.session_id == ChatSession.id)
    .outerjoin(Message, Message.id == AiJob.reply_message_id)
    .where(ChatSession.run_id == bindparam("run_id"))
    .order_by(ChatSession.id, AiJob.created_at)
)
# The same, only the states: cheap enough for a progress bar to poll.
RUN_STATES: Final = (
    select(ChatSession.id, AiJob.status)
    .outerjoin(AiJob, AiJob.session_id == ChatSession.id)
    .where(ChatSession.run_id == bindparam("run_id"))
    .order_by(ChatSession.id, AiJob.created_at)
)
RUN_VARIANTS: Final = (
    select(RunVariant, Persona.name)
    .join(Persona, Persona.id == RunVariant.persona_id)
    .where(RunVariant.run_id == bindparam("run_id"))
    .order_by(RunVariant.position)
)

CellKey = tuple[int | None, int]  # (case index or None for a comparison, variant position)


@dataclass(frozen=True)
class ReplyView:
    """One hidden session's answer: its newest job's state, then the reply or the error.

    ``status`` is the job's (queued, running, retrying, succeeded, failed); ``error`` is the
    reason a failed job gave, or while retrying the failure being retried. Stream the text of a
    running job with ``worker.broker.text(job_id)``.
    """

    session_id: str
    job_id: str | None
    status: str
    attempt: int
    max_attempts: int
    text: str | None
    error: str | None
    error_type: str | None
    latency_ms: float | None
    ttft_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    model: str | None

    @property
    def finished(self) -> bool:
        """Whether the job has ended, with a reply or with a failure."""
        return self.status in FINISHED_STATES

    @property
    def succeeded(self) -> bool:
        """Whether the reply arrived."""
        return self.status == "succeeded"


class RunProgress(NamedTuple):
    """How many of a run's replies have finished (arrived or failed), out of how many."""

    done: int
    total: int


@dataclass(frozen=True)
class NewSession:
    """A hidden session to create: which case (None in a comparison) and variant, and what to ask
    after which history."""

    position: int
    case_index: int | None
    prompt: str
    history: Sequence[HistoryItem] = ()


class RunStore:
    """Creates runs with their hidden sessions and jobs, and reads their replies back."""

    def __init__(self, db: Database, worker: ResponseWorker, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.worker = worker
        self.clock = clock

    def create(
        self,
        user: UserView,
        run: PromptRun,
        variants: Sequence[VariantView],
        sessions: Sequence[NewSession],
        *,
        lane: str,
        action: str,
        details: dict[str, Any],
        extras: Sequence[object] = (),
    ) -> None:
        """Store ``run`` (its ``id`` set) with everything it needs, and the ``extras`` rows that
        belong to it (an eval run's), then start its jobs."""
        by_position = {variant.position: variant for variant in variants}
        run.created_at = now = self.clock()
        with self.db.session() as session:
            session.add(run)
            session.add_all(_variant_row(run.id, variant) for variant in variants)
            session.flush()
            session.add_all(extras)
            chats = [
                _hidden_session(user, run.id, by_position[s.position], s, now) for s in sessions
            ]
            session.add_all(chats)
            session.flush()
            asked = [
                _add_messages(session, chat, spec, now)
                for chat, spec in zip(chats, sessions, strict=True)
            ]
            session.flush()  # one INSERT for all messages, ids in the order they were added
            audit.record(
                session,
                action,
                actor_id=user.id,
                actor_name=user.username,
                target_type=AUDIT_TARGET,
                target_id=run.id,
                details=details,
                at=now,
            )
            jobs = self.worker.create_jobs(
                session.connection(), [m.id for m in asked], user, channel=run.kind
            )
        self.worker.submit(jobs, user, lane=lane)

    def load(self, session: Session, user: UserView, run_id: str, kind: str) -> PromptRun:
        """The run if it is of ``kind`` and the user may see it (owner or admin)."""
        run = session.get(PromptRun, run_id)
        if run is None or run.kind != kind or (run.user_id != user.id and not user.is_admin):
            raise NotFound(RUN_NOT_FOUND)
        return run

    def variants(self, session: Session, run_id: str) -> list[VariantView]:
        """The run's variants in position order."""
        return [
            _variant_view(row, name)
            for row, name in session.execute(RUN_VARIANTS, {"run_id": run_id})
        ]

    def replies(self, session: Session, run_id: str) -> dict[CellKey, ReplyView]:
        """Each hidden session's reply, by (case index, variant position)."""
        newest: dict[int, Any] = {}
        for row in session.execute(RUN_REPLIES, {"run_id": run_id}):
            newest[row.chat_id] = row  # jobs come oldest first: the last one wins
        return {(row.case_index, row.variant_position): _reply(row) for row in newest.values()}

    def progress(self, run_id: str) -> RunProgress:
        """How many of the run's replies have finished, out of how many sessions."""
        with self.db.session() as session:
            states: dict[int, str | None] = {}
            for chat_id, status in session.execute(RUN_STATES, {"run_id": run_id}):
                states[chat_id] = status
        return RunProgress(sum(s in FINISHED_STATES for s in states.values()), len(states))

    def wait(self, job_ids: Iterable[str | None], timeout: float | None) -> None:
        """Block until the jobs (run by this process) end, or ``timeout`` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job_id in job_ids:
            if job_id is None:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self.worker.wait(job_id, timeout=remaining)
            except TimeoutError:
                return


def _variant_row(run_id: str, variant: VariantView) -> RunVariant:
    return RunVariant(
        run_id=run_id,
        position=variant.position,
        persona_id=variant.persona_id,
        persona_version=variant.persona_version,
        provider=variant.provider,
        model=variant.model,
        temperature=variant.temperature,
        label=variant.label,
    )


def _variant_view(row: RunVariant, persona: str) -> VariantView:
    return VariantView(
        position=row.position,
        label=row.label,
        persona=persona,
        persona_id=row.persona_id,
        persona_version=row.persona_version,
        provider=row.provider,
        model=row.model,
        temperature=row.temperature,
    )


def _hidden_session(
    user: UserView, run_id: str, variant: VariantView, spec: NewSession, now: datetime
) -> ChatSession:
    return ChatSession(
        user_id=user.id,
        persona_id=variant.persona_id,
        persona_version=variant.persona_version,
        title=title_from(spec.prompt),
        run_id=run_id,
        variant_position=variant.position,
        case_index=spec.case_index,
        provider=variant.provider,
        model=variant.model,
        temperature=variant.temperature,
        created_at=now,
        updated_at=now,
    )


def _add_messages(session: Session, chat: ChatSession, spec: NewSession, now: datetime) -> Message:
    """Add the history and the prompt to a hidden session; returns the prompt's message."""
    session.add_all(
        Message(session_id=chat.id, role=item.role, content=item.content, created_at=now)
        for item in spec.history
    )
    asked = Message(session_id=chat.id, role="user", content=spec.prompt, created_at=now)
    session.add(asked)
    return asked


def _reply(row: Any) -> ReplyView:
    status = row.status or NOT_STARTED
    succeeded = status == "succeeded" and row.role == "assistant"
    bubble = row.content if row.role == "error" else None
    return ReplyView(
        session_id=row.public_id,
        job_id=row.job_id,
        status=status,
        attempt=row.attempt or 0,
        max_attempts=row.max_attempts or 0,
        text=row.content if succeeded else None,
        error=None if succeeded else bubble or row.last_error,
        error_type=None if succeeded else row.error_type,
        latency_ms=row.latency_ms if succeeded else None,
        ttft_ms=row.ttft_ms if succeeded else None,
        tokens_in=row.tokens_in if succeeded else None,
        tokens_out=row.tokens_out if succeeded else None,
        model=row.model if succeeded else None,
    )
