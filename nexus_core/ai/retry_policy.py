"""`RetryPolicy`: how long a job waits before retrying a transient failure, and when it stops.

Transient failures are retried up to ``MAX_RETRIES`` times:

    retry n waits  base·2^(n−1) + U(0, base)   and at least the server's hint,   capped

A job also has a deadline that covers its attempts *and* the waits between them: each attempt may
use only the time left, and no retry starts that could not run for `MIN_ATTEMPT_SECONDS` before
the deadline. So a slow, trickling or rate-limiting provider holds a worker for a bounded time (a
429 that asks for more time than is left ends the job instead of sleeping through it).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

MAX_RETRIES = 3
MAX_ATTEMPTS = 1 + MAX_RETRIES
MAX_RETRY_DELAY_SECONDS = 120.0
DEFAULT_JOB_DEADLINE_SECONDS = 90.0
MIN_ATTEMPT_SECONDS = 1.0  # a retry that could not run this long is not started


def backoff_seconds(retry: int, base: float, jitter: float, hint: float | None) -> float:
    """The wait before retry ``retry`` (1-based): exponential plus jitter, at least the hint."""
    delay = base * 2 ** (retry - 1) + jitter
    if hint is not None:
        delay = max(delay, hint)
    return min(delay, MAX_RETRY_DELAY_SECONDS)


class RetryPolicy:
    """Backoff with jitter and the server's hint, within a deadline per job."""

    def __init__(
        self,
        base_seconds: float,
        deadline_seconds: float = DEFAULT_JOB_DEADLINE_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base_seconds = base_seconds
        self.deadline_seconds = deadline_seconds
        self.clock = clock
        self.rng = rng or random.Random()

    def deadline(self) -> float:
        """When a job that starts now must be over (on ``clock``)."""
        return self.clock() + self.deadline_seconds

    def time_left(self, deadline: float) -> float:
        """Seconds until ``deadline`` (0 when it has passed)."""
        return max(0.0, deadline - self.clock())

    def wait(self, failed_attempt: int, hint: float | None) -> float:
        """The wait before the next attempt, after attempt ``failed_attempt`` (1-based) failed."""
        jitter = self.rng.uniform(0, self.base_seconds)
        return backoff_seconds(failed_attempt, self.base_seconds, jitter, hint)

    def should_stop(self, failed_attempt: int, upcoming_sleep: float, deadline: float) -> bool:
        """Whether to give up after attempt ``failed_attempt`` failed: out of attempts, or the
        next one, after ``upcoming_sleep``, could not run long enough."""
        next_start = self.clock() + upcoming_sleep
        return failed_attempt >= MAX_ATTEMPTS or next_start + MIN_ATTEMPT_SECONDS > deadline

    def gave_up(self, message: str, attempts: int) -> str:
        """``message`` of the last transient failure, saying why the job stopped retrying."""
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        if attempts < MAX_ATTEMPTS:
            return f"{message} No reply within {self.deadline_seconds:g} s ({tries})."
        return f"{message} No reply after {tries}."
