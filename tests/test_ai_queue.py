"""The queue backend (NEXUS_JOB_BACKEND=queue): jobs through Dramatiq on the machine's real Redis,
run by `nexus worker` processes, with the job row as the record.

Every test has a Redis key namespace of its own (deleted afterwards) and its own database of each
kind. The worker-death tests run real `nexus worker` processes against the fake Gemini server on
loopback, which holds the first reply in flight by trickling it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from nexus_core.ai.job_store import JobStore, JobTakenOver
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.lanes import CHAT_LANE
from nexus_core.ai.progress import JobUpdate
from nexus_core.ai.queue import QueueWorker, RedisJobBroker
from nexus_core.ai.retry_policy import MAX_ATTEMPTS
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.app_context import AppContext
from nexus_core.chat import ChatService
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Message
from nexus_core.ops.events import ListEventSink, read_events
from nexus_core.ops.health import check_worker_here, run_health
from nexus_core.personas import PersonaService
from nexus_core.settings import Settings
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD
from tests.fakes.gemini_server import FakeGeminiServer

REDIS_URL = os.environ.get("NEXUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDELIVERY_SECONDS = 1.0  # short, so a dead worker's job is delivered again quickly
PERSONA = "Nexus Assistant"
API_KEY = "AIzaSy-test-key-never-to-be-seen-0123456789"
WAIT_SECONDS = 60.0
REPO = Path(__file__).resolve().parents[1]
SECOND_REPLY = "The second worker answered in full."


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


# CI sets NEXUS_REQUIRE_REDIS: there a missing Redis fails these tests instead of skipping them.
pytestmark = pytest.mark.skipif(
    not os.environ.get("NEXUS_REQUIRE_REDIS") and not _redis_answers(),
    reason=f"no Redis answers at {REDIS_URL}",
)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    name = f"nexus-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def queued(settings: Settings, namespace: str) -> Settings:
    """The test settings with the queue backend on this test's namespace."""
    return dataclasses.replace(
        settings,
        job_backend="queue",
        redis_url=REDIS_URL,
        queue_namespace=namespace,
        queue_redelivery_seconds=REDELIVERY_SECONDS,
    )


@pytest.fixture
def app(queued: Settings) -> Iterator[AppContext]:
    """An app process's context with the queue backend."""
    context = AppContext(queued)
    yield context
    context.close()


@pytest.fixture
def user(app: AppContext) -> UserView:
    app.personas.seed_defaults()
    return app.users.create("quinn", PASSWORD)


@pytest.fixture
def worker_process(queued: Settings) -> Iterator[Callable[..., QueueWorker]]:
    """Starts in-process queue workers (each with a context of its own, as `nexus worker` has);
    stops them afterwards."""
    started: list[tuple[QueueWorker, AppContext]] = []

    def start(settings: Settings = queued, lanes: tuple[str, ...] = (CHAT_LANE,)) -> QueueWorker:
        context = AppContext(settings)
        runner = QueueWorker(
            REDIS_URL,
            settings.queue_namespace,
            settings.queue_redelivery_seconds,
            lanes,
            2,
            context.worker.run_delivered,
        )
        runner.start()
        started.append((runner, context))
        return runner

    yield start
    for runner, context in started:
        runner.stop(drain_seconds=10)
        context.close()


def ask(app: AppContext, user: UserView, text: str) -> tuple[str, str]:
    """Store a message through the app and queue its reply; (session id, job id)."""
    session = app.chat.create_session(user, PERSONA)
    _message, job_id = app.worker.ask(app.chat, session.public_id, user, text)
    return session.public_id, job_id


def replies(db: Database, session_id: str, user: UserView) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in ChatService(db).messages(session_id, user)][1:]


# --- enqueue → worker → stored reply ----------------------------------------------------------


def test_a_queued_reply_is_run_by_a_worker_and_stored_once(
    app: AppContext, user: UserView, worker_process: Callable[..., QueueWorker]
) -> None:
    worker_process()
    session_id, job_id = ask(app, user, "Hello over the queue")

    job = app.worker.wait(job_id, timeout=WAIT_SECONDS)

    assert (job.status, job.attempt) == ("succeeded", 1)
    [(role, content)] = replies(app.db, session_id, user)
    assert role == "assistant" and "Hello over the queue" in content
    assert app.worker.in_flight() == 0  # the app process ran nothing itself
    assert app.worker.load() == []


def test_a_reply_streams_to_a_follower_in_another_process_from_the_worker(
    app: AppContext,
    queued: Settings,
    user: UserView,
    worker_process: Callable[..., QueueWorker],
) -> None:
    worker_process(dataclasses.replace(queued, simulated_latency_seconds=0.01))
    session_id, job_id = ask(app, user, "Stream this one word by word")
    follower = RedisJobBroker.from_url(REDIS_URL, queued.queue_namespace)  # another app replica

    assert follower.knows(job_id)
    items = list(follower.watch(job_id, timeout=WAIT_SECONDS))

    pieces = [item for item in items if isinstance(item, str)]
    states = [item.status for item in items if isinstance(item, JobUpdate)]
    [(_role, stored)] = replies(app.db, session_id, user)
    assert len(pieces) > 3 and "".join(pieces) == stored
    assert states[-1] == "succeeded"
    assert follower.text(job_id) == stored  # a late reader gets the whole reply
    follower.close()


def test_a_session_subscriber_hears_the_state_changes_of_a_job_run_elsewhere(
    app: AppContext, user: UserView, worker_process: Callable[..., QueueWorker]
) -> None:
    session = app.chat.create_session(user, PERSONA)
    heard: list[str] = []
    unsubscribe = app.worker.broker.subscribe(session.public_id, lambda u: heard.append(u.status))
    listening = app.worker.broker.client.pubsub_numsub
    channel = app.worker.broker.session_channel(session.public_id)
    wait_for(lambda: listening(channel)[0][1] > 0, lambda: "the subscription never started")
    worker_process()
    _message, job_id = app.worker.ask(app.chat, session.public_id, user, "Tell me")
    app.worker.wait(job_id, timeout=WAIT_SECONDS)
    deadline = time.monotonic() + 10
    while "succeeded" not in heard and time.monotonic() < deadline:
        time.sleep(0.05)
    unsubscribe()

    assert heard[0] == "queued" and heard[-1] == "succeeded"


def test_a_job_that_cannot_be_queued_fails_with_a_bubble_and_keeps_the_message(
    queued: Settings, user: UserView
) -> None:
    unreachable = dataclasses.replace(queued, redis_url="redis://127.0.0.1:1/0", broker_url=None)
    with contextlib.closing(AppContext(unreachable)) as app:
        session_id, job_id = ask(app, user, "Is anyone there?")
        job = app.worker.wait(job_id, timeout=5)

        assert (job.status, job.error_type) == ("failed", "queue_unavailable")
        [(role, content)] = replies(app.db, session_id, user)
        assert role == "error" and "Press Retry" in content


# --- one reply per job, whatever the deliveries ----------------------------------------------


def job_of_a_dead_worker(db: Database) -> tuple[UserView, str, JobStore, str]:
    """A job whose attempt 1 was under way when its worker died: (user, session id, the dead
    worker's store, job id)."""
    PersonaService(db).seed_defaults()
    user = UserService(db).create("quinn", PASSWORD)
    chat = ChatService(db)
    session = chat.create_session(user, PERSONA)
    asked = chat.add_user_message(session.public_id, user, "Who answers?")
    dead = JobStore(db, "elsewhere:1:dead", MAX_ATTEMPTS)
    job_id = dead.create(asked.id, user, "simulated").job_id
    dead.start(job_id)
    return user, session.public_id, dead, job_id


def test_a_job_taken_over_from_a_dead_worker_goes_on_and_the_dead_one_stores_nothing(
    db: Database,
) -> None:
    user, session_id, dead, job_id = job_of_a_dead_worker(db)
    events = ListEventSink()
    worker = ResponseWorker(db, SimulatedProvider(latency_seconds=0), events, sleep=lambda _s: None)

    job = worker.run_delivered(job_id)
    again = worker.run_delivered(job_id)  # a delivery once more after the reply was stored

    assert (job.status, job.attempt) == ("succeeded", 2)
    assert again == job
    retry = next(e for e in events.events if e["event"] == "job_retry")
    assert (retry["attempt"], retry["error_type"]) == (1, "interrupted")
    assert [e["event"] for e in events.events].count("job_success") == 1
    with pytest.raises(JobTakenOver):  # the old worker, had it lived, may not store its reply
        dead.fail(job_id, 1, "late", "A late failure.", None)
    assert [role for role, _ in replies(db, session_id, user)] == ["assistant"]
    worker.shutdown()


def test_a_job_whose_worker_died_in_its_last_attempt_fails_as_interrupted(db: Database) -> None:
    user, session_id, dead, job_id = job_of_a_dead_worker(db)
    dead.attempt(job_id, MAX_ATTEMPTS)
    worker = ResponseWorker(db, SimulatedProvider(latency_seconds=0), ListEventSink())

    job = worker.run_delivered(job_id)

    assert (job.status, job.attempt, job.error_type) == ("failed", MAX_ATTEMPTS, "interrupted")
    assert [role for role, _ in replies(db, session_id, user)] == ["error"]
    worker.shutdown()


# --- real `nexus worker` processes ------------------------------------------------------------


class WorkerProcess:
    """A `nexus worker` subprocess; its stderr goes to a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nexus_core.cli", "worker", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._file,
            cwd=log.parent,
        )
        wait_for(lambda: b"nexus worker: lanes" in log.read_bytes(), self.describe)

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe(self) -> str:
        return f"worker {self.pid} said:\n{self.log.read_text(errors='replace')}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT_SECONDS)
        self._file.close()


def wait_for(condition: Callable[[], bool], describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; {describe()}")
        time.sleep(0.05)


@pytest.fixture
def gemini_app(
    queued: Settings, gemini_server: FakeGeminiServer
) -> Iterator[tuple[AppContext, dict[str, str]]]:
    """An app context answering with the fake Gemini server, and the environment that gives a
    `nexus worker` process the same settings."""
    settings = dataclasses.replace(
        queued,
        ai_provider="gemini",
        gemini_api_key=API_KEY,
        gemini_api_base=gemini_server.base_url,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NEXUS_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "NEXUS_ENV": "test",
        "NEXUS_AI_PROVIDER": "gemini",
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_API_BASE": gemini_server.base_url,
        "NEXUS_JOB_BACKEND": "queue",
        "REDIS_URL": REDIS_URL,
        "NEXUS_QUEUE_NAMESPACE": settings.queue_namespace,
        "NEXUS_QUEUE_REDELIVERY_SECONDS": str(REDELIVERY_SECONDS),
        "NEXUS_RETRY_BASE_SECONDS": "0.01",
    }
    env.pop("NEXUS_BROKER_URL", None)
    context = AppContext(settings)
    context.personas.seed_defaults()
    yield context, env
    context.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], *args: str) -> WorkerProcess:
        process = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def hold_first_reply(server: FakeGeminiServer) -> None:
    """The first request trickles a long reply (seconds per sentence); the next answers at once."""
    words = [f"word{n} " for n in range(40)]
    server.enqueue(chunks=words, chunk_size=64, trickle_seconds=0.3)
    server.enqueue(text=SECOND_REPLY)


def first_text(app: AppContext, job_id: str) -> str:
    """Follow the job until the first piece of reply text arrives (from whichever worker)."""
    for item in app.worker.broker.watch(job_id, timeout=WAIT_SECONDS):
        if isinstance(item, str):
            return item
    return ""


def job_owner_pid(db: Database, job_id: str) -> int:
    with db.session() as session:
        owner = session.execute(select(AiJob.owner).where(AiJob.id == job_id)).scalar_one()
    return int(owner.split(":")[1])


def test_a_worker_killed_mid_reply_is_replaced_and_the_reply_is_stored_once(
    gemini_app: tuple[AppContext, dict[str, str]],
    gemini_server: FakeGeminiServer,
    workers: Callable[..., WorkerProcess],
) -> None:
    app, env = gemini_app
    user = app.users.create("quinn", PASSWORD)
    hold_first_reply(gemini_server)
    first = workers(env, "--lanes", "chat", "--threads", "1")
    session_id, job_id = ask(app, user, "Answer slowly, please")
    assert first_text(app, job_id).startswith("word0")  # streamed from the worker process

    second = workers(env, "--lanes", "chat")
    first.process.send_signal(signal.SIGKILL)
    job = app.worker.wait(job_id, timeout=WAIT_SECONDS)

    assert (job.status, job.attempt) == ("succeeded", 2), second.describe()
    assert replies(app.db, session_id, user) == [("assistant", SECOND_REPLY)]
    assert job_owner_pid(app.db, job_id) == second.pid
    with app.db.session() as session:
        stored = session.execute(
            select(func.count()).select_from(Message).where(Message.role == "assistant")
        ).scalar_one()
    assert stored == 1
    events = [e for e in read_events(app.settings.event_log_path)[0] if e.get("job_id") == job_id]
    assert [e["event"] for e in events] == [
        "job_enqueued",
        "job_start",
        "request_start",  # the killed worker's attempt: it has no end
        "job_retry",
        "request_start",
        "request_success",
        "job_success",
    ]
    assert (events[3]["attempt"], events[3]["error_type"]) == (1, "interrupted")
    assert events[6]["attempts"] == 2
    assert "".join(x for x in app.worker.broker.watch(job_id, 5) if isinstance(x, str)) == (
        SECOND_REPLY
    )


def test_sigterm_finishes_the_running_reply_and_hands_back_the_waiting_one(
    gemini_app: tuple[AppContext, dict[str, str]],
    gemini_server: FakeGeminiServer,
    workers: Callable[..., WorkerProcess],
) -> None:
    app, env = gemini_app
    user = app.users.create("quinn", PASSWORD)
    gemini_server.enqueue(
        chunks=["Slow ", "but ", "sure ", "and ", "done."], chunk_size=64, trickle_seconds=0.2
    )
    gemini_server.enqueue(text=SECOND_REPLY)
    first = workers(env, "--lanes", "chat", "--threads", "1")
    running_session, running = ask(app, user, "The first question")
    assert first_text(app, running)
    waiting_session, waiting = ask(app, user, "The second question")

    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=WAIT_SECONDS) == 0, first.describe()
    assert app.worker.get(running).status == "succeeded"  # finished before the worker stopped
    second = workers(env, "--lanes", "chat")
    handed_back = app.worker.wait(waiting, timeout=WAIT_SECONDS)

    assert (handed_back.status, handed_back.attempt) == ("succeeded", 1)
    assert replies(app.db, running_session, user) == [("assistant", "Slow but sure and done.")]
    assert replies(app.db, waiting_session, user) == [("assistant", SECOND_REPLY)]
    assert job_owner_pid(app.db, running) == first.pid
    assert job_owner_pid(app.db, waiting) == second.pid


def test_two_workers_on_two_hosts_write_their_own_logs_and_metrics_count_each_event_once(
    gemini_app: tuple[AppContext, dict[str, str]],
    gemini_server: FakeGeminiServer,
    workers: Callable[..., WorkerProcess],
) -> None:
    app, env = gemini_app
    user = app.users.create("quinn", PASSWORD)
    hold_first_reply(gemini_server)
    first = workers({**env, "NEXUS_LOG_HOST": "worker-a"}, "--lanes", "chat", "--threads", "1")
    _session, held = ask(app, user, "Answer slowly, please")
    assert first_text(app, held).startswith("word0")  # the first worker's one thread is busy
    second = workers({**env, "NEXUS_LOG_HOST": "worker-b"}, "--lanes", "chat")
    _session, quick = ask(app, user, "And quickly, please")

    assert app.worker.wait(quick, timeout=WAIT_SECONDS).status == "succeeded"
    assert app.worker.wait(held, timeout=WAIT_SECONDS).status == "succeeded"
    assert (job_owner_pid(app.db, held), job_owner_pid(app.db, quick)) == (first.pid, second.pid)
    logs = app.settings.log_dir
    by_file = {
        name: [(e["event"], e.get("job_id")) for e in read_events(logs / name)[0]]
        for name in ("api_events.log", "worker-a/api_events.log", "worker-b/api_events.log")
    }
    assert ("job_enqueued", held) in by_file["api_events.log"]  # the app process: no host set
    assert ("job_success", held) in by_file["worker-a/api_events.log"]
    assert ("job_success", quick) in by_file["worker-b/api_events.log"]
    assert ("job_success", quick) not in by_file["worker-a/api_events.log"]

    result = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", "metrics", "--window", "60m", "--json"],
        env={**env, "NEXUS_LOG_HOST": "reader"},
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )

    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    assert (numbers["jobs_succeeded"], numbers["jobs_failed"]) == (2, 0)
    assert (numbers["requests"], numbers["successes"], numbers["failures"]) == (2, 2, 0)
    assert numbers["skipped_lines"] == 0


def test_nexus_worker_refuses_to_start_with_the_thread_backend(settings: Settings) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NEXUS_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "NEXUS_ENV": "test",
        "NEXUS_JOB_BACKEND": "thread",
    }
    result = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "set NEXUS_JOB_BACKEND=queue" in line


# --- health -----------------------------------------------------------------------------------


def test_health_reports_the_queue_unhealthy_without_a_worker_and_healthy_with_one(
    app: AppContext, queued: Settings, worker_process: Callable[..., QueueWorker]
) -> None:
    before = run_health(queued, app.db).to_dict()["checks"]["queue"]
    worker_process(lanes=("chat", "compare", "test_set", "eval"))
    after = run_health(queued, app.db).to_dict()["checks"]["queue"]

    assert not before["ok"] and "no `nexus worker` is alive" in before["detail"]
    assert after["ok"] and after["detail"].startswith("1 worker; waiting: chat 0")


def test_health_fails_while_no_live_worker_takes_the_chat_lane(
    app: AppContext, queued: Settings, worker_process: Callable[..., QueueWorker]
) -> None:
    worker_process(lanes=("compare", "test_set", "eval"))
    check = run_health(queued, app.db).to_dict()["checks"]["queue"]

    assert not check["ok"]
    assert "no live worker takes the chat lane (0 waiting): chat replies wait" in check["detail"]
    assert "workers per lane: chat 0, compare 1, test_set 1, eval 1" in check["detail"]


def test_the_worker_probe_passes_only_while_a_worker_on_this_host_beats(
    queued: Settings, worker_process: Callable[..., QueueWorker]
) -> None:
    before = check_worker_here(queued)
    worker_process(lanes=("chat",))
    here = check_worker_here(queued)
    elsewhere = check_worker_here(queued, host="another-host")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NEXUS_DATA_DIR": str(queued.data_dir),
        "DATABASE_URL": queued.database_url,
        "NEXUS_ENV": "test",
        "NEXUS_JOB_BACKEND": "queue",
        "REDIS_URL": REDIS_URL,
        "NEXUS_QUEUE_NAMESPACE": queued.queue_namespace,
        "NEXUS_QUEUE_REDELIVERY_SECONDS": str(REDELIVERY_SECONDS),
    }
    env.pop("NEXUS_BROKER_URL", None)
    probe = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", "health", "--worker", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )

    assert not before.ok and "no `nexus worker` on" in before.detail
    assert here.ok and here.detail.endswith("(chat)")
    assert not elsewhere.ok and "another-host" in elsewhere.detail
    assert probe.returncode == 0, probe.stderr
    assert list(json.loads(probe.stdout)["checks"]) == ["worker"]


def test_the_thread_backend_has_no_queue_check(settings: Settings, db: Database) -> None:
    assert "queue" not in run_health(settings, db).to_dict()["checks"]
