"""The stored state of AI response jobs: every transition of a job is one short transaction.

    queued → running ⇄ retrying → succeeded | failed

A finished job points at its reply: the assistant message, or the error bubble that tells the
user why there is none. Jobs record the process that runs them (``host:pid:token``) so that, at
start-up, the unfinished jobs of a dead process can be failed and then retried.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from nexus_core.ai.response import HistoryItem, ResponseResult
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, ChatSession, Message, Persona, PersonaVersion
from nexus_core.db.types import utc_now
from nexus_core.errors import NotFound, ValidationError
from nexus_core.personas import PersonaView
from nexus_core.users import UserView

ACTIVE_STATES = ("queued", "running", "retrying")
HISTORY_BATCH = 64
INTERRUPTED_MESSAGE = "The reply was interrupted because the server restarted. Press Retry."


def process_owner() -> str:
    """host:pid:token naming this process, stored on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class JobView:
    """A job's stored state as plain data."""

    id: str
    session_id: int
    user_message_id: int
    status: str
    attempt: int
    max_attempts: int
    next_retry_at: datetime | None
    last_error: str | None
    error_type: str | None
    reply_message_id: int | None
    created_at: datetime
    finished_at: datetime | None


def job_view(job: AiJob) -> JobView:
    """Copy an ``AiJob`` row into a ``JobView``."""
    return JobView(
        id=job.id,
        session_id=job.session_id,
        user_message_id=job.user_message_id,
        status=job.status,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        next_retry_at=job.next_retry_at,
        last_error=job.last_error,
        error_type=job.error_type,
        reply_message_id=job.reply_message_id,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


@dataclass(frozen=True)
class JobInput:
    """What a running job needs: who asked, the persona version and the history to answer."""

    job_id: str
    chat_id: int
    user_message_id: int
    session_public_id: str
    user_id: int | None
    persona: PersonaView
    history: list[HistoryItem]
    started_from: datetime  # when the user asked: the message, or the Retry press


@dataclass(frozen=True)
class StaleJob:
    """A job failed at start-up because its process died."""

    job_id: str
    session_public_id: str | None
    user_id: int | None
    attempts: int


class JobStore:
    """Creates jobs and records their transitions."""

    def __init__(
        self, db: Database, owner: str, max_attempts: int, budget_chars: int = 24_000
    ) -> None:
        self.db = db
        self.owner = owner
        self.max_attempts = max_attempts
        self.budget_chars = budget_chars

    def create(
        self, user_message_id: int, user: UserView, provider: str, *, retry_of: str | None = None
    ) -> tuple[str, str]:
        """A queued job answering a user message; returns (job id, session public id)."""
        with self.db.session() as session:
            if retry_of is not None:
                old = session.get(AiJob, retry_of)
                if old is None:
                    raise NotFound("No such reply job.")
                if old.status != "failed":
                    raise ValidationError("Only a failed reply can be retried.")
                user_message_id = old.user_message_id
            message = session.get(Message, user_message_id)
            if message is None or message.role != "user":
                raise NotFound("There is no such user message to answer.")
            chat = session.get(ChatSession, message.session_id)
            if (
                chat is None
                or chat.deleted_at is not None
                or (chat.user_id != user.id and not user.is_admin)
            ):
                raise NotFound("That chat session does not exist or is not yours.")
            job = AiJob(
                session_id=chat.id,
                user_message_id=message.id,
                status="queued",
                max_attempts=self.max_attempts,
                owner=self.owner,
                user_id=user.id,
                provider=provider,
            )
            session.add(job)
            session.flush()
            return job.id, chat.public_id

    def get(self, job_id: str) -> JobView:
        """The stored state of a job."""
        with self.db.session() as session:
            job = session.get(AiJob, job_id)
            if job is None:
                raise NotFound("No such reply job.")
            return job_view(job)

    def for_session(self, chat_id: int) -> list[JobView]:
        """Every job of a session, oldest first."""
        with self.db.session() as session:
            rows = session.scalars(
                select(AiJob).where(AiJob.session_id == chat_id).order_by(AiJob.created_at)
            )
            return [job_view(j) for j in rows]

    def start(self, job_id: str) -> JobInput:
        """Mark the job running and load the persona version and history it answers."""
        query = (
            select(AiJob, ChatSession, Persona, PersonaVersion, Message.created_at)
            .join(ChatSession, ChatSession.id == AiJob.session_id)
            .join(Persona, Persona.id == ChatSession.persona_id)
            .join(Message, Message.id == AiJob.user_message_id)
            .outerjoin(
                PersonaVersion,
                and_(
                    PersonaVersion.persona_id == Persona.id,
                    PersonaVersion.version == ChatSession.persona_version,
                ),
            )
            .where(AiJob.id == job_id)
        )
        with self.db.session() as session:
            found = session.execute(query).one_or_none()
            if found is None:
                raise NotFound(f"No reply job {job_id} with a session and persona.")
            job, chat, persona, version, asked_at = found
            src = version or persona
            persona_view = PersonaView(
                id=persona.id,
                name=persona.name,
                description=src.description,
                system_instruction=src.system_instruction,
                avatar=src.avatar,
                color=src.color,
                model=src.model,
                temperature=src.temperature,
                version=chat.persona_version,
                active=persona.active,
            )
            history = self._history(session, chat.id, job.user_message_id)
            earlier_jobs = session.scalar(
                select(func.count())
                .select_from(AiJob)
                .where(AiJob.user_message_id == job.user_message_id, AiJob.id != job.id)
            )
            job.status = "running"
            job.attempt = 1
            job.started_at = utc_now()
            job.owner = self.owner
            return JobInput(
                job_id=job.id,
                chat_id=chat.id,
                user_message_id=job.user_message_id,
                session_public_id=chat.public_id,
                user_id=job.user_id,
                persona=persona_view,
                history=history,
                # A retry is timed from the Retry press, a first answer from the message.
                started_from=job.created_at if earlier_jobs else asked_at,
            )

    def _history(self, session: Session, chat_id: int, upto_id: int) -> list[HistoryItem]:
        """The newest user/assistant messages up to ``upto_id`` that can fit the budget.

        Reads newest first and stops once the budget is spent, so a long session costs no more
        than a short one; the response service makes the final cut.
        """
        query = (
            select(Message.role, Message.content)
            .where(
                Message.session_id == chat_id,
                Message.id <= upto_id,
                Message.role.in_(("user", "assistant")),
            )
            .order_by(Message.id.desc())
            .execution_options(yield_per=HISTORY_BATCH)
        )
        newest_first: list[HistoryItem] = []
        used = 0
        for role, content in session.execute(query):
            newest_first.append(HistoryItem(role, content))
            used += len(content)
            if used > self.budget_chars:
                break
        newest_first.reverse()
        return newest_first

    def attempt(self, job_id: str, number: int) -> None:
        """Record that retry attempt ``number`` is under way (``start`` records the first)."""
        with self.db.session() as session:
            job = session.get(AiJob, job_id)
            if job is not None:
                job.attempt = number
                job.status = "running"
                job.next_retry_at = None

    def retrying(self, job_id: str, delay_seconds: float, result: ResponseResult) -> None:
        """Record a failed attempt that will be retried after ``delay_seconds``."""
        with self.db.session() as session:
            job = session.get(AiJob, job_id)
            if job is not None:
                job.status = "retrying"
                job.next_retry_at = utc_now() + timedelta(seconds=delay_seconds)
                job.last_error = str(result.error) if result.error else None
                job.error_type = result.error_type

    def succeed(self, job: JobInput, result: ResponseResult, attempts: int, provider: str) -> float:
        """Store the reply and finish the job; returns the latency the user waited, in ms."""
        stored_at = utc_now()
        latency_ms = (stored_at - job.started_from).total_seconds() * 1000
        with self.db.session() as session:
            reply = Message(
                session_id=job.chat_id,
                role="assistant",
                content=result.content,
                created_at=stored_at,
                reply_to_id=job.user_message_id,
                model=result.model,
                provider=provider,
                persona_version=job.persona.version,
                latency_ms=latency_ms,
                ttft_ms=result.ttft_ms,
                tokens_in=result.usage.tokens_in,
                tokens_out=result.usage.tokens_out,
                finish_reason=result.finish_reason,
            )
            session.add(reply)
            session.flush()
            session.execute(
                update(AiJob)
                .where(AiJob.id == job.job_id)
                .values(
                    status="succeeded",
                    attempt=attempts,
                    model=result.model,
                    reply_message_id=reply.id,
                    finished_at=stored_at,
                    next_retry_at=None,
                    updated_at=stored_at,
                )
            )
            session.execute(
                update(ChatSession)
                .where(ChatSession.id == job.chat_id)
                .values(updated_at=stored_at)
            )
        return latency_ms

    def fail(
        self, job_id: str, attempts: int, error_type: str, message: str, provider: str | None
    ) -> None:
        """Store an error bubble with the reason and finish the job as failed."""
        with self.db.session() as session:
            row = session.get(AiJob, job_id)
            if row is None:
                raise NotFound(job_id)
            self._fail_row(session, row, attempts, error_type, message, provider)

    @staticmethod
    def _fail_row(
        session,
        row: AiJob,
        attempts: int,
        error_type: str,  # type: ignore[no-untyped-def]
        message: str,
        provider: str | None,
    ) -> None:
        bubble = Message(
            session_id=row.session_id,
            role="error",
            content=message,
            reply_to_id=row.user_message_id,
            provider=provider,
        )
        session.add(bubble)
        session.flush()
        row.status, row.attempt = "failed", attempts
        row.last_error, row.error_type = message, error_type
        row.reply_message_id = bubble.id
        row.finished_at = bubble.created_at
        row.next_retry_at = None

    def fail_stale(self) -> list[StaleJob]:
        """Fail the unfinished jobs of dead processes on this host (not other hosts' jobs)."""
        host = socket.gethostname()
        failed: list[StaleJob] = []
        with self.db.session() as session:
            rows = session.scalars(select(AiJob).where(AiJob.status.in_(ACTIVE_STATES))).all()
            for row in rows:
                owner_host, _, rest = (row.owner or "").partition(":")
                pid_text = rest.split(":", 1)[0]
                if row.owner == self.owner or owner_host != host:
                    continue
                pid = int(pid_text) if pid_text.isdigit() else None
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    continue
                self._fail_row(
                    session, row, row.attempt, "interrupted", INTERRUPTED_MESSAGE, row.provider
                )
                chat = session.get(ChatSession, row.session_id)
                failed.append(
                    StaleJob(row.id, chat.public_id if chat else None, row.user_id, row.attempt)
                )
        return failed
