"""What an operator and an unlucky user meet, against live servers: /health, /metrics, security
headers, the friendly error page with "Report this error", and production start-up refusal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from nexus_core.db.engine import Database
from nexus_core.db.models import Feedback
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    APP_SCRIPT,
    REPO_ROOT,
    LiveApp,
    NewPage,
    _free_port,
    _server_env,
    _stop,
    _wait_until_healthy,
    open_until_visible,
    run_nexus,
    sign_in,
)

pytestmark = pytest.mark.browser

GEMINI_KEY = "AIza-operations-test-key-000000"
DB_PASSWORD = "SuperSecretDbPassword42"
REDIS_PASSWORD = "RedisSecret99"


@contextmanager
def serve(tmp_path: Path, **extra_env: str) -> Iterator[str]:
    """A server around a fresh, initialised data dir with extra settings; yields its URL."""
    data_dir = tmp_path / "data"
    env = _server_env(data_dir)
    run_nexus(env, "init")
    env.update(extra_env)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(APP_SCRIPT),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_healthy(process, url, log_path)
            yield url
        finally:
            _stop(process)


def test_health_names_every_check_and_answers_200(live_app: LiveApp) -> None:
    response = httpx.get(f"{live_app.url}/health", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "ai", "ai_workers"}
    for check in body["checks"].values():
        assert check["ok"] is True and check["latency_ms"] >= 0 and check["detail"]


def test_responses_carry_security_headers(live_app: LiveApp) -> None:
    for path in ("/health", "/"):
        headers = httpx.get(f"{live_app.url}{path}", timeout=10).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "frame-ancestors 'self'" in headers["content-security-policy"]


def test_health_is_503_when_the_database_is_down_and_says_no_secret(tmp_path: Path) -> None:
    closed = f"postgresql+psycopg://nexus:{DB_PASSWORD}@127.0.0.1:{_free_port()}/nexus"
    with serve(tmp_path, DATABASE_URL=closed, GEMINI_API_KEY=GEMINI_KEY) as url:
        response = httpx.get(f"{url}/health", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["checks"]["database"]["ok"] is False
    assert body["checks"]["ai"]["ok"] is True
    assert DB_PASSWORD not in response.text and GEMINI_KEY not in response.text


def test_redis_is_checked_when_configured(tmp_path: Path) -> None:
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2).ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379 on this machine")
    with serve(tmp_path / "up", REDIS_URL="redis://127.0.0.1:6379/0") as url:
        up = httpx.get(f"{url}/health", timeout=30)
    assert up.status_code == 200 and up.json()["checks"]["redis"]["ok"] is True
    down_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{_free_port()}/0"
    with serve(tmp_path / "down", REDIS_URL=down_url) as url:
        down = httpx.get(f"{url}/health", timeout=30)
    assert down.status_code == 503 and down.json()["checks"]["redis"]["ok"] is False
    assert REDIS_PASSWORD not in down.text


def test_production_refuses_to_start_without_a_cookie_key(tmp_path: Path) -> None:
    env = _server_env(tmp_path / "data")
    env["NEXUS_ENV"] = "production"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP_SCRIPT),
            "--server.port",
            str(_free_port()),
            "--server.address",
            "127.0.0.1",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("nexus:")]
    assert len(lines) == 1 and "NEXUS_COOKIE_KEY" in lines[0]
    assert "Traceback" not in result.stderr


def metric_value(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def test_metrics_parse_and_move_after_a_chat(live_app: LiveApp, new_page: NewPage) -> None:
    families = {
        f.name
        for f in text_string_to_metric_families(
            httpx.get(f"{live_app.url}/metrics", timeout=10).text
        )
    }
    assert {
        "nexus_ai_requests",
        "nexus_ai_response_latency_seconds",
        "nexus_ai_jobs_in_flight",
    } <= families
    before = metric_value(live_app.url, "nexus_ai_requests_total")
    page = new_page()
    sign_in(page, live_app.url, "admin", ADMIN_PASSWORD)
    page.get_by_role("button", name="New chat").click()
    page.get_by_role("dialog").get_by_role("button", name="Chat").first.click()
    page.get_by_placeholder("Message").fill("Count me in the metrics")
    page.keyboard.press("Enter")
    # The reply is stored (it has its thumbs), so its job has been counted.
    expect(page.get_by_role("radio", name="Thumbs down")).to_be_visible()
    assert metric_value(live_app.url, "nexus_ai_requests_total") == before + 1
    assert metric_value(live_app.url, "nexus_ai_response_latency_seconds_count") >= 1


def test_an_unexpected_error_shows_a_reference_and_the_report_files_feedback(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, f"{live_app.url}/dashboard", "admin", ADMIN_PASSWORD, lands_on="Dashboard")
    send = page.get_by_role("button", name="Send a test error")
    open_until_visible(page, page.get_by_text("Operations"), send)
    send.click()
    notice = page.get_by_text("Something went wrong on our side")
    expect(notice).to_be_visible()
    body = page.inner_text("body")
    assert "Reference: E-" in body
    for leak in ("Traceback", "DeliberateError", "requested from the dashboard"):
        assert leak not in body
    reference = body.split("Reference: ")[1].split()[0]
    page.get_by_role("button", name="Report this error").click()
    expect(page.get_by_text(f"your report of {reference} was filed")).to_be_visible()
    db = Database(f"sqlite:///{live_app.data_dir / 'nexus.db'}")
    with db.session() as session:
        rows = session.scalars(select(Feedback)).all()
        reports = [
            (f.category, f.priority, f.context.get("reference"), f.context.get("page"))
            for f in rows
        ]
    db.dispose()
    assert ("bug", "high", reference, "dashboard") in reports
    log = live_app.log_path.read_text()
    # The server log has the reference and the frames, never "Type: message".
    assert reference in log and "DeliberateError: test error" not in log


def test_an_unknown_page_shows_a_friendly_404_with_a_way_back(
    live_app: LiveApp, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, live_app.url, "admin", ADMIN_PASSWORD)
    page.goto(f"{live_app.url}/no-such-page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    page.get_by_role("link", name="Back to Chat").click()
    expect(page.get_by_role("heading", name="Chat")).to_be_visible()
