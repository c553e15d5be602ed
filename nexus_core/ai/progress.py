"""In-process publication of job progress: text deltas as they arrive, state changes, the end.

The worker publishes; the chat page follows one job with ``watch`` (reply text and state changes,
which it re-renders through the safe Markdown renderer, never ``st.write_stream``), the compare
page reads a running reply's ``text``, and the ``nexus chat`` command subscribes to a session's
state changes. The database stays the source of truth: this only carries what is still in flight,
so a page that missed it simply reads the stored reply.

`JobBroker` keeps progress in this process's memory (the thread backend); the queue backend's
`nexus_core.ai.queue.RedisJobBroker` keeps it in Redis. Both are a `ProgressFeed`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

FINISHED_STATES = frozenset({"succeeded", "failed"})
MAX_TRACKED_JOBS = 1000
FOLLOW_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class JobUpdate:
    """A state change of a job, for listeners."""

    job_id: str
    session_public_id: str
    status: str
    attempt: int = 0
    max_attempts: int = 0
    retry_in_seconds: float | None = None
    message: str | None = None


@dataclass
class _Progress:
    session_public_id: str
    status: str = "queued"
    chunks: list[str] = field(default_factory=list)
    generation: int = 0  # bumped when an attempt restarts, so followers start over
    last: JobUpdate | None = None


Listener = Callable[[JobUpdate], None]


class ProgressFeed(Protocol):
    """Where a job's worker publishes its progress and where pages and commands follow it."""

    def update(self, update: JobUpdate) -> None: ...

    def delta(self, job_id: str, text: str) -> None: ...

    def restart(self, job_id: str) -> None: ...

    def knows(self, job_id: str) -> bool: ...

    def text(self, job_id: str) -> str: ...

    def subscribe(self, session_public_id: str, listener: Listener) -> Callable[[], None]: ...

    def watch(self, job_id: str, timeout: float = 300.0) -> Iterator[str | JobUpdate]: ...


class JobBroker:
    """Thread-safe progress of the jobs of this process."""

    def __init__(self, max_tracked: int = MAX_TRACKED_JOBS) -> None:
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, _Progress] = OrderedDict()
        self._listeners: dict[str, list[Listener]] = {}
        self._max_tracked = max_tracked

    def _job(self, job_id: str, session_public_id: str = "") -> _Progress:
        progress = self._jobs.get(job_id)
        if progress is None:
            progress = self._jobs[job_id] = _Progress(session_public_id)
            while len(self._jobs) > self._max_tracked:
                self._jobs.popitem(last=False)
        return progress

    def update(self, update: JobUpdate) -> None:
        """Record a state change and tell the session's listeners."""
        with self._cond:
            progress = self._job(update.job_id, update.session_public_id)
            progress.status = update.status
            progress.last = update
            listeners = list(self._listeners.get(update.session_public_id, ()))
            self._cond.notify_all()
        for listener in listeners:
            try:
                listener(update)
            except Exception:  # a broken listener must not break the job
                continue

    def delta(self, job_id: str, text: str) -> None:
        """Publish a piece of reply text."""
        with self._cond:
            self._job(job_id).chunks.append(text)
            self._cond.notify_all()

    def restart(self, job_id: str) -> None:
        """Forget the partial text of a failed attempt."""
        with self._cond:
            progress = self._job(job_id)
            progress.chunks = []
            progress.generation += 1
            self._cond.notify_all()

    def knows(self, job_id: str) -> bool:
        """Whether this process runs (or ran) the job, so its progress can be watched here."""
        with self._cond:
            return job_id in self._jobs

    def text(self, job_id: str) -> str:
        """The reply text received so far."""
        with self._cond:
            progress = self._jobs.get(job_id)
            return "".join(progress.chunks) if progress else ""

    def subscribe(self, session_public_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every update of the session's jobs; returns an unsubscribe."""
        with self._cond:
            self._listeners.setdefault(session_public_id, []).append(listener)

        def unsubscribe() -> None:
            with self._cond:
                listeners = self._listeners.get(session_public_id, [])
                if listener in listeners:
                    listeners.remove(listener)
                if not listeners:
                    self._listeners.pop(session_public_id, None)

        return unsubscribe

    def watch(self, job_id: str, timeout: float = 300.0) -> Iterator[str | JobUpdate]:
        """Yield reply text (``str``) and state changes (``JobUpdate``) until the job ends.

        When an attempt fails after some text was sent, watching stops early: the text shown
        belongs to a failed attempt, and the caller should re-read the job and watch again.
        """
        deadline = time.monotonic() + timeout
        sent = 0
        generation: int | None = None
        seen_update: JobUpdate | None = None
        while True:
            with self._cond:
                progress = self._job(job_id)
                if generation is None:
                    generation = progress.generation
                if progress.generation != generation:
                    if sent:
                        return
                    generation = progress.generation
                fresh: list[str | JobUpdate] = list(progress.chunks[sent:])
                sent = len(progress.chunks)
                if progress.last is not None and progress.last is not seen_update:
                    seen_update = progress.last
                    fresh.insert(0, progress.last)
                done = progress.status in FINISHED_STATES
                if not fresh and not done:
                    self._cond.wait(FOLLOW_POLL_SECONDS)
            yield from fresh
            if done or time.monotonic() > deadline:
                return
