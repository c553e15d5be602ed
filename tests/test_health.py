"""Health checks: real databases and Redis, closed ports, AI configuration, and no secrets out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.lanes import OVERDUE_GRACE_SECONDS
from nexus_core.ai.providers import build_provider
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.chat import ChatService
from nexus_core.credentials import scrub
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, ChatSession
from nexus_core.ops.events import ListEventSink
from nexus_core.ops.health import (
    DATABASE_OK_DETAIL,
    SIMULATED_IN_PRODUCTION,
    CheckResult,
    HealthReport,
    check_ai,
    check_ai_workers,
    check_database,
    check_database_url,
    check_redis,
    describe_failure,
    health_engine_kwargs,
    run_health,
)
from nexus_core.personas import PersonaService
from nexus_core.settings import Settings
from nexus_core.users import UserService, UserView
from nexus_core.web.server import routes
from tests.constants import PASSWORD
from tests.fakes.clock import ManualClock
from tests.fakes.gated_provider import GatedProvider

CLOSED_PG_URL = "postgresql+psycopg://nobody@127.0.0.1:9/none"
SECRET_PG_URL = "postgresql+psycopg://u:SuperSecret123@127.0.0.1:9/x"
DB_PASSWORD = "SuperSecret123"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"
SECRET_REDIS_URL = "redis://:RedisSecret99@127.0.0.1:1/0"
REDIS_PASSWORD = "RedisSecret99"
GEMINI_KEY = "AIzaSyTestKey-DoNotLeak-0123456789"
QUICK_SECONDS = 5.0
REQUIRE_SERVICES_ENV = "NEXUS_REQUIRE_SERVICES"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "env": "test",
        "ai_provider": "simulated",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def something_listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers, like a hung database."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()
    deadline = time.monotonic() + QUICK_SECONDS  # let abandoned probes see the reset and end
    while time.monotonic() < deadline and any(
        t.name == "nexus-health-database" for t in threading.enumerate()
    ):
        time.sleep(0.05)


# --- database ---------------------------------------------------------------------------------


def test_database_check_runs_select_1_on_the_real_database(db: Database) -> None:
    result = check_database(db)

    assert result == CheckResult("database", True, result.latency_ms, DATABASE_OK_DETAIL)
    assert 0 <= result.latency_ms < QUICK_SECONDS * 1000


def test_a_database_that_answers_but_cannot_be_written_is_not_healthy(
    db: Database, settings: Settings, read_only_url: Callable[[Database], str]
) -> None:
    frozen = Database(read_only_url(db))
    try:
        result = check_database(frozen)
        report = run_health(dataclasses.replace(settings, database_url=frozen.url), frozen)
    finally:
        frozen.dispose()
    assert not result.ok and "readonly" in result.detail.replace("-", "").replace(" ", "")
    assert report.status == "error" and report.http_status == 503
    assert check_database(db).ok  # the same database, writable again through its own URL


def test_healthy_database_and_simulated_model_give_status_ok_and_200(
    settings: Settings, db: Database
) -> None:
    report = run_health(settings, db)

    assert report.status == "ok"
    assert report.http_status == 200
    assert set(report.checks) == {"database", "ai", "ai_workers"}


def test_postgres_at_closed_port_is_not_ok_quickly_and_report_is_503(tmp_path: Path) -> None:
    db = Database(CLOSED_PG_URL, **health_engine_kwargs(CLOSED_PG_URL))
    started = time.monotonic()
    try:
        result = check_database(db)
        report = run_health(make_settings(tmp_path, database_url=CLOSED_PG_URL), db)
    finally:
        db.dispose()

    assert time.monotonic() - started < QUICK_SECONDS
    assert not result.ok
    assert result.detail.startswith("OperationalError")
    assert report.status == "error"
    assert report.http_status == 503


def test_health_without_a_database_object_probes_database_url_afresh(tmp_path: Path) -> None:
    started = time.monotonic()
    report = run_health(make_settings(tmp_path, database_url=CLOSED_PG_URL))

    assert time.monotonic() - started < QUICK_SECONDS
    assert report.checks["database"]["ok"] is False
    assert report.http_status == 503


def test_sqlite_under_a_plain_file_is_not_ok(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")

    result = check_database_url(f"sqlite:///{blocker / 'data' / 'nexus.db'}")

    assert not result.ok
    assert "Error" in result.detail


def test_sqlite_whose_folder_was_replaced_by_a_file_is_not_ok_and_report_is_503(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    url = f"sqlite:///{folder / 'nexus.db'}"
    db = Database(url)  # creates the folder
    folder.rmdir()
    folder.write_text("the folder is gone")
    try:
        result = check_database(db)
        report = run_health(make_settings(tmp_path, database_url=url), db)
    finally:
        db.dispose()

    assert not result.ok
    assert result.detail == "OperationalError: unable to open database file"
    assert report.http_status == 503


def test_database_that_never_answers_is_abandoned_after_the_timeout(silent_server: int) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{silent_server}/none"
    db = Database(url)  # no connect timeout: only the check's own limit stops the wait
    started = time.monotonic()
    try:
        result = check_database(db, timeout_seconds=0.5)
    finally:
        db.dispose()

    assert time.monotonic() - started < 2
    assert result == CheckResult("database", False, result.latency_ms, "no answer within 0.5 s")


def test_probe_database_gets_a_driver_connect_timeout(silent_server: int) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{silent_server}/none"
    started = time.monotonic()

    result = check_database_url(url, timeout_seconds=1)

    assert time.monotonic() - started < QUICK_SECONDS
    assert not result.ok
    # The driver's own reason, or (on a loaded machine, where the driver's timer fires late)
    # the check's limit just past it; either way the probe gave up.
    assert result.detail in (
        "ConnectionTimeout: connection timeout expired",
        "no answer within 2.5 s",
    )
    assert health_engine_kwargs(url, 1)["connect_args"] == {"connect_timeout": 2}
    assert health_engine_kwargs(url, 3)["connect_args"] == {"connect_timeout": 3}
    assert "connect_args" not in health_engine_kwargs("sqlite:///x.db")


def test_the_probes_own_connection_attempt_ends_by_itself(silent_server: int) -> None:
    """The driver's connect timeout ends the attempt, so an abandoned probe leaves no thread
    waiting forever on a database that never answers."""
    url = f"postgresql+psycopg://nobody@127.0.0.1:{silent_server}/none"
    db = Database(url, **health_engine_kwargs(url, 1))
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            db.engine.connect().close()
        except Exception as exc:
            outcome.append(exc)

    attempt = threading.Thread(target=connect, daemon=True)
    try:
        attempt.start()
        attempt.join(timeout=60)  # a generous bound for a loaded machine; 2 s when quiet
    finally:
        db.dispose()

    assert not attempt.is_alive(), "the connection attempt did not end by itself"
    assert "connection timeout expired" in str(outcome[0])


def test_unparseable_database_url_is_not_ok() -> None:
    result = check_database_url("not a url")

    assert (result.ok, result.detail) == (False, "DATABASE_URL is not valid")


# --- redis ------------------------------------------------------------------------------------


def test_redis_is_not_checked_when_not_configured(tmp_path: Path) -> None:
    assert check_redis(None) is None
    assert check_redis("") is None
    assert "redis" not in run_health(make_settings(tmp_path)).checks


def test_local_redis_answers_ping() -> None:
    if not something_listens("127.0.0.1", 6379) and not os.environ.get(REQUIRE_SERVICES_ENV):
        pytest.skip(f"nothing listens on 127.0.0.1:6379 and {REQUIRE_SERVICES_ENV} is not set")

    result = check_redis(LOCAL_REDIS_URL)

    assert result == CheckResult("redis", True, result.latency_ms, "PING ok")


def test_redis_at_closed_port_is_not_ok_quickly() -> None:
    started = time.monotonic()

    result = check_redis(CLOSED_REDIS_URL, timeout_seconds=1)

    assert time.monotonic() - started < QUICK_SECONDS
    assert result is not None
    assert not result.ok
    assert result.detail.startswith("ConnectionError")


def test_malformed_redis_url_is_not_ok() -> None:
    result = check_redis("http://:RedisSecret99@example.invalid/0")

    assert result is not None
    assert not result.ok
    assert result.detail.startswith("REDIS_URL is not valid")
    assert REDIS_PASSWORD not in result.detail


def test_failing_redis_makes_the_report_503(tmp_path: Path) -> None:
    report = run_health(make_settings(tmp_path, redis_url=CLOSED_REDIS_URL))

    assert report.checks["redis"]["ok"] is False
    assert report.http_status == 503


# --- ai ---------------------------------------------------------------------------------------


def test_gemini_with_a_key_is_ok_and_names_provider_and_model(tmp_path: Path) -> None:
    result = check_ai(make_settings(tmp_path, ai_provider="gemini", gemini_api_key=GEMINI_KEY))

    assert result.ok
    assert result.detail == "gemini: key configured, model gemini-flash-latest"


def test_gemini_without_a_key_is_not_ok_and_says_which_setting(tmp_path: Path) -> None:
    result = check_ai(make_settings(tmp_path, ai_provider="gemini"))

    assert not result.ok
    assert "GEMINI_API_KEY" in result.detail


def test_openai_with_base_and_model_is_ok(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        ai_provider="openai",
        openai_api_base="http://localhost:11434/v1",
        openai_model="llama3.2",
    )

    result = check_ai(settings)

    assert result.ok
    assert result.detail == "openai: base URL and model configured, model llama3.2"


def test_openai_without_base_is_not_ok_and_says_which_setting(tmp_path: Path) -> None:
    result = check_ai(make_settings(tmp_path, ai_provider="openai", openai_model="llama3.2"))

    assert not result.ok
    assert "OPENAI_API_BASE" in result.detail


def test_simulated_model_is_ok_in_development(tmp_path: Path) -> None:
    result = check_ai(make_settings(tmp_path, env="development"))

    assert result.ok
    assert result.detail.startswith("simulated:")


def test_simulated_model_in_production_is_not_ok(tmp_path: Path) -> None:
    result = check_ai(make_settings(tmp_path, env="production"))

    assert not result.ok
    assert result.detail == SIMULATED_IN_PRODUCTION


def test_ai_check_closes_the_provider_it_built(tmp_path: Path) -> None:
    closed: list[bool] = []

    class ClosingProvider(SimulatedProvider):
        def close(self) -> None:
            closed.append(True)

    result = check_ai(make_settings(tmp_path), provider_factory=lambda s: ClosingProvider())

    assert result.ok
    assert closed == [True]


def test_ai_check_reports_an_unconfigured_provider(tmp_path: Path) -> None:
    class UnconfiguredProvider(SimulatedProvider):
        name = "custom"

        def configured(self) -> bool:
            return False

    result = check_ai(make_settings(tmp_path), provider_factory=lambda s: UnconfiguredProvider())

    assert result == CheckResult("ai", False, result.latency_ms, "custom: not configured")


# --- the report -------------------------------------------------------------------------------


def test_report_has_the_contract_shape(tmp_path: Path) -> None:
    report = run_health(make_settings(tmp_path, redis_url=CLOSED_REDIS_URL))

    body = json.loads(json.dumps(report.to_dict()))
    assert set(body) == {"status", "checks"}
    assert body["status"] in ("ok", "error")
    assert list(body["checks"]) == ["database", "redis", "ai", "ai_workers"]
    for check in body["checks"].values():
        assert set(check) == {"ok", "latency_ms", "detail"}
        assert isinstance(check["ok"], bool)
        assert isinstance(check["latency_ms"], float)
        assert isinstance(check["detail"], str)
        assert check["detail"]


def test_report_never_contains_the_gemini_key_or_passwords(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        database_url=SECRET_PG_URL,
        redis_url=SECRET_REDIS_URL,
        ai_provider="gemini",
        gemini_api_key=GEMINI_KEY,
    )

    report = run_health(settings, provider_factory=build_provider)

    text = json.dumps(report.to_dict())
    assert report.http_status == 503
    for secret in (GEMINI_KEY, DB_PASSWORD, REDIS_PASSWORD):
        assert secret not in text


def test_failure_details_drop_credentials_from_urls_and_conninfo() -> None:
    exc = RuntimeError(
        f"cannot reach {SECRET_PG_URL} (password={DB_PASSWORD} host=db)\n{DB_PASSWORD} again"
    )

    detail = describe_failure(exc)

    assert DB_PASSWORD not in detail
    assert detail.startswith("RuntimeError: cannot reach postgresql+psycopg://[redacted]@127.0.0.1")
    assert scrub("token abc123 here", ["abc123"]) == "token [redacted] here"


def test_report_status_is_error_when_any_check_fails() -> None:
    report = HealthReport.from_results(
        [CheckResult("database", True, 1.0, "SELECT 1 ok"), CheckResult("ai", False, 0.1, "x")]
    )

    assert (report.status, report.ok, report.http_status) == ("error", False, 503)


# --- ai workers ---------------------------------------------------------------------------------


@pytest.fixture
def member(db: Database) -> UserView:
    PersonaService(db).seed_defaults()
    return UserService(db).create("quinn", PASSWORD)


def ask_in_new_session(db: Database, worker: ResponseWorker, user: UserView, text: str) -> str:
    chat = ChatService(db)
    session = chat.create_session(user, "Nexus Assistant")
    return worker.enqueue(chat.add_user_message(session.public_id, user, text).id, user)


def until(condition: Callable[[], bool], timeout: float = QUICK_SECONDS * 4) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)


@pytest.fixture
def gated() -> Iterator[GatedProvider]:
    provider = GatedProvider()
    yield provider
    provider.open()  # let anything still waiting finish


def test_an_idle_worker_pool_is_ok_and_shows_each_lanes_threads(
    settings: Settings, db: Database
) -> None:
    worker = ResponseWorker(
        db, SimulatedProvider(latency_seconds=0), ListEventSink(), lanes={"compare": 2}
    )
    try:
        result = check_ai_workers(settings, worker.load(), db)
    finally:
        worker.shutdown()

    assert result == CheckResult(
        "ai_workers", True, result.latency_ms, "chat 0/4 busy; compare 0/2 busy"
    )


def test_without_a_worker_pool_the_check_reads_the_jobs_table_alone(
    settings: Settings, db: Database
) -> None:
    result = check_ai_workers(settings, (), db)

    assert (result.ok, result.detail) == (True, "no worker pool in this process")


def test_a_chat_reply_waiting_too_long_for_a_busy_pool_fails_the_check(
    settings: Settings, db: Database, member: UserView, gated: GatedProvider
) -> None:
    clock = ManualClock()
    worker = ResponseWorker(db, gated, ListEventSink(), max_workers=1, clock=clock)
    first = ask_in_new_session(db, worker, member, "one")
    second = ask_in_new_session(db, worker, member, "two")
    until(lambda: gated.waiting() == 1)  # the only thread is busy, the second reply queues
    clock.advance(settings.health_queue_wait_seconds + 1)

    saturated = check_ai_workers(settings, worker.load(), db)
    report = run_health(settings, db, lanes=worker.load())
    gated.open()
    worker.wait(first, timeout=30)
    worker.wait(second, timeout=30)
    recovered = check_ai_workers(settings, worker.load(), db)
    worker.shutdown()

    assert not saturated.ok
    assert saturated.detail == (
        "saturated: a chat reply has waited 31 s for a worker (limit 30 s); "
        "chat 1/1 busy, 1 queued (oldest 31 s)"
    )
    assert (report.status, report.http_status) == ("error", 503)
    assert report.checks["ai_workers"]["ok"] is False
    assert recovered.ok and recovered.detail == "chat 0/1 busy"


def test_a_job_running_past_its_deadline_fails_the_check(
    settings: Settings, db: Database, member: UserView, gated: GatedProvider
) -> None:
    clock = ManualClock()
    worker = ResponseWorker(db, gated, ListEventSink(), clock=clock, job_deadline_seconds=60)
    job = ask_in_new_session(db, worker, member, "never answered")
    until(lambda: gated.waiting() == 1)
    clock.advance(60 + OVERDUE_GRACE_SECONDS + 1)

    stuck = check_ai_workers(dataclasses.replace(settings, job_deadline_seconds=60), worker.load())
    gated.open()
    worker.wait(job, timeout=30)
    worker.shutdown()

    assert not stuck.ok
    assert stuck.detail == "stuck: 1 job running past the 60 s deadline; chat 1/4 busy"


def test_stored_jobs_that_wait_or_hang_fail_the_check_from_any_process(
    settings: Settings, db: Database, member: UserView
) -> None:
    chat = ChatService(db)
    session = chat.create_session(member, "Nexus Assistant")
    message = chat.add_user_message(session.public_id, member, "waiting")
    now = utc_now()
    with db.session() as s:
        persona_id = s.get(ChatSession, session.id).persona_id
        run_session = ChatSession(
            user_id=member.id, persona_id=persona_id, persona_version=1, run_id="a-test-set-run"
        )
        s.add(run_session)
        s.flush()
        s.add_all(
            [
                # a chat reply queued for ten minutes (no worker took it)
                AiJob(
                    session_id=session.id,
                    user_message_id=message.id,
                    status="queued",
                    created_at=now - timedelta(minutes=10),
                ),
                # a test set's job queues by design: not a chat reply, so not counted
                AiJob(
                    session_id=run_session.id,
                    user_message_id=message.id,
                    status="queued",
                    created_at=now - timedelta(hours=2),
                ),
                # a job that started an hour ago and never finished
                AiJob(
                    session_id=session.id,
                    user_message_id=message.id,
                    status="running",
                    started_at=now - timedelta(hours=1),
                    created_at=now - timedelta(hours=1),
                ),
            ]
        )

    report = run_health(settings)  # a fresh connection, as GET /health and `nexus health` use

    check = report.checks["ai_workers"]
    assert report.http_status == 503 and check["ok"] is False
    assert check["detail"].startswith(
        "saturated: a chat reply has waited 600 s for a worker (limit 30 s); "
        "stuck: 1 job running past the 90 s deadline"
    )


def test_a_database_without_the_jobs_table_leaves_the_check_ok(tmp_path: Path) -> None:
    report = run_health(make_settings(tmp_path))  # a brand-new SQLite file: no tables

    check = report.checks["ai_workers"]
    assert check["ok"] is True
    assert (
        check["detail"] == "no worker pool in this process; jobs table not read (OperationalError)"
    )


async def get_health(app: Starlette) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nexus.test") as client:
        return await client.get("/health")


def test_the_health_route_reports_the_live_pool_of_its_process(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NEXUS_ENV", "test")
    monkeypatch.setenv("NEXUS_AI_PROVIDER", "simulated")
    worker = ResponseWorker(
        db, SimulatedProvider(latency_seconds=0), ListEventSink(), lanes={"probe_lane": 3}
    )
    try:
        response = asyncio.run(get_health(Starlette(routes=routes())))
    finally:
        worker.shutdown()

    assert response.status_code == 200
    assert "probe_lane 0/3 busy" in response.json()["checks"]["ai_workers"]["detail"]
