"""Demo traffic through the real pipeline: users, sessions, messages and AI replies made by the
same services as the app, answered by the simulated provider, and logged to the real event log.

Replies take real (short) time; their log timestamps are back-dated so the traffic spreads over the
last ``days``: each session starts at its own moment in that span and its events keep their real
spacing from there. Latencies in the events are the real ones the pipeline measured.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.app_context import AppContext
from nexus_core.db.columns import utc_now
from nexus_core.errors import NotFound, ValidationError
from nexus_core.ops.events import ApiEventLogger
from nexus_core.users import UserView

DEMO_USER_PREFIX = "demo-user-"
MESSAGES_PER_SESSION = (1, 4)
WORD_LATENCY_RANGE = (0.001, 0.02)  # seconds per word: replies of roughly 0.1 s to 2 s
RETRY_BASE_SECONDS = 0.05
PROMPTS = (
    "How do we roll back a bad deploy?",
    "Summarise last week's incident review.",
    "Review this function for thread safety.",
    "Draft release notes for the dashboard.",
    "Which feedback categories grew this month?",
    "Explain our error budget to a new hire.",
    "What should an on-call runbook contain?",
    "Compare Postgres and SQLite for this app.",
)


class BackdatedClock:
    """A clock for the event log: the current session's start plus the real time since then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base = utc_now()
        self._real_start = utc_now()

    def start_at(self, moment: datetime) -> None:
        """Make the next events count from ``moment``."""
        with self._lock:
            self._base, self._real_start = moment, utc_now()

    def __call__(self) -> datetime:
        with self._lock:
            return self._base + (utc_now() - self._real_start)


@dataclass(frozen=True)
class SimulationReport:
    """What a simulation produced."""

    users: int
    sessions: int
    replies: int
    failures: int


def _demo_users(ctx: AppContext, count: int) -> list[UserView]:
    users = []
    for index in range(1, count + 1):
        name = f"{DEMO_USER_PREFIX}{index}"
        try:
            users.append(ctx.users.get(name))
        except NotFound:
            users.append(
                ctx.users.create(
                    name,
                    secrets.token_urlsafe(16),
                    display_name=f"Demo user {index}",
                    must_change_password=True,
                )
            )
    return users


def simulate(
    ctx: AppContext,
    *,
    users: int,
    sessions: int,
    days: float,
    failure_rate: float = 0.0,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    word_latency: tuple[float, float] = WORD_LATENCY_RANGE,
) -> SimulationReport:
    """Run ``sessions`` demo conversations for ``users`` demo users, spread over ``days``."""
    if users < 1 or sessions < 1 or days <= 0:
        raise ValidationError("--users and --sessions must be at least 1 and --days above 0.")
    rng = random.Random(seed)
    people = _demo_users(ctx, users)
    personas = [p.name for p in ctx.personas.list()]
    if not personas:
        raise ValidationError("There are no active personas; run `nexus init` first.")
    clock = BackdatedClock()
    log = ApiEventLogger(
        ctx.settings.event_log_path,
        ctx.settings.log_max_bytes,
        ctx.settings.log_backups,
        clock=clock,
    )
    provider = SimulatedProvider(failure_rate=failure_rate, seed=seed)
    worker = ResponseWorker(
        ctx.db, provider, log, retry_base_seconds=RETRY_BASE_SECONDS, max_workers=1, rng=rng
    )
    now = utc_now()
    starts = sorted(now - timedelta(days=days) * rng.random() for _ in range(sessions))
    replies = failures = 0
    try:
        for done, started in enumerate(starts, start=1):
            clock.start_at(started)
            user = rng.choice(people)
            chat = ctx.chat.create_session(user, rng.choice(personas))
            for _ in range(rng.randint(*MESSAGES_PER_SESSION)):
                provider.latency_seconds = rng.uniform(*word_latency)
                message = ctx.chat.add_user_message(chat.public_id, user, rng.choice(PROMPTS))
                job = worker.wait(worker.enqueue(message.id, user))
                replies += job.status == "succeeded"
                failures += job.status == "failed"
            if progress is not None:
                progress(done, sessions)
    finally:
        worker.shutdown()
        log.close()
    return SimulationReport(
        users=len(people), sessions=sessions, replies=replies, failures=failures
    )
