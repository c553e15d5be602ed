"""Health checks: real databases and Redis, closed ports, AI configuration, and no secrets out."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_core.ai.providers import build_provider
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.db.engine import Database
from nexus_core.health import (
    SIMULATED_IN_PRODUCTION,
    CheckResult,
    HealthReport,
    check_ai,
    check_database,
    check_database_url,
    check_redis,
    describe_failure,
    health_engine_kwargs,
    run_health,
    scrub,
)
from nexus_core.settings import Settings

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

    assert result == CheckResult("database", True, result.latency_ms, "SELECT 1 ok")
    assert 0 <= result.latency_ms < QUICK_SECONDS * 1000


def test_healthy_database_and_simulated_model_give_status_ok_and_200(
    settings: Settings, db: Database
) -> None:
    report = run_health(settings, db)

    assert report.status == "ok"
    assert report.http_status == 200
    assert set(report.checks) == {"database", "ai"}


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
    assert result.detail == "ConnectionTimeout: connection timeout expired"
    assert health_engine_kwargs(url, 1)["connect_args"] == {"connect_timeout": 2}
    assert health_engine_kwargs(url, 3)["connect_args"] == {"connect_timeout": 3}
    assert "connect_args" not in health_engine_kwargs("sqlite:///x.db")


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
    assert list(body["checks"]) == ["database", "redis", "ai"]
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
