"""The chat page on the queue backend, as a deployment runs it: two app processes (two Streamlit
servers on loopback) share one PostgreSQL database and one Redis, and a real `nexus worker`
process runs the replies. A message sent through one app streams its reply on the other.

Needs PostgreSQL (``NEXUS_TEST_DATABASE_URL``: the test makes a database of its own there) and
Redis (a key namespace of its own, deleted afterwards); skipped without them, unless CI's
``NEXUS_REQUIRE_REDIS`` asks for Redis.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect
from sqlalchemy import select

from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Message
from tests.browser.conftest import (
    APP_SCRIPT,
    MEMBER,
    REPO_ROOT,
    NewPage,
    _free_port,
    _server_env,
    _stop,
    _tail,
    _wait_until_healthy,
    open_until_visible,
    run_nexus,
    sign_in,
)
from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.browser

USERNAME, DISPLAY_NAME, PASSWORD = MEMBER
REDIS_URL = os.environ.get("NEXUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ENV = "NEXUS_TEST_DATABASE_URL"
BUBBLE = '[data-testid="stChatMessage"]'
STREAM_CURSOR = "▌"
PERSONA = "Technical Writer"
QUESTION = "Draft release notes for the queue backend"
# The simulated model's pause before each word: its ~66-word reply takes about 40 s, long enough
# for the second app's page to open while the worker is still writing it, also beside another run
# of the suite (at 0.3 s, 20 s were not, once: the reply was stored before the page showed it).
WORD_SECONDS = "0.6"
REPLY_TIMEOUT_MS = 90_000
WORKER_STOP_SECONDS = 30


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class Deployment:
    """Two app servers, one worker, and the database they share."""

    first_url: str
    second_url: str
    database_url: str
    worker: subprocess.Popen[bytes]
    logs: tuple[Path, ...]

    def report(self) -> str:
        """The end of every process's output, for failure messages."""
        return "\n".join(f"--- {path.name}\n{_tail(path)}" for path in self.logs)


@contextmanager
def own_database() -> Iterator[str]:
    """A fresh PostgreSQL database of this module's own (dropped afterwards)."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set; the two-app queue journey needs PostgreSQL")
    with fresh_pg_database(admin_url, "nexus_queue_") as url:
        yield url


@contextmanager
def own_namespace() -> Iterator[str]:
    """A Redis key prefix of this module's own; its keys are deleted afterwards."""
    if not os.environ.get("NEXUS_REQUIRE_REDIS") and not _redis_answers():
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    namespace = f"nexus-journey-{uuid.uuid4().hex[:10]}"
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def process(
    command: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in ``log_path``; stopped (SIGTERM, then SIGKILL) after."""
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield child
        finally:
            _stop(child)


@contextmanager
def app_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port; yields its URL once it answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    with process(command, env, log_path) as child:
        _wait_until_healthy(child, url, log_path)
        yield url


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: str
) -> Iterator[Deployment]:
    """Two app servers (each with a data dir of its own, as on two hosts) and a chat worker on
    one PostgreSQL database and one Redis namespace, with the queue backend."""
    root = tmp_path_factory.mktemp("queue_journey")
    with ExitStack() as stack:
        database_url = stack.enter_context(own_database())
        namespace = stack.enter_context(own_namespace())

        def env_for(name: str) -> dict[str, str]:
            env = _server_env(root / name / "data")
            env.update(
                DATABASE_URL=database_url,
                REDIS_URL=REDIS_URL,
                NEXUS_JOB_BACKEND="queue",
                NEXUS_QUEUE_NAMESPACE=namespace,
                NEXUS_COOKIE_KEY="a-cookie-key-both-app-processes-share-0123456789",
                NEXUS_SIMULATED_LATENCY_SECONDS=WORD_SECONDS,
            )
            return env

        first_env = env_for("first")
        run_nexus(first_env, "init")
        add_member = ("users", "add", USERNAME, "--display-name", DISPLAY_NAME, "--password-stdin")
        run_nexus(first_env, *add_member, stdin=f"{PASSWORD}\n")
        logs = tuple(root / f"{name}.log" for name in ("first-app", "second-app", "worker"))
        first_url = stack.enter_context(app_server(first_env, logs[0]))
        second_url = stack.enter_context(app_server(env_for("second"), logs[1]))
        worker_command = [sys.executable, "-m", "nexus_core.cli", "worker", "--lanes", "chat"]
        worker = stack.enter_context(process(worker_command, env_for("worker"), logs[2]))
        yield Deployment(first_url, second_url, database_url, worker, logs)
        worker.send_signal(signal.SIGTERM)  # drains; the stack's stop is the fallback
        worker.wait(timeout=WORKER_STOP_SECONDS)


def start_chat(page: Page, persona: str) -> str:
    """Start a chat with ``persona`` from the New chat dialog; returns the session id."""
    dialog = page.get_by_role("dialog")
    open_until_visible(page, page.get_by_role("button", name="New chat"), dialog)
    card = (
        dialog.get_by_test_id("stVerticalBlock")
        .filter(has_text=persona)
        .filter(has=page.get_by_role("button", name="Chat"))
        .last
    )
    card.get_by_role("button", name="Chat").click()
    expect(page).to_have_url(re.compile(r"session=[0-9a-f-]{36}"))
    return page.url.split("session=")[1].split("&")[0]


def test_a_reply_queued_through_one_app_streams_on_the_other_from_the_worker(
    deployment: Deployment, new_page: NewPage
) -> None:
    first, second = new_page(), new_page()
    sign_in(second, deployment.second_url, USERNAME, PASSWORD)
    sign_in(first, deployment.first_url, USERNAME, PASSWORD)
    session_id = start_chat(first, PERSONA)
    first.get_by_placeholder("Message").fill(QUESTION)
    first.keyboard.press("Enter")
    expect(first.locator(BUBBLE).first).to_contain_text(QUESTION)

    # The other app process opens the session while the worker writes the reply: the reply
    # streams there (the cursor shows only while text arrives over Redis), then is stored.
    second.goto(f"{deployment.second_url}/?session={session_id}")
    streaming = second.locator(BUBBLE).nth(1)
    expect(second.locator(BUBBLE).first).to_contain_text(QUESTION)
    expect(streaming).to_contain_text(STREAM_CURSOR, timeout=REPLY_TIMEOUT_MS)
    expect(streaming).to_contain_text("[Simulated reply — offline demo model]")
    thumbs = second.locator(BUBBLE).nth(1).get_by_role("radio", name="Thumbs down")
    expect(thumbs).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(first.locator(BUBBLE).nth(1).get_by_role("radio", name="Thumbs down")).to_be_visible(
        timeout=REPLY_TIMEOUT_MS
    )

    db = Database(deployment.database_url)
    try:
        with db.session() as session:
            stored = session.scalars(select(Message).order_by(Message.id)).all()
            [job] = session.scalars(select(AiJob)).all()
    finally:
        db.dispose()
    assert [m.role for m in stored] == ["user", "assistant"], deployment.report()
    assert (job.status, job.attempt) == ("succeeded", 1), deployment.report()
    assert job.owner.split(":")[1] == str(deployment.worker.pid), deployment.report()
    shown = second.locator(BUBBLE).nth(1).inner_text()
    assert STREAM_CURSOR not in shown
    assert stored[1].content.splitlines()[-1].lstrip("- ") in shown
