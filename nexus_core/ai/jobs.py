"""`ResponseWorker`: AI response jobs run by a thread pool owned by the process.

A job is a database row (queued → running ⇄ retrying → succeeded | failed) so any page, in any
process, can show its progress; the pool is not tied to a Streamlit script run, so a rerun, a page
change or a closed tab does not cancel it. Each attempt is one provider call, logged as
``request_*`` events; transient failures are retried up to ``MAX_RETRIES`` times with tenacity:

    retry n waits  base·2^(n−1) + U(0, base)   and at least the server's hint,   capped

Permanent failures end the job at once. Success stores the assistant message; a final failure
stores an error bubble with the reason. Both notify the session's listeners through the broker.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from nexus_core.ai.progress import JobBroker, JobUpdate
from nexus_core.ai.response import GenerateResponseService, ResponseResult
from nexus_core.ai.types import Provider
from nexus_core.chat import MessageView, message_view
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, ChatSession, Message, Persona, PersonaVersion
from nexus_core.db.types import utc_now
from nexus_core.errors import NotFound, ValidationError
from nexus_core.events import EventName, EventSink
from nexus_core.personas import PersonaView
from nexus_core.users import UserView

log = logging.getLogger("nexus.jobs")

MAX_RETRIES = 3
MAX_ATTEMPTS = 1 + MAX_RETRIES
MAX_RETRY_DELAY_SECONDS = 120.0
ACTIVE_STATES = ("queued", "running", "retrying")
INTERRUPTED_MESSAGE = "The reply was interrupted because the server restarted. Press Retry."
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side while answering. Press Retry."


def backoff_seconds(retry: int, base: float, jitter: float, hint: float | None) -> float:
    """The wait before retry ``retry`` (1-based): exponential plus jitter, at least the hint."""
    delay = base * 2 ** (retry - 1) + jitter
    if hint is not None:
        delay = max(delay, hint)
    return min(delay, MAX_RETRY_DELAY_SECONDS)


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
class _JobInput:
    job_id: str
    session_public_id: str
    user_id: int | None
    persona: PersonaView
    history: list[MessageView]
    started_from: datetime  # when the user asked: the message, or the Retry press


class ResponseWorker:
    """Enqueues AI response jobs and runs them on a thread pool, with retries and events."""

    def __init__(
        self,
        db: Database,
        provider: Provider,
        events: EventSink,
        *,
        broker: JobBroker | None = None,
        retry_base_seconds: float = 1.0,
        budget_chars: int = 24_000,
        max_workers: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.provider = provider
        self.events = events
        self.broker = broker or JobBroker()
        self.retry_base_seconds = retry_base_seconds
        self.service = GenerateResponseService(provider, budget_chars=budget_chars)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.owner = process_owner()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="nexus-job")
        self._futures: dict[str, Future[JobView]] = {}
        self._lock = threading.Lock()

    # --- enqueueing -------------------------------------------------------------------------

    def enqueue(self, user_message_id: int, user: UserView) -> str:
        """Queue a reply to a stored user message; returns the job id."""
        with self.db.session() as session:
            message = session.get(Message, user_message_id)
            if message is None or message.role != "user":
                raise NotFound("There is no such user message to answer.")
            chat = session.get(ChatSession, message.session_id)
            if chat is None or (chat.user_id != user.id and not user.is_admin):
                raise NotFound("That chat session does not exist or is not yours.")
            job = self._new_job(session, chat, message, user)
        return self._submit(job.id, chat.public_id, user.id)

    def retry(self, job_id: str, user: UserView) -> str:
        """Answer the same user message again after a failed job (no duplicate message)."""
        with self.db.session() as session:
            old = session.get(AiJob, job_id)
            if old is None:
                raise NotFound("No such reply job.")
            chat = session.get(ChatSession, old.session_id)
            if chat is None or (chat.user_id != user.id and not user.is_admin):
                raise NotFound("That chat session does not exist or is not yours.")
            if old.status != "failed":
                raise ValidationError("Only a failed reply can be retried.")
            message = session.get(Message, old.user_message_id)
            assert message is not None
            job = self._new_job(session, chat, message, user)
        return self._submit(job.id, chat.public_id, user.id)

    def _new_job(
        self, session: Session, chat: ChatSession, message: Message, user: UserView
    ) -> AiJob:
        job = AiJob(
            session_id=chat.id,
            user_message_id=message.id,
            status="queued",
            max_attempts=MAX_ATTEMPTS,
            owner=self.owner,
            user_id=user.id,
            provider=self.provider.name,
        )
        session.add(job)
        session.flush()
        return job

    def _submit(self, job_id: str, session_public_id: str, user_id: int) -> str:
        self.events.emit(
            EventName.JOB_ENQUEUED,
            chat_session_id=session_public_id,
            user_id=user_id,
            job_id=job_id,
        )
        self.broker.update(JobUpdate(job_id, session_public_id, "queued", 0, MAX_ATTEMPTS))
        future = self._pool.submit(self.run, job_id)
        with self._lock:
            self._futures[job_id] = future
        future.add_done_callback(lambda _f: self._forget(job_id))
        return job_id

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until the job ends (or ``timeout``), then return its stored state."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        return self.get(job_id)

    def get(self, job_id: str) -> JobView:
        """The stored state of a job."""
        with self.db.session() as session:
            job = session.get(AiJob, job_id)
            if job is None:
                raise NotFound("No such reply job.")
            return job_view(job)

    def in_flight(self) -> int:
        """How many jobs this process is running or about to run."""
        with self._lock:
            return len(self._futures)

    # --- running ----------------------------------------------------------------------------

    def run(self, job_id: str) -> JobView:
        """Run one job to its end; never raises (unexpected errors fail the job)."""
        job_input: _JobInput | None = None
        try:
            job_input = self._start(job_id)
            result, attempts = self._attempts(job_input)
            if result.success:
                self._succeed(job_input, result, attempts)
            else:
                message = str(result.error) if result.error else INTERNAL_ERROR_MESSAGE
                if result.retryable:
                    message = f"{message} No reply after {attempts} attempts."
                self._fail(job_input, attempts, result.error_type or "unknown", message)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("job %s failed unexpectedly (reference %s)", job_id, reference)
            if job_input is not None:
                self._fail(
                    job_input,
                    self._stored_attempt(job_id),
                    "internal_error",
                    f"{INTERNAL_ERROR_MESSAGE} (reference {reference})",
                )
        return self.get(job_id)

    def _start(self, job_id: str) -> _JobInput:
        with self.db.session() as session:
            job = session.get(AiJob, job_id)
            if job is None:
                raise NotFound(job_id)
            chat = session.get(ChatSession, job.session_id)
            assert chat is not None
            persona = session.get(Persona, chat.persona_id)
            assert persona is not None
            version = session.scalar(
                select(PersonaVersion).where(
                    PersonaVersion.persona_id == persona.id,
                    PersonaVersion.version == chat.persona_version,
                )
            )
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
            rows = session.scalars(
                select(Message)
                .where(Message.session_id == chat.id, Message.id <= job.user_message_id)
                .order_by(Message.id)
            )
            history = [message_view(m) for m in rows]
            first_job = session.scalar(
                select(AiJob.id)
                .where(AiJob.user_message_id == job.user_message_id)
                .order_by(AiJob.created_at)
                .limit(1)
            )
            asked_at = history[-1].created_at if first_job == job.id else job.created_at
            job.status = "running"
            job.started_at = utc_now()
            job.owner = self.owner
            job_input = _JobInput(
                job.id, chat.public_id, job.user_id, persona_view, history, asked_at
            )
        self._emit(job_input, EventName.JOB_START, job_id=job_id)
        self.broker.update(
            JobUpdate(job_id, job_input.session_public_id, "running", 0, MAX_ATTEMPTS)
        )
        return job_input

    def _attempts(self, job: _JobInput) -> tuple[ResponseResult, int]:
        attempts = 0

        def attempt() -> ResponseResult:
            nonlocal attempts
            attempts += 1
            return self._attempt(job, attempts)

        def wait(state: RetryCallState) -> float:
            result: ResponseResult = state.outcome.result()  # type: ignore[union-attr]
            jitter = self.rng.uniform(0, self.retry_base_seconds)
            return backoff_seconds(
                state.attempt_number, self.retry_base_seconds, jitter, result.retry_after
            )

        retrying = Retrying(
            stop=stop_after_attempt(MAX_ATTEMPTS),
            wait=wait,
            retry=retry_if_result(lambda r: not r.success and r.retryable),
            before_sleep=lambda state: self._before_retry(job, state),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            sleep=self.sleep,
        )
        return retrying(attempt), attempts

    def _attempt(self, job: _JobInput, number: int) -> ResponseResult:
        request_id = str(uuid.uuid4())
        with self.db.session() as session:
            row = session.get(AiJob, job.job_id)
            assert row is not None
            row.attempt = number
            row.status = "running"
            row.next_retry_at = None
        model = (
            job.persona.model
            if self.provider.name == "gemini" and job.persona.model
            else (self.provider.default_model)
        )
        self._emit(
            job,
            EventName.REQUEST_START,
            request_id=request_id,
            attempt=number,
            model=model,
            provider=self.provider.name,
        )
        self.broker.restart(job.job_id)
        result = self.service.generate(
            job.persona, job.history, on_delta=lambda d: self.broker.delta(job.job_id, d)
        )
        if result.success:
            self._emit(
                job,
                EventName.REQUEST_SUCCESS,
                request_id=request_id,
                attempt=number,
                latency_ms=round(result.latency_ms, 3),
                status_code=result.status_code,
                tokens_in=result.usage.tokens_in,
                tokens_out=result.usage.tokens_out,
                ttft_ms=None if result.ttft_ms is None else round(result.ttft_ms, 3),
            )
        else:
            self._emit(
                job,
                EventName.REQUEST_FAILURE,
                request_id=request_id,
                attempt=number,
                latency_ms=round(result.latency_ms, 3),
                status_code=result.status_code,
                error_type=result.error_type,
                retryable=result.retryable,
            )
        return result

    def _before_retry(self, job: _JobInput, state: RetryCallState) -> None:
        result: ResponseResult = state.outcome.result()  # type: ignore[union-attr]
        delay = state.next_action.sleep if state.next_action else 0.0
        self._emit(
            job,
            EventName.JOB_RETRY,
            job_id=job.job_id,
            attempt=state.attempt_number,
            delay_ms=round(delay * 1000, 3),
            error_type=result.error_type,
        )
        with self.db.session() as session:
            row = session.get(AiJob, job.job_id)
            assert row is not None
            row.status = "retrying"
            row.next_retry_at = utc_now() + timedelta(seconds=delay)
            row.last_error = str(result.error) if result.error else None
            row.error_type = result.error_type
        self.broker.update(
            JobUpdate(
                job.job_id,
                job.session_public_id,
                "retrying",
                state.attempt_number,
                MAX_ATTEMPTS,
                retry_in_seconds=delay,
                message=str(result.error) if result.error else None,
            )
        )

    def _succeed(self, job: _JobInput, result: ResponseResult, attempts: int) -> None:
        with self.db.session() as session:
            row = session.get(AiJob, job.job_id)
            assert row is not None
            reply = Message(
                session_id=row.session_id,
                role="assistant",
                content=result.content,
                reply_to_id=row.user_message_id,
                model=result.model,
                provider=self.provider.name,
                persona_version=job.persona.version,
                ttft_ms=result.ttft_ms,
                tokens_in=result.usage.tokens_in,
                tokens_out=result.usage.tokens_out,
                finish_reason=result.finish_reason,
            )
            session.add(reply)
            session.flush()
            latency_ms = (reply.created_at - job.started_from).total_seconds() * 1000
            reply.latency_ms = latency_ms
            row.status = "succeeded"
            row.attempt = attempts
            row.reply_message_id = reply.id
            row.finished_at = reply.created_at
            row.model = result.model
            row.next_retry_at = None
            chat = session.get(ChatSession, row.session_id)
            if chat is not None:
                chat.updated_at = reply.created_at
        self._emit(
            job,
            EventName.JOB_SUCCESS,
            job_id=job.job_id,
            latency_ms=round(latency_ms, 3),
            attempts=attempts,
        )
        self.broker.update(
            JobUpdate(job.job_id, job.session_public_id, "succeeded", attempts, MAX_ATTEMPTS)
        )

    def _fail(self, job: _JobInput, attempts: int, error_type: str, message: str) -> None:
        with self.db.session() as session:
            row = session.get(AiJob, job.job_id)
            assert row is not None
            bubble = Message(
                session_id=row.session_id,
                role="error",
                content=message,
                reply_to_id=row.user_message_id,
                provider=self.provider.name,
            )
            session.add(bubble)
            session.flush()
            row.status = "failed"
            row.attempt = attempts
            row.last_error = message
            row.error_type = error_type
            row.reply_message_id = bubble.id
            row.finished_at = bubble.created_at
            row.next_retry_at = None
        self._emit(
            job, EventName.JOB_FAILURE, job_id=job.job_id, attempts=attempts, error_type=error_type
        )
        self.broker.update(
            JobUpdate(
                job.job_id, job.session_public_id, "failed", attempts, MAX_ATTEMPTS, message=message
            )
        )

    def _stored_attempt(self, job_id: str) -> int:
        try:
            return self.get(job_id).attempt
        except Exception:
            return 0

    def _emit(self, job: _JobInput, event: str, **fields: object) -> None:
        self.events.emit(
            event, chat_session_id=job.session_public_id, user_id=job.user_id, **fields
        )

    # --- lifecycle --------------------------------------------------------------------------

    def recover_stale_jobs(self) -> int:
        """Fail the unfinished jobs of dead processes on this host so they can be retried."""
        host = socket.gethostname()
        recovered = 0
        with self.db.session() as session:
            stale = session.scalars(select(AiJob).where(AiJob.status.in_(ACTIVE_STATES))).all()
            for row in stale:
                owner_host, _, rest = (row.owner or "").partition(":")
                pid_text = rest.split(":", 1)[0]
                if row.owner == self.owner or owner_host != host:
                    continue
                if (
                    pid_text.isdigit()
                    and _pid_alive(int(pid_text))
                    and (int(pid_text) != os.getpid())
                ):
                    continue
                chat = session.get(ChatSession, row.session_id)
                bubble = Message(
                    session_id=row.session_id,
                    role="error",
                    content=INTERRUPTED_MESSAGE,
                    reply_to_id=row.user_message_id,
                )
                session.add(bubble)
                session.flush()
                row.status = "failed"
                row.error_type = "interrupted"
                row.last_error = INTERRUPTED_MESSAGE
                row.reply_message_id = bubble.id
                row.finished_at = utc_now()
                self.events.emit(
                    EventName.JOB_FAILURE,
                    chat_session_id=chat.public_id if chat else None,
                    user_id=row.user_id,
                    job_id=row.id,
                    attempts=row.attempt,
                    error_type="interrupted",
                )
                recovered += 1
        return recovered

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` finish the running ones first."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
