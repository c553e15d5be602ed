"""`ResponseWorker`: AI response jobs run by a thread pool owned by the process.

A job is a database row (``JobStore``) so any page, in any process, can show its progress; the pool
is not tied to a Streamlit script run, so a rerun, a page change or a closed tab does not cancel
it. Each attempt is one provider call, logged as ``request_*`` events; transient failures are
retried with tenacity, within the job's deadline, as `nexus_core.ai.retry_policy` decides — so a
worker is held for a bounded time and a queued job starts within ⌈position / threads⌉ deadlines.
Permanent failures end the job at once. Success stores the assistant message; a final failure
stores an error bubble with the reason (Nexus's own words, never the provider's). Both notify the
session's listeners through the broker.

Jobs run in *lanes*, each a thread pool of its own: the chat lane, and the lanes named when the
worker is built (a comparison's variants, a test set's many prompts), so a test set's hundreds
of jobs never queue in front of a chat reply. A session may name its provider, model and
temperature (a prompt run's variant does); its job then asks that provider, from ``providers``,
and every event of the job carries the session's ``run_id``.

`ResponseWorker.load` says how busy each lane is (see `nexus_core.ai.lanes`), for ``/health``.

With the queue backend (``queue=`` a `nexus_core.ai.queue.JobQueue`) this process runs no jobs: a
job is sent to its lane's queue once its row is stored, and ``nexus worker`` processes run it with
`ResponseWorker.run_delivered`, publishing progress through a Redis ``broker``. A job delivered
again because its worker died goes on where that worker stopped: the lost attempt counts as a
transient failure (``job_retry`` with ``error_type`` ``interrupted``) and the next one waits its
backoff, so a job still makes at most `MAX_ATTEMPTS` attempts.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from tenacity import RetryCallState, Retrying, retry_if_result

from nexus_core.ai.job_store import (
    ACTIVE_STATES,
    INTERRUPTED_MESSAGE,
    JobInput,
    JobStore,
    JobTakenOver,
    JobView,
    NewJob,
    process_owner,
)
from nexus_core.ai.lanes import CHAT_LANE, LaneLoad, Lanes
from nexus_core.ai.progress import FOLLOW_POLL_SECONDS, JobBroker, JobUpdate, ProgressFeed
from nexus_core.ai.protocol import GenerationRequest, Provider
from nexus_core.ai.response import GenerateResponseService, ResponseResult
from nexus_core.ai.retry_policy import (
    DEFAULT_JOB_DEADLINE_SECONDS,
    MAX_ATTEMPTS,
    RetryPolicy,
)
from nexus_core.chat import ChatService, MessageView
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.errors import BudgetExceeded, QueueUnavailable
from nexus_core.ops.events import EventName, EventSink
from nexus_core.privacy.redaction import HeldOriginals, Redactor
from nexus_core.users import UserView

if TYPE_CHECKING:
    from nexus_core.ai.queue.broker import JobQueue

log = logging.getLogger("nexus.jobs")

MAX_ERROR_BUBBLE_CHARS = 500
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side while answering. Press Retry."
PROVIDER_UNAVAILABLE = "provider_unavailable"
INTERRUPTED = "interrupted"  # the error type of an attempt whose worker died
QUEUE_UNAVAILABLE = "queue_unavailable"
WORKER_LOST_MESSAGE = "The worker answering this was lost; another one goes on."
QUEUE_WAIT_SLICE_SECONDS = 5.0  # `wait` re-reads the stored job at least this often (queue)


def unavailable_message(provider: str) -> str:
    """Why a job whose session names a provider this server has not set up cannot run."""
    return (
        f"The AI provider {provider!r} is not set up on this server; ask an admin to configure "
        "it, or choose another provider."
    )


class ResponseWorker:
    """Enqueues AI response jobs and runs them on thread pools, with retries and events.

    ``provider`` answers sessions without a provider override and names the chat lane's default;
    ``providers`` (name → provider) answers sessions that name one. ``max_workers`` threads run
    the chat lane; ``lanes`` (name → threads) adds lanes with pools of their own, and a job sent
    to a lane the worker does not have runs on the chat lane. ``clock`` times retries and
    deadlines (monotonic); ``wall_clock`` stamps the rows jobs write (``nexus simulate`` back-dates
    them, as it does the events). With ``queue``, jobs go to the queue backend instead of pools.
    """

    def __init__(
        self,
        db: Database,
        provider: Provider,
        events: EventSink,
        *,
        providers: Mapping[str, Provider] | None = None,
        lanes: Mapping[str, int] | None = None,
        broker: ProgressFeed | None = None,
        queue: JobQueue | None = None,
        retry_base_seconds: float = 1.0,
        budget_chars: int = 24_000,
        max_workers: int = 4,
        job_deadline_seconds: float = DEFAULT_JOB_DEADLINE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Clock = utc_now,
        rng: random.Random | None = None,
        originals: HeldOriginals | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.provider = provider
        self.providers: dict[str, Provider] = {**(providers or {}), provider.name: provider}
        self.events = events
        self.broker: ProgressFeed = broker or JobBroker()
        self.queue = queue
        self.service = GenerateResponseService(provider, budget_chars=budget_chars)
        self._services = {
            name: GenerateResponseService(p, budget_chars=budget_chars)
            for name, p in self.providers.items()
            if p is not provider
        } | {provider.name: self.service}
        self.sleep = sleep
        self.policy = RetryPolicy(retry_base_seconds, job_deadline_seconds, clock=clock, rng=rng)
        self.store = JobStore(
            db,
            process_owner(),
            MAX_ATTEMPTS,
            budget_chars,
            clock=wall_clock,
            originals=originals,
            redactor=redactor,
        )
        sizes = {
            CHAT_LANE: max_workers,
            **{k: n for k, n in (lanes or {}).items() if k != CHAT_LANE},
        }
        self._lanes = Lanes(
            {} if queue else sizes,  # the queue's workers have the threads
            CHAT_LANE,
            deadline_seconds=job_deadline_seconds,
            clock=clock,
        )
        self._futures: dict[str, Future[JobView]] = {}
        self._lock = threading.Lock()

    # --- enqueueing -------------------------------------------------------------------------

    def enqueue(
        self, user_message_id: int, user: UserView, *, lane: str = CHAT_LANE, channel: str = "chat"
    ) -> str:
        """Queue a reply to a stored user message; returns the job id."""
        with self._refusals(user, channel):
            created = self.store.create(user_message_id, user, self.provider.name, channel=channel)
        return self._submit(created, user.id, lane)

    def ask(
        self,
        chat: ChatService,
        session_public_id: str,
        user: UserView,
        text: str,
        *,
        channel: str = "chat",
        lane: str = CHAT_LANE,
    ) -> tuple[MessageView, str]:
        """Store a user message and queue its reply in one transaction; returns both.

        A refusal (a spent hard budget, an archived session, bad text) stores nothing, so the
        caller keeps the draft."""
        with self._refusals(user, channel), self.store.db.transaction() as conn:
            message = chat.add_user_message_in(conn, session_public_id, user, text)
            created = self.store.create_in(
                conn, message.id, user, self.provider.name, channel=channel
            )
        return message, self._submit(created, user.id, lane)

    def create_jobs(
        self,
        conn: Connection,
        user_message_ids: Sequence[int],
        user: UserView,
        *,
        channel: str = "chat",
    ) -> list[NewJob]:
        """Queued jobs for stored user messages, in the caller's transaction; ``submit`` them
        once it has committed."""
        with self._refusals(user, channel):
            return [
                self.store.create_in(conn, id_, user, self.provider.name, channel=channel)
                for id_ in user_message_ids
            ]

    @contextmanager
    def _refusals(self, user: UserView, channel: str | None) -> Iterator[None]:
        """Log a budget refusal as a ``budget_refused`` event (``channel`` None: a retry, on the
        failed job's channel), then let it reach the caller."""
        try:
            yield
        except BudgetExceeded as refused:
            self.events.emit(
                EventName.BUDGET_REFUSED, user_id=user.id, channel=channel, reason=str(refused)
            )
            raise

    def submit(self, jobs: Sequence[NewJob], user: UserView, *, lane: str = CHAT_LANE) -> list[str]:
        """Run jobs made by ``create_jobs`` on ``lane``; returns their ids."""
        return [self._submit(job, user.id, lane) for job in jobs]

    def retry(self, job_id: str, user: UserView, *, lane: str = CHAT_LANE) -> str:
        """Answer the same user message again after a failed job (no duplicate message), on the
        failed job's channel."""
        with self._refusals(user, None):
            created = self.store.create(0, user, self.provider.name, retry_of=job_id)
        return self._submit(created, user.id, lane)

    def _submit(self, job: NewJob, user_id: int, lane: str) -> str:
        self._emit_new(job, user_id, EventName.JOB_ENQUEUED)
        self.broker.update(JobUpdate(job.job_id, job.session_public_id, "queued", 0, MAX_ATTEMPTS))
        if self.queue is not None:
            self._send(job, user_id, lane)
            return job.job_id
        with self._lock:
            future = self._lanes.submit(lane, job.job_id, self.run)
            self._futures[job.job_id] = future
        future.add_done_callback(lambda _f: self._forget(job.job_id))
        return job.job_id

    def _send(self, job: NewJob, user_id: int, lane: str) -> None:
        """Queue the job on the queue backend; when Redis does not answer, fail it at once with
        a bubble that says so (the user's message stays, and Retry sends it again)."""
        assert self.queue is not None
        try:
            self.queue.send(lane, job.job_id)
        except QueueUnavailable as refused:
            log.warning("job %s not queued: %s", job.job_id, refused.__cause__)
            self.store.fail(job.job_id, 0, QUEUE_UNAVAILABLE, str(refused), None)
            self._emit_new(
                job, user_id, EventName.JOB_FAILURE, attempts=0, error_type=QUEUE_UNAVAILABLE
            )
            update = JobUpdate(
                job.job_id, job.session_public_id, "failed", 0, MAX_ATTEMPTS, message=str(refused)
            )
            self.broker.update(update)

    def _emit_new(self, job: NewJob, user_id: int, event: str, **fields: object) -> None:
        """Log an event of a job that has not started (with its session's run, if any)."""
        run = {} if job.run_id is None else {"run_id": job.run_id}
        self.events.emit(
            event,
            chat_session_id=job.session_public_id,
            user_id=user_id,
            job_id=job.job_id,
            **run,
            **fields,
        )

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until the job ends (or ``timeout``), then return its stored state."""
        if self.queue is not None:
            return self._wait_stored(job_id, timeout)
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            return future.result(timeout=timeout)  # ``run`` read the finished job
        return self.store.get(job_id)

    def _wait_stored(self, job_id: str, timeout: float | None) -> JobView:
        """Wait for a job another process runs: follow its progress until it ends, re-reading
        the stored row (the record) at least every `QUEUE_WAIT_SLICE_SECONDS`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.store.get(job_id)
            if job.status not in ACTIVE_STATES:
                return job
            left = QUEUE_WAIT_SLICE_SECONDS
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"job {job_id} did not end in {timeout:g} s")
            started = time.monotonic()
            for _item in self.broker.watch(job_id, timeout=left):
                pass
            if time.monotonic() - started < FOLLOW_POLL_SECONDS:  # the feed could not follow
                time.sleep(FOLLOW_POLL_SECONDS)

    def get(self, job_id: str) -> JobView:
        """The stored state of a job."""
        return self.store.get(job_id)

    def in_flight(self) -> int:
        """How many jobs this process is running or about to run."""
        with self._lock:
            return len(self._futures)

    def load(self) -> list[LaneLoad]:
        """How busy each lane is now: threads, queue, the oldest wait, overdue jobs."""
        return self._lanes.load()

    # --- running ----------------------------------------------------------------------------

    def run(self, job_id: str) -> JobView:
        """Run one job to its end; never raises (unexpected errors fail the job)."""
        return self._run(job_id, lambda: (self.store.start(job_id), 0))

    def run_delivered(self, job_id: str) -> JobView:
        """Run a job the queue delivered — maybe again, after its worker died: then it goes on
        from the attempts made. A job that has ended already is left as it is."""
        return self._run(job_id, lambda: self.store.claim(job_id))

    def _run(self, job_id: str, begin: Callable[[], tuple[JobInput, int] | None]) -> JobView:
        job: JobInput | None = None
        attempts = 0
        try:
            begun = begin()
            if begun is None:
                return self.store.get(job_id)
            job, attempts = begun
            if not attempts:
                self._emit(job, EventName.JOB_START, job_id=job_id)
                self._publish(job, "running", 0)
            service = self._services.get(self._provider_name(job))
            if service is None:
                message = unavailable_message(self._provider_name(job))
                self._finish_failed(job, 0, PROVIDER_UNAVAILABLE, message)
                return self.store.get(job_id)
            if attempts and not self._resume(job, attempts):
                return self.store.get(job_id)
            result, attempts = self._attempts(job, service, attempts)
            if result.success:
                stored = self.store.succeed(job, result, attempts, service.provider.name)
                self._emit(
                    job,
                    EventName.JOB_SUCCESS,
                    job_id=job_id,
                    latency_ms=round(stored.latency_ms, 3),
                    attempts=attempts,
                    persona=job.persona.name,
                    model=result.model,
                    channel=job.channel,
                    input_tokens=result.usage.input_tokens,
                    cached_input_tokens=result.usage.cached_input_tokens,
                    output_tokens=result.usage.output_tokens,
                    reasoning_tokens=result.usage.reasoning_tokens,
                    cost_usd=stored.cost_usd,
                )
                self._publish(job, "succeeded", attempts)
            else:
                message = self._failure_message(result, attempts)
                self._finish_failed(job, attempts, result.error_type or "unknown", message)
        except JobTakenOver:
            log.info("job %s was taken over by another delivery; nothing stored here", job_id)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("job %s failed unexpectedly (reference %s)", job_id, reference)
            if job is not None:
                try:
                    self._finish_failed(
                        job,
                        attempts,
                        "internal_error",
                        f"{INTERNAL_ERROR_MESSAGE} (reference {reference})",
                    )
                except Exception:
                    log.exception("could not record the failure of job %s", job_id)
        return self.store.get(job_id)

    def _provider_name(self, job: JobInput) -> str:
        return job.provider or self.provider.name

    def _failure_message(self, result: ResponseResult, attempts: int) -> str:
        message = str(result.error) if result.error else INTERNAL_ERROR_MESSAGE
        return self.policy.gave_up(message, attempts) if result.retryable else message

    def _finish_failed(self, job: JobInput, attempts: int, error_type: str, message: str) -> None:
        # The bubble holds Nexus's own sentences; the cap is a last guard on their length.
        if len(message) > MAX_ERROR_BUBBLE_CHARS:
            message = message[: MAX_ERROR_BUBBLE_CHARS - 1] + "…"
        self.store.fail(job.job_id, attempts, error_type, message, self._provider_name(job))
        self._emit(
            job, EventName.JOB_FAILURE, job_id=job.job_id, attempts=attempts, error_type=error_type
        )
        self._publish(job, "failed", attempts, message=message)

    def _resume(self, job: JobInput, made: int) -> bool:
        """Go on with a job whose worker died during attempt ``made``: count that attempt as a
        transient failure and wait its backoff; False (the job failed) when none is left."""
        if made >= MAX_ATTEMPTS:
            self._finish_failed(job, made, INTERRUPTED, INTERRUPTED_MESSAGE)
            return False
        delay = self.policy.wait(made, None)
        self._note_retry(job, made, delay, INTERRUPTED, WORKER_LOST_MESSAGE)
        self.sleep(delay)
        return True

    def _attempts(
        self, job: JobInput, service: GenerateResponseService, made: int = 0
    ) -> tuple[ResponseResult, int]:
        """Attempts until one succeeds or the policy stops, numbered on from ``made``."""
        attempts = made
        # Every attempt sends the same request: the persona and history were read at the start.
        request = service.build_request(
            job.persona, job.history, model=job.model, temperature=job.temperature
        )
        policy = self.policy
        deadline = policy.deadline()

        def attempt() -> ResponseResult:
            nonlocal attempts
            attempts += 1
            limited = replace(request, timeout_seconds=policy.time_left(deadline))
            return self._attempt(job, service, limited, attempts)

        def wait(state: RetryCallState) -> float:
            result: ResponseResult = state.outcome.result()  # type: ignore[union-attr]
            return policy.wait(made + state.attempt_number, result.retry_after)

        # tenacity has already chosen the wait (upcoming_sleep) when it asks whether to stop.
        retrying = Retrying(
            stop=lambda s: policy.should_stop(made + s.attempt_number, s.upcoming_sleep, deadline),
            wait=wait,
            retry=retry_if_result(lambda r: not r.success and r.retryable),
            before_sleep=lambda state: self._before_retry(job, made + state.attempt_number, state),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            sleep=self.sleep,
        )
        return retrying(attempt), attempts

    def _attempt(
        self,
        job: JobInput,
        service: GenerateResponseService,
        request: GenerationRequest,
        number: int,
    ) -> ResponseResult:
        request_id = str(uuid.uuid4())
        if number > 1:
            self.store.attempt(job.job_id, number)
        # Every request event names its job, model and provider: traces and the GenAI metrics
        # read an outcome on its own, without its request_start.
        named = {
            "job_id": job.job_id,
            "model": service.model_for(request),
            "provider": service.provider.name,
        }
        self._emit(
            job,
            EventName.REQUEST_START,
            request_id=request_id,
            attempt=number,
            persona=job.persona.name,
            **named,
        )
        self.broker.restart(job.job_id)
        result = service.send(request, on_delta=lambda d: self.broker.delta(job.job_id, d))
        common = {
            "request_id": request_id,
            "attempt": number,
            "latency_ms": round(result.latency_ms, 3),
            "status_code": result.status_code,
            **named,
        }
        if result.success:
            ttft = None if result.ttft_ms is None else round(result.ttft_ms, 3)
            self._emit(
                job,
                EventName.REQUEST_SUCCESS,
                **common,
                tokens_in=result.usage.input_tokens,
                tokens_out=result.usage.output_tokens,
                ttft_ms=ttft,
            )
        else:
            self._emit(
                job,
                EventName.REQUEST_FAILURE,
                **common,
                error_type=result.error_type,
                retryable=result.retryable,
            )
        return result

    def _before_retry(self, job: JobInput, failed: int, state: RetryCallState) -> None:
        result: ResponseResult = state.outcome.result()  # type: ignore[union-attr]
        delay = state.next_action.sleep if state.next_action else 0.0
        error = str(result.error) if result.error else None
        self._note_retry(job, failed, delay, result.error_type, error)

    def _note_retry(
        self, job: JobInput, failed: int, delay: float, error_type: str | None, error: str | None
    ) -> None:
        """Log, store and publish that attempt ``failed`` failed and the next one follows in
        ``delay`` seconds (``error``: the reason, for the page)."""
        self._emit(
            job,
            EventName.JOB_RETRY,
            job_id=job.job_id,
            attempt=failed,
            delay_ms=round(delay * 1000, 3),
            error_type=error_type,
        )
        self.store.retrying(job.job_id, delay, error, error_type)
        self._publish(job, "retrying", failed, retry_in=delay, message=error)

    def _publish(
        self,
        job: JobInput,
        status: str,
        attempt: int,
        *,
        retry_in: float | None = None,
        message: str | None = None,
    ) -> None:
        self.broker.update(
            JobUpdate(
                job.job_id,
                job.session_public_id,
                status,
                attempt,
                MAX_ATTEMPTS,
                retry_in_seconds=retry_in,
                message=message,
            )
        )

    def _emit(self, job: JobInput, event: str, **fields: object) -> None:
        if job.run_id is not None:
            fields["run_id"] = job.run_id
        self.events.emit(
            event, chat_session_id=job.session_public_id, user_id=job.user_id, **fields
        )

    # --- lifecycle --------------------------------------------------------------------------

    def recover_stale_jobs(self) -> int:
        """Fail the unfinished jobs of dead processes on this host so they can be retried.

        Not with the queue backend: there the broker delivers a dead worker's jobs again."""
        if self.queue is not None:
            return 0
        stale = self.store.fail_stale()
        for job in stale:
            self.events.emit(
                EventName.JOB_FAILURE,
                chat_session_id=job.session_public_id,
                user_id=job.user_id,
                job_id=job.job_id,
                attempts=job.attempts,
                error_type="interrupted",
                **({} if job.run_id is None else {"run_id": job.run_id}),
            )
        return len(stale)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` finish the running ones first."""
        self._lanes.shutdown(wait)
        if self.queue is not None:
            self.queue.close()
            close = getattr(self.broker, "close", None)  # the Redis feed's connections
            if close is not None:
                close()
