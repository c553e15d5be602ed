"""The stored state of AI response jobs: every transition of a job is one short transaction.

    queued → running ⇄ retrying → succeeded | failed

A finished job points at its reply: the assistant message, or the error bubble that tells the
user why there is none. A prompt run's job uses its session's provider, model and temperature and
is timed from its own start (a test set's wait in the queue is not the model's time). Jobs record
the process that runs them (``host:pid:token``) so that, at start-up, the unfinished jobs of a dead
process can be failed and then retried.

A job is ended (its reply or error bubble stored) only by the process that owns it and only while
it is unfinished. With the queue backend a job can be delivered again — its worker died, or was
thought dead — and `JobStore.claim` hands it to the new worker: the old one, if it is still alive,
then finds the job taken (`JobTakenOver`) and stores nothing, so every job has one reply.

Every message passes through here, so the SQL is the prebuilt statements of ``job_statements``,
run on plain Core connections rather than through ORM sessions.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row

from nexus_core.ai.job_statements import (
    ACTIVE_STATES,
    FINISH_OWNED_JOB,
    HISTORY_PAGE,
    INSERT_JOB,
    INSERT_MESSAGE,
    JOB_BY_ID,
    JOB_TO_CLAIM,
    JOB_TO_FAIL,
    JOB_TO_RETRY,
    JOB_TO_START,
    JOBS_OF_SESSION,
    MESSAGE_TO_ANSWER,
    PERSONA_FIELDS,
    UNFINISHED_JOBS,
    UPDATE_JOB,
    UPDATE_SESSION,
)
from nexus_core.ai.response import HistoryItem, ResponseResult
from nexus_core.cost.budgets import BudgetService
from nexus_core.cost.prices import TokenCounts, reply_cost
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import CHANNELS, new_uuid
from nexus_core.errors import NotFound, ValidationError
from nexus_core.personas import PersonaView
from nexus_core.privacy.redaction import HeldOriginals, Redactor
from nexus_core.users import UserView

CHAT_ROLES = ("user", "assistant")  # the roles the model sees; error bubbles are for people
HISTORY_BATCH = 400  # first page of history: the default budget in one-line (60-char) messages
INTERRUPTED_MESSAGE = "The reply was interrupted because the server restarted. Press Retry."


class JobTakenOver(Exception):
    """The job was finished, or taken over by another delivery, while this process ran it."""


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


def job_view(row: Row[Any]) -> JobView:
    """A ``JobView`` from a row of ``JOB_COLUMNS``."""
    return JobView(*row)


def persona_view(row: Row[Any]) -> PersonaView:
    """The persona of a ``JOB_TO_START`` row at the session's version (with the session's own
    system instruction, when it sets one: an eval judge's)."""
    prefix = "version_" if row.version_id is not None else ""
    fields = {name: row._mapping[prefix + name] for name in PERSONA_FIELDS}
    if row.instruction_override is not None:
        fields["system_instruction"] = row.instruction_override
    return PersonaView(
        id=row.persona_id,
        name=row.name,
        version=row.persona_version,
        active=row.active,
        **fields,
    )


class NewJob(NamedTuple):
    """A queued job as created: its id, its session's public id and the session's run (if any)."""

    job_id: str
    session_public_id: str
    run_id: str | None


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
    run_id: str | None = None  # the session's prompt run; then its overrides (None: no override)
    channel: str = "chat"  # where the job came from (models.CHANNELS)
    persona_id: int | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class StoredReply:
    """What storing a reply measured: the user's wait and the reply's cost (None: unpriced)."""

    latency_ms: float
    cost_usd: float | None


@dataclass(frozen=True)
class StaleJob:
    """A job failed at start-up because its process died."""

    job_id: str
    session_public_id: str | None
    user_id: int | None
    attempts: int
    run_id: str | None = None


class JobStore:
    """Creates jobs and records their transitions."""

    def __init__(
        self,
        db: Database,
        owner: str,
        max_attempts: int,
        budget_chars: int = 24_000,
        budgets: BudgetService | None = None,
        clock: Clock = utc_now,
        originals: HeldOriginals | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.db = db
        self.owner = owner
        self.max_attempts = max_attempts
        self.budget_chars = budget_chars
        self.budgets = budgets or BudgetService(db)
        self.clock = clock
        self.originals = originals  # typed text of masked messages (NEXUS_REDACT)
        self.redactor = redactor or Redactor()  # replies are masked too: they may quote it

    def create(
        self,
        user_message_id: int,
        user: UserView,
        provider: str,
        *,
        retry_of: str | None = None,
        channel: str = "chat",
    ) -> NewJob:
        """A queued job answering a user message (``provider`` unless the session overrides it)."""
        with self.db.transaction() as conn:
            if retry_of is not None:
                old = conn.execute(JOB_TO_RETRY, {"job_id": retry_of}).one_or_none()
                if old is None:
                    raise NotFound("No such reply job.")
                if old.status != "failed":
                    raise ValidationError("Only a failed reply can be retried.")
                user_message_id, channel = old.user_message_id, old.channel
            return self.create_in(conn, user_message_id, user, provider, channel=channel)

    def create_in(
        self,
        conn: Connection,
        user_message_id: int,
        user: UserView,
        provider: str,
        *,
        channel: str = "chat",
    ) -> NewJob:
        """Like ``create``, inside the caller's transaction (run the job after it commits).

        Raises ``BudgetExceeded`` when a hard budget of the user or persona is spent: the caller's
        transaction rolls back, so nothing of the refused message is stored."""
        asked = conn.execute(MESSAGE_TO_ANSWER, {"message_id": user_message_id}).one_or_none()
        if asked is None or asked.role != "user":
            raise NotFound("There is no such user message to answer.")
        if (
            asked.chat_id is None
            or asked.deleted_at is not None
            or (asked.user_id != user.id and not user.is_admin)
        ):
            raise NotFound("That chat session does not exist or is not yours.")
        if channel not in CHANNELS:
            raise ValidationError(f"Unknown channel {channel!r}.")
        job_id, now = new_uuid(), self.clock()
        self.budgets.admit(conn, asked.user_id, asked.persona_id, now)
        conn.execute(
            INSERT_JOB,
            {
                "id": job_id,
                "session_id": asked.chat_id,
                "user_message_id": user_message_id,
                "status": "queued",
                "attempt": 0,
                "max_attempts": self.max_attempts,
                "owner": self.owner,
                "user_id": user.id,
                "provider": asked.provider or provider,
                "channel": channel,
                "created_at": now,
                "updated_at": now,
            },
        )
        return NewJob(job_id, asked.public_id, asked.run_id)

    def get(self, job_id: str) -> JobView:
        """The stored state of a job."""
        with self.db.transaction() as conn:
            row = conn.execute(JOB_BY_ID, {"job_id": job_id}).one_or_none()
        if row is None:
            raise NotFound("No such reply job.")
        return job_view(row)

    def for_session(self, chat_id: int) -> list[JobView]:
        """Every job of a session, oldest first."""
        with self.db.transaction() as conn:
            return [job_view(row) for row in conn.execute(JOBS_OF_SESSION, {"chat_id": chat_id})]

    def start(self, job_id: str) -> JobInput:
        """Mark the job running and load the persona version and history it answers."""
        with self.db.transaction() as conn:
            row = conn.execute(JOB_TO_START, {"job_id": job_id}).one_or_none()
            return self._begin(conn, job_id, row, attempt=1)

    def claim(self, job_id: str) -> tuple[JobInput, int] | None:
        """Take a job the queue delivered: None when it has ended already (a delivery again after
        the reply was stored); else mark it running here and return it with the attempts made so
        far (0 for a queued job; those of a worker that died mid-reply otherwise)."""
        with self.db.transaction() as conn:
            row = conn.execute(JOB_TO_CLAIM, {"job_id": job_id}).one_or_none()
            if row is not None and row.status not in ACTIVE_STATES:
                return None
            made = 0 if row is None or row.status == "queued" else row.attempt
            return self._begin(conn, job_id, row, attempt=max(made, 1)), made

    def _begin(self, conn: Connection, job_id: str, row: Row[Any] | None, attempt: int) -> JobInput:
        """Mark the job of ``row`` (a ``JOB_TO_START`` row) running here; what it needs to run."""
        if row is None:
            raise NotFound(f"No reply job {job_id} with a session and persona.")
        history = self._history(conn, row.chat_id, row.user_message_id)
        now = self.clock()
        _update_job(
            conn,
            job_id,
            status="running",
            attempt=attempt,
            started_at=now,
            owner=self.owner,
            now=now,
        )
        return JobInput(
            job_id=job_id,
            chat_id=row.chat_id,
            user_message_id=row.user_message_id,
            session_public_id=row.public_id,
            user_id=row.user_id,
            persona=persona_view(row),
            history=history,
            # A run's job from its start; a chat retry from the Retry press; else the message.
            started_from=now if row.run_id else row.created_at if row.is_retry else row.asked_at,
            run_id=row.run_id,
            channel=row.channel,
            persona_id=row.persona_id,
            provider=row.provider_override,
            model=row.model_override,
            temperature=row.temperature_override,
        )

    def _history(self, conn: Connection, chat_id: int, upto_id: int) -> list[HistoryItem]:
        """The newest user/assistant messages up to ``upto_id`` that can fit the budget.

        Reads newest first, a page at a time (``HISTORY_BATCH`` rows, then twice as many), and
        stops once the budget is spent: only the session's message ids are sorted, so a long
        session costs little more than a short one. The response service makes the final cut.
        """
        newest_first: list[HistoryItem] = []
        used, rows = 0, HISTORY_BATCH
        while True:
            read = 0
            params = {"chat_id": chat_id, "upto_id": upto_id, "rows": rows}
            with conn.execute(HISTORY_PAGE, params) as page:  # rows are fetched as they are read
                for message_id, role, content in page:
                    read += 1
                    upto_id = message_id - 1  # where the next page starts
                    if role not in CHAT_ROLES:
                        continue
                    if self.originals is not None:
                        content = self.originals.get(message_id, content)
                    newest_first.append(HistoryItem(role, content))
                    used += len(content)
                    if used > self.budget_chars:
                        break
            if used > self.budget_chars or read < rows:
                break
            rows *= 2
        newest_first.reverse()
        return newest_first

    def attempt(self, job_id: str, number: int) -> None:
        """Record that retry attempt ``number`` is under way (``start`` records the first)."""
        with self.db.transaction() as conn:
            _update_job(
                conn,
                job_id,
                attempt=number,
                status="running",
                next_retry_at=None,
                now=self.clock(),
            )

    def retrying(
        self, job_id: str, delay_seconds: float, error: str | None, error_type: str | None
    ) -> None:
        """Record a failed attempt that will be retried after ``delay_seconds``."""
        now = self.clock()
        with self.db.transaction() as conn:
            _update_job(
                conn,
                job_id,
                status="retrying",
                next_retry_at=now + timedelta(seconds=delay_seconds),
                last_error=error,
                error_type=error_type,
                now=now,
            )

    def succeed(
        self, job: JobInput, result: ResponseResult, attempts: int, provider: str
    ) -> StoredReply:
        """Store the reply with its cost and finish the job; note budget crossings."""
        stored_at = self.clock()
        latency_ms = (stored_at - job.started_from).total_seconds() * 1000
        usage = result.usage
        tokens = TokenCounts(
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
        )
        with self.db.transaction() as conn:
            cost = reply_cost(conn, provider, result.model, tokens, stored_at)
            reply_id = _insert_message(
                conn,
                session_id=job.chat_id,
                role="assistant",
                content=self.redactor.redact(result.content),
                created_at=stored_at,
                reply_to_id=job.user_message_id,
                model=result.model,
                provider=provider,
                persona_version=job.persona.version,
                latency_ms=latency_ms,
                ttft_ms=result.ttft_ms,
                tokens_in=usage.input_tokens,
                tokens_out=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost_usd=cost,
                finish_reason=result.finish_reason,
            )
            self._finish_owned(
                conn,
                job.job_id,
                status="succeeded",
                attempt=attempts,
                model=result.model,
                reply_message_id=reply_id,
                finished_at=stored_at,
                next_retry_at=None,
                now=stored_at,
            )
            conn.execute(UPDATE_SESSION, {"chat_id": job.chat_id, "updated_at": stored_at})
            self.budgets.record_crossings(conn, job.user_id, job.persona_id, stored_at)
        if self.originals is not None:
            self.originals.release(job.user_message_id)
        return StoredReply(latency_ms, cost)

    def fail(
        self, job_id: str, attempts: int, error_type: str, message: str, provider: str | None
    ) -> None:
        """Store an error bubble with the reason and finish the job as failed."""
        with self.db.transaction() as conn:
            row = conn.execute(JOB_TO_FAIL, {"job_id": job_id}).one_or_none()
            if row is None:
                raise NotFound(job_id)
            _fail_job(
                conn, job_id, row, attempts, error_type, message, provider, self.clock(), self
            )

    def _finish_owned(self, conn: Connection, job_id: str, **values: Any) -> None:
        """End the job if this process still owns it unfinished, else raise `JobTakenOver` (the
        caller's transaction rolls back: nothing of this ending is stored)."""
        values["updated_at"] = values.pop("now")
        ended = conn.execute(FINISH_OWNED_JOB, {"job_id": job_id, "owned_by": self.owner, **values})
        if ended.rowcount != 1:
            raise JobTakenOver(job_id)

    def fail_stale(self) -> list[StaleJob]:
        """Fail the unfinished jobs of dead processes on this host (not other hosts' jobs)."""
        host = socket.gethostname()
        failed: list[StaleJob] = []
        with self.db.transaction() as conn:
            rows = conn.execute(UNFINISHED_JOBS, {"states": ACTIVE_STATES}).all()
            for row in rows:
                owner_host, _, rest = (row.owner or "").partition(":")
                pid_text = rest.split(":", 1)[0]
                if row.owner == self.owner or owner_host != host:
                    continue
                pid = int(pid_text) if pid_text.isdigit() else None
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    continue
                _fail_job(
                    conn,
                    row.id,
                    row,
                    row.attempt,
                    "interrupted",
                    INTERRUPTED_MESSAGE,
                    row.provider,
                    self.clock(),
                )
                failed.append(StaleJob(row.id, row.public_id, row.user_id, row.attempt, row.run_id))
        return failed


def _insert_message(conn: Connection, **values: Any) -> int:
    """Insert a message; returns its id."""
    return conn.execute(INSERT_MESSAGE, values).inserted_primary_key[0]


def _update_job(conn: Connection, job_id: str, *, now: datetime, **values: Any) -> None:
    """Set columns of a job, and its ``updated_at`` to ``now``."""
    conn.execute(UPDATE_JOB, {"job_id": job_id, "updated_at": now, **values})


def _fail_job(
    conn: Connection,
    job_id: str,
    job: Row[Any],
    attempts: int,
    error_type: str,
    message: str,
    provider: str | None,
    now: datetime,
    owner: JobStore | None = None,
) -> None:
    """Store an error bubble answering the job's user message (``job`` has ``session_id`` and
    ``user_message_id``) and mark the job failed at ``now`` — only if ``owner`` still owns it,
    when given."""
    bubble_id = _insert_message(
        conn,
        session_id=job.session_id,
        role="error",
        content=message,
        created_at=now,
        reply_to_id=job.user_message_id,
        provider=provider,
    )
    end = _update_job if owner is None else owner._finish_owned
    end(
        conn,
        job_id,
        status="failed",
        attempt=attempts,
        last_error=message,
        error_type=error_type,
        reply_message_id=bubble_id,
        finished_at=now,
        next_retry_at=None,
        now=now,
    )
