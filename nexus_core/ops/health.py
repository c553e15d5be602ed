"""Health checks behind ``GET /health`` and ``nexus health``: database, Redis (when set), AI, and
the AI workers.

Each check is timed with ``perf_counter`` and answers a `CheckResult`; `run_health` gathers them
into a `HealthReport` whose ``to_dict()`` is the contract's shape::

    {"status": "ok"|"error",
     "checks": {"database": {"ok": true, "latency_ms": 1.2, "detail": "SELECT 1 ok"},
                "redis": {...},          # only when REDIS_URL is set
                "ai": {...},
                "queue": {...},          # only with the queue backend
                "ai_workers": {...}}}

and whose ``http_status`` is 200 when every configured check passes, else 503.

``queue`` is there with ``NEXUS_JOB_BACKEND=queue``: it fails when the broker does not answer, no
``nexus worker`` has beaten within ``NEXUS_QUEUE_REDELIVERY_SECONDS``, no live worker takes the chat
lane, or jobs wait on another lane no live worker takes; its detail counts the live workers, each
lane's waiting jobs and each lane's live workers. `check_worker_here` (``nexus health --worker``)
is one worker's liveness probe instead: a ``nexus worker`` on this host has beaten in that time.

``ai_workers`` fails when chat replies wait too long for a worker (the chat lane is saturated:
``NEXUS_HEALTH_QUEUE_WAIT_SECONDS``) or a job runs well past its deadline (stuck). It reads the
jobs table — so it sees every process's jobs, and works for ``nexus health`` too — and, in the app
process, the live worker pool (`nexus_core.ai.lanes.live_lane_loads`): threads busy per lane, jobs
queued, the oldest one's wait. Its detail holds numbers and lane names only.

Secrets: a detail is short human text. Failures are described by the exception's class name and
the first line of its message, scrubbed of ``scheme://user:pass@`` credentials, ``password=…``
pairs and any password we know from the URL (`nexus_core.credentials`); provider details never
name a key.

Timeouts: the database probe runs on a daemon thread and the check gives up after
``timeout_seconds`` even if the driver hangs (the thread finishes or dies on its own). A
``Database`` built for health checks alone should also get a driver connect timeout, e.g.
``Database(url, **health_engine_kwargs(url))`` (PostgreSQL/MySQL: ``connect_args={"connect_timeout":
3}``, at least 2 s as libpq insists, and no pool); `check_database_url` does exactly that and waits
just past the driver's timeout, so its reason reaches the detail. Redis gets socket timeouts and no
retries.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from nexus_core.ai.backlog import StoredBacklog, backlog_problems, lane_summary, read_backlog
from nexus_core.ai.lanes import LANE_NAMES, LaneLoad
from nexus_core.ai.protocol import Provider
from nexus_core.ai.providers import build_provider
from nexus_core.credentials import scrub, url_passwords
from nexus_core.db.engine import Database
from nexus_core.errors import ConfigError
from nexus_core.settings import Settings

if TYPE_CHECKING:
    from nexus_core.ai.queue import QueueState

DATABASE = "database"
REDIS = "redis"
AI = "ai"
AI_WORKERS = "ai_workers"
QUEUE = "queue"
WORKER = "worker"
PROBE_SQL = "SELECT 1"
# A write that changes nothing, in a transaction that is rolled back: a read-only database, a
# locked SQLite file or a read-only PostgreSQL transaction fails it while SELECT 1 still answers.
WRITE_PROBE_SQL: Final = {
    "sqlite": ("BEGIN IMMEDIATE", "CREATE TABLE nexus_health_probe (x INTEGER)"),
    "postgresql": ("CREATE TEMPORARY TABLE nexus_health_probe (x integer)",),
}
DATABASE_OK_DETAIL = f"{PROBE_SQL} ok; a write (rolled back) ok"
DB_TIMEOUT_SECONDS = 3.0
REDIS_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_DRIVERS = frozenset({"postgresql", "mysql", "mariadb"})
MIN_CONNECT_TIMEOUT_SECONDS = 2  # libpq and psycopg round anything shorter up to 2 s
DRIVER_GRACE_SECONDS = 0.5
MAX_DETAIL_CHARS = 200
LATENCY_DECIMALS = 2
SIMULATED_IN_PRODUCTION = "simulated model in production"
HTTP_OK = 200
HTTP_UNAVAILABLE = 503


ProviderFactory = Callable[[Settings], Provider]
Status = Literal["ok", "error"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one health check: whether it passed, how long it took, and a safe note."""

    name: str
    ok: bool
    latency_ms: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The check as the contract's ``{"ok", "latency_ms", "detail"}`` object."""
        return {"ok": self.ok, "latency_ms": self.latency_ms, "detail": self.detail}


@dataclass(frozen=True)
class HealthReport:
    """All checks of one health run; ``status`` is ``ok`` only when every check passed."""

    status: Status
    checks: dict[str, dict[str, Any]]

    @classmethod
    def from_results(cls, results: Iterable[CheckResult]) -> HealthReport:
        """The report for these check results, in the order given."""
        checks = {result.name: result.to_dict() for result in results}
        status: Status = "ok" if all(c["ok"] for c in checks.values()) else "error"
        return cls(status=status, checks=checks)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def http_status(self) -> int:
        return HTTP_OK if self.ok else HTTP_UNAVAILABLE

    def to_dict(self) -> dict[str, Any]:
        """``{"status": ..., "checks": {name: {"ok", "latency_ms", "detail"}}}`` (a copy)."""
        return {"status": self.status, "checks": {k: dict(v) for k, v in self.checks.items()}}


def describe_failure(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """``ClassName: first line of the message``, scrubbed and shortened, for a check's detail."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig  # the driver's own words, without SQLAlchemy's statement and links
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = scrub(lines[0], secrets) if lines else ""
    detail = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return detail


def health_engine_kwargs(url: str, timeout_seconds: float = DB_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Engine arguments for a probe-only ``Database``: no pool and a driver connect timeout."""
    kwargs: dict[str, Any] = {"poolclass": NullPool}
    if make_url(url).get_backend_name() in CONNECT_TIMEOUT_DRIVERS:
        kwargs["connect_args"] = {"connect_timeout": _connect_timeout(timeout_seconds)}
    return kwargs


def check_database(db: Database, timeout_seconds: float = DB_TIMEOUT_SECONDS) -> CheckResult:
    """Run ``SELECT 1`` on ``db``, giving up after ``timeout_seconds``."""
    secrets = url_passwords(str(db.url))
    outcome: list[BaseException | None] = []
    started = perf_counter()
    probe = threading.Thread(
        target=_probe_database, args=(db, outcome), name="nexus-health-database", daemon=True
    )
    probe.start()
    probe.join(timeout_seconds)
    latency_ms = _elapsed_ms(started)
    if not outcome:
        return CheckResult(DATABASE, False, latency_ms, f"no answer within {timeout_seconds:g} s")
    error = outcome[0]
    if error is not None:
        return CheckResult(DATABASE, False, latency_ms, describe_failure(error, secrets))
    return CheckResult(DATABASE, True, latency_ms, DATABASE_OK_DETAIL)


def check_database_url(url: str, timeout_seconds: float = DB_TIMEOUT_SECONDS) -> CheckResult:
    """Check the database at ``url`` with a probe-only ``Database`` that is disposed afterwards."""
    with _probed_database_url(url, timeout_seconds) as (result, _db):
        return result


@contextlib.contextmanager
def _probed_database_url(
    url: str, timeout_seconds: float
) -> Iterator[tuple[CheckResult, Database | None]]:
    """The database check of ``url`` and, while the block runs, its probe-only ``Database``
    (None when it could not be built)."""
    started = perf_counter()
    try:
        db = Database(url, **health_engine_kwargs(url, timeout_seconds))
    except (ConfigError, ArgumentError):
        yield CheckResult(DATABASE, False, _elapsed_ms(started), "DATABASE_URL is not valid"), None
        return
    except Exception as exc:  # e.g. a missing driver, or a SQLite folder that cannot be made
        detail = describe_failure(exc, url_passwords(url))
        yield CheckResult(DATABASE, False, _elapsed_ms(started), detail), None
        return
    # Wait a little past the driver's own timeout so its reason, not ours, reaches the detail.
    limit = max(timeout_seconds, _connect_timeout(timeout_seconds)) + DRIVER_GRACE_SECONDS
    try:
        yield check_database(db, limit), db
    finally:
        db.dispose()


def check_redis(
    url: str | None, timeout_seconds: float = REDIS_TIMEOUT_SECONDS
) -> CheckResult | None:
    """PING the Redis at ``url`` with socket timeouts; None when Redis is not configured."""
    if not url:
        return None
    secrets = url_passwords(url)
    started = perf_counter()
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),  # a health check reports, it does not insist
            health_check_interval=0,
        )
    except Exception as exc:  # redis-py rejects a malformed URL with ValueError
        detail = f"REDIS_URL is not valid ({describe_failure(exc, secrets)})"
        return CheckResult(REDIS, False, _elapsed_ms(started), detail)
    try:
        answered = client.ping()
    except Exception as exc:
        return CheckResult(REDIS, False, _elapsed_ms(started), describe_failure(exc, secrets))
    finally:
        client.close()
    if not answered:
        return CheckResult(REDIS, False, _elapsed_ms(started), "PING got no PONG")
    return CheckResult(REDIS, True, _elapsed_ms(started), "PING ok")


def check_queue(
    settings: Settings, timeout_seconds: float = REDIS_TIMEOUT_SECONDS
) -> CheckResult | None:
    """The queue backend: the broker answers, a live worker takes the chat lane, and live workers
    take every lane with jobs waiting; None with the thread backend."""
    if settings.job_backend != "queue" or not settings.broker_url:
        return None
    started = perf_counter()
    state = _read_queue_state(settings, timeout_seconds)
    if isinstance(state, str):
        return CheckResult(QUEUE, False, _elapsed_ms(started), state)
    problems = state.problems()
    detail = "; ".join([*problems, state.summary()])[:MAX_DETAIL_CHARS]
    return CheckResult(QUEUE, not problems, _elapsed_ms(started), detail)


def check_worker_here(
    settings: Settings, host: str | None = None, timeout_seconds: float = REDIS_TIMEOUT_SECONDS
) -> CheckResult:
    """Whether a ``nexus worker`` on ``host`` (default this one) has beaten within
    ``NEXUS_QUEUE_REDELIVERY_SECONDS``: the liveness probe of a worker's container or unit."""
    started = perf_counter()
    if settings.job_backend != "queue" or not settings.broker_url:
        detail = "not the queue backend: set NEXUS_JOB_BACKEND=queue and REDIS_URL"
        return CheckResult(WORKER, False, _elapsed_ms(started), detail)
    host = host or socket.gethostname()
    state = _read_queue_state(settings, timeout_seconds)
    if isinstance(state, str):
        return CheckResult(WORKER, False, _elapsed_ms(started), state)
    here = state.on_host(host)
    window = f"{settings.queue_redelivery_seconds:g} s"
    if not here:
        detail = f"no `nexus worker` on {host} has beaten within {window}"
        return CheckResult(WORKER, False, _elapsed_ms(started), detail[:MAX_DETAIL_CHARS])
    described = ", ".join(f"{name} ({','.join(lanes)})" for name, lanes in here)
    detail = f"beating within {window}: {described}"[:MAX_DETAIL_CHARS]
    return CheckResult(WORKER, True, _elapsed_ms(started), detail)


def _read_queue_state(settings: Settings, timeout_seconds: float) -> QueueState | str:
    """The queue's state from the broker, or why it could not be read (a safe detail)."""
    from nexus_core.ai.queue import queue_state

    url = settings.broker_url or ""
    client: redis.Redis | None = None
    try:  # redis-py rejects a malformed URL with ValueError
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return queue_state(
            client, settings.queue_namespace, LANE_NAMES, settings.queue_redelivery_seconds
        )
    except Exception as exc:
        return describe_failure(exc, url_passwords(url))
    finally:
        if client is not None:
            client.close()


def check_ai(settings: Settings, provider_factory: ProviderFactory = build_provider) -> CheckResult:
    """Whether the configured AI provider has what it needs, without calling it."""
    started = perf_counter()
    try:
        provider = provider_factory(settings)
    except ConfigError as exc:
        return CheckResult(AI, False, _elapsed_ms(started), str(exc))
    except Exception as exc:
        secrets = (settings.gemini_api_key, settings.openai_api_key)
        detail = f"{settings.ai_provider}: {describe_failure(exc, secrets)}"
        return CheckResult(AI, False, _elapsed_ms(started), detail)
    try:
        ok, detail = _describe_provider(provider, settings)
    finally:
        close = getattr(provider, "close", None)
        if callable(close):
            close()
    return CheckResult(AI, ok, _elapsed_ms(started), detail)


def check_ai_workers(
    settings: Settings,
    lanes: Sequence[LaneLoad] = (),
    db: Database | None = None,
    timeout_seconds: float = DB_TIMEOUT_SECONDS,
) -> CheckResult:
    """Whether chat replies get a worker in time and no job is stuck past its deadline.

    ``lanes`` are the live pool's (empty outside the app process); ``db``, when given, adds what
    the jobs table says (every process's jobs).
    """
    started = perf_counter()
    stored, note = StoredBacklog(None, 0), ""
    if db is not None:
        try:
            stored = _within(
                timeout_seconds,
                lambda: read_backlog(db, settings.job_deadline_seconds),
                "nexus-health-jobs",
            )
        except Exception as exc:  # e.g. no jobs table yet: the database check speaks for the DB
            note = f"jobs table not read ({type(exc).__name__})"
    problems = backlog_problems(
        lanes,
        stored,
        max_wait_seconds=settings.health_queue_wait_seconds,
        deadline_seconds=settings.job_deadline_seconds,
    )
    busy = [lane_summary(lane) for lane in lanes] or ["no worker pool in this process"]
    detail = "; ".join(part for part in (*problems, *busy, note) if part)
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return CheckResult(AI_WORKERS, not problems, _elapsed_ms(started), detail)


def run_health(
    settings: Settings,
    db: Database | None = None,
    *,
    provider_factory: ProviderFactory = build_provider,
    timeout_seconds: float = DB_TIMEOUT_SECONDS,
    lanes: Sequence[LaneLoad] = (),
) -> HealthReport:
    """Every configured check; without ``db``, the database at ``DATABASE_URL`` is probed afresh.

    ``lanes``: the live worker pool's load, which only the app process can pass.
    """
    with contextlib.ExitStack() as stack:
        if db is None:
            database, probe = stack.enter_context(
                _probed_database_url(settings.database_url, timeout_seconds)
            )
        else:
            database, probe = check_database(db, timeout_seconds), db
        results = [database]
        redis_result = check_redis(settings.redis_url)
        if redis_result is not None:
            results.append(redis_result)
        results.append(check_ai(settings, provider_factory))
        queue_result = check_queue(settings)
        if queue_result is not None:
            results.append(queue_result)
        jobs_db = probe if database.ok else None
        results.append(check_ai_workers(settings, lanes, jobs_db, timeout_seconds))
    return HealthReport.from_results(results)


def _within(timeout_seconds: float, work: Callable[[], StoredBacklog], name: str) -> StoredBacklog:
    """``work()`` on a daemon thread, given up after ``timeout_seconds`` (TimeoutError)."""
    outcome: list[StoredBacklog | BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    if not outcome:
        raise TimeoutError(f"no answer within {timeout_seconds:g} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _describe_provider(provider: Provider, settings: Settings) -> tuple[bool, str]:
    name = getattr(provider, "name", settings.ai_provider)
    model = getattr(provider, "default_model", "") or "?"
    if name == "simulated":
        if settings.is_production:
            return False, SIMULATED_IN_PRODUCTION
        return True, f"simulated: offline demo model {model}"
    if not provider.configured():
        return False, f"{name}: not configured"
    if name == "gemini":
        return True, f"gemini: key configured, model {model}"
    if name == "openai":
        return True, f"openai: base URL and model configured, model {model}"
    return True, f"{name}: configured, model {model}"


def _probe_database(db: Database, outcome: list[BaseException | None]) -> None:
    # A raw pooled connection, not a Session: the SQLite engine's BEGIN IMMEDIATE hook would make
    # every probe take the write lock and queue behind writers; the write probe takes it once.
    try:
        connection = db.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(PROBE_SQL)
                cursor.fetchone()
                for statement in WRITE_PROBE_SQL.get(db.dialect, ()):
                    cursor.execute(statement)
            finally:
                cursor.close()
                connection.rollback()
        finally:
            connection.close()
    except Exception as exc:
        outcome.append(exc)
    else:
        outcome.append(None)


def _connect_timeout(timeout_seconds: float) -> int:
    # Drivers take whole seconds, and 0 would mean "wait forever".
    return max(MIN_CONNECT_TIMEOUT_SECONDS, math.ceil(timeout_seconds))


def _elapsed_ms(started: float) -> float:
    return round((perf_counter() - started) * 1000, LATENCY_DECIMALS)
