"""`ResponseWorker`: AI response jobs run by a thread pool owned by the process.

A job is a database row (``JobStore``) so any page, in any process, can show its progress; the pool
is not tied to a Streamlit script run, so a rerun, a page change or a closed tab does not cancel
it. Each attempt is one provider call, logged as ``request_*`` events; transient failures are
retried up to ``MAX_RETRIES`` times with tenacity:

    retry n waits  base·2^(n−1) + U(0, base)   and at least the server's hint,   capped

Permanent failures end the job at once. Success stores the assistant message; a final failure
stores an error bubble with the reason. Both notify the session's listeners through the broker.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from nexus_core.ai.job_store import JobInput, JobStore, JobView, process_owner
from nexus_core.ai.progress import JobBroker, JobUpdate
from nexus_core.ai.response import GenerateResponseService, ResponseResult
from nexus_core.ai.types import GenerationRequest, Provider
from nexus_core.db.engine import Database
from nexus_core.events import EventName, EventSink
from nexus_core.users import UserView

log = logging.getLogger("nexus.jobs")

MAX_RETRIES = 3
MAX_ATTEMPTS = 1 + MAX_RETRIES
MAX_RETRY_DELAY_SECONDS = 120.0
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side while answering. Press Retry."


def backoff_seconds(retry: int, base: float, jitter: float, hint: float | None) -> float:
    """The wait before retry ``retry`` (1-based): exponential plus jitter, at least the hint."""
    delay = base * 2 ** (retry - 1) + jitter
    if hint is not None:
        delay = max(delay, hint)
    return min(delay, MAX_RETRY_DELAY_SECONDS)


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
        self.provider = provider
        self.events = events
        self.broker = broker or JobBroker()
        self.retry_base_seconds = retry_base_seconds
        self.service = GenerateResponseService(provider, budget_chars=budget_chars)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.store = JobStore(db, process_owner(), MAX_ATTEMPTS, budget_chars)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="nexus-job")
        self._futures: dict[str, Future[JobView]] = {}
        self._lock = threading.Lock()

    # --- enqueueing -------------------------------------------------------------------------

    def enqueue(self, user_message_id: int, user: UserView) -> str:
        """Queue a reply to a stored user message; returns the job id."""
        job_id, session_public_id = self.store.create(user_message_id, user, self.provider.name)
        return self._submit(job_id, session_public_id, user.id)

    def retry(self, job_id: str, user: UserView) -> str:
        """Answer the same user message again after a failed job (no duplicate message)."""
        new_id, session_public_id = self.store.create(0, user, self.provider.name, retry_of=job_id)
        return self._submit(new_id, session_public_id, user.id)

    def _submit(self, job_id: str, session_public_id: str, user_id: int) -> str:
        self.events.emit(
            EventName.JOB_ENQUEUED,
            chat_session_id=session_public_id,
            user_id=user_id,
            job_id=job_id,
        )
        self.broker.update(JobUpdate(job_id, session_public_id, "queued", 0, MAX_ATTEMPTS))
        with self._lock:
            future = self._pool.submit(self.run, job_id)
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
            return future.result(timeout=timeout)  # ``run`` read the finished job
        return self.store.get(job_id)

    def get(self, job_id: str) -> JobView:
        """The stored state of a job."""
        return self.store.get(job_id)

    def in_flight(self) -> int:
        """How many jobs this process is running or about to run."""
        with self._lock:
            return len(self._futures)

    # --- running ----------------------------------------------------------------------------

    def run(self, job_id: str) -> JobView:
        """Run one job to its end; never raises (unexpected errors fail the job)."""
        job: JobInput | None = None
        attempts = 0
        try:
            job = self.store.start(job_id)
            self._emit(job, EventName.JOB_START, job_id=job_id)
            self._publish(job, "running", 0)
            result, attempts = self._attempts(job)
            if result.success:
                latency_ms = self.store.succeed(job, result, attempts, self.provider.name)
                self._emit(
                    job,
                    EventName.JOB_SUCCESS,
                    job_id=job_id,
                    latency_ms=round(latency_ms, 3),
                    attempts=attempts,
                    persona=job.persona.name,
                    model=result.model,
                )
                self._publish(job, "succeeded", attempts)
            else:
                message = str(result.error) if result.error else INTERNAL_ERROR_MESSAGE
                if result.retryable:
                    message = f"{message} No reply after {attempts} attempts."
                self._finish_failed(job, attempts, result.error_type or "unknown", message)
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

    def _finish_failed(self, job: JobInput, attempts: int, error_type: str, message: str) -> None:
        self.store.fail(job.job_id, attempts, error_type, message, self.provider.name)
        self._emit(
            job, EventName.JOB_FAILURE, job_id=job.job_id, attempts=attempts, error_type=error_type
        )
        self._publish(job, "failed", attempts, message=message)

    def _attempts(self, job: JobInput) -> tuple[ResponseResult, int]:
        attempts = 0
        # Every attempt sends the same request: the persona and history were read at the start.
        request = self.service.build_request(job.persona, job.history)

        def attempt() -> ResponseResult:
            nonlocal attempts
            attempts += 1
            return self._attempt(job, request, attempts)

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

    def _attempt(self, job: JobInput, request: GenerationRequest, number: int) -> ResponseResult:
        request_id = str(uuid.uuid4())
        if number > 1:
            self.store.attempt(job.job_id, number)
        self._emit(
            job,
            EventName.REQUEST_START,
            request_id=request_id,
            attempt=number,
            model=self.service.model_for(request),
            provider=self.provider.name,
            persona=job.persona.name,
        )
        self.broker.restart(job.job_id)
        result = self.service.send(request, on_delta=lambda d: self.broker.delta(job.job_id, d))
        common = {
            "request_id": request_id,
            "attempt": number,
            "latency_ms": round(result.latency_ms, 3),
            "status_code": result.status_code,
        }
        if result.success:
            ttft = None if result.ttft_ms is None else round(result.ttft_ms, 3)
            self._emit(
                job,
                EventName.REQUEST_SUCCESS,
                **common,
                tokens_in=result.usage.tokens_in,
                tokens_out=result.usage.tokens_out,
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

    def _before_retry(self, job: JobInput, state: RetryCallState) -> None:
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
        self.store.retrying(job.job_id, delay, result)
        self._publish(
            job,
            "retrying",
            state.attempt_number,
            retry_in=delay,
            message=str(result.error) if result.error else None,
        )

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
        self.events.emit(
            event, chat_session_id=job.session_public_id, user_id=job.user_id, **fields
        )

    # --- lifecycle --------------------------------------------------------------------------

    def recover_stale_jobs(self) -> int:
        """Fail the unfinished jobs of dead processes on this host so they can be retried."""
        stale = self.store.fail_stale()
        for job in stale:
            self.events.emit(
                EventName.JOB_FAILURE,
                chat_session_id=job.session_public_id,
                user_id=job.user_id,
                job_id=job.job_id,
                attempts=job.attempts,
                error_type="interrupted",
            )
        return len(stale)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` finish the running ones first."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
