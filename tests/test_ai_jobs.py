"""The AI response pipeline end to end: real database, real HTTP to a fake Gemini on loopback,
the job's retries with an injected sleep, and the events it logs."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.job_store import INTERRUPTED_MESSAGE
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.progress import JobUpdate
from nexus_core.ai.retry_policy import MAX_ATTEMPTS, backoff_seconds
from nexus_core.ai.simulated import SimulatedProvider
from nexus_core.chat import ChatService
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Message
from nexus_core.ops.events import ApiEventLogger, ListEventSink, read_events
from nexus_core.personas import PersonaService
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD
from tests.fakes.gated_provider import GatedProvider
from tests.fakes.gemini_server import FakeGeminiServer

API_KEY = "AIzaSy-test-key-never-to-be-seen-0123456789"
BASE = 0.5  # retry base seconds; the sleep is recorded, never slept
# Each attempt's limit: room for a quick reply on a loaded machine (0.5 s timed out a 400 and a
# 200 MB flood once, beside another run of the suite, and turned them into retries).
ATTEMPT_SECONDS = 5.0
SLOW_SECONDS = 2.0  # the attempt limit of the test of a timeout, which the server's delay passes


class RecordingSleep:
    """Stands in for time.sleep and remembers every delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def user(db: Database) -> UserView:
    PersonaService(db).seed_defaults()
    PersonaService(db).create(
        "Tester", "You are a terse test persona.", model="gemini-test-model", temperature=0.3
    )
    return UserService(db).create("quinn", PASSWORD)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def events() -> ListEventSink:
    return ListEventSink()


@pytest.fixture
def gemini(gemini_server: FakeGeminiServer) -> Iterator[GeminiClient]:
    client = GeminiClient(
        api_key=API_KEY,
        model="gemini-flash-latest",
        api_base=gemini_server.base_url,
        timeout_seconds=ATTEMPT_SECONDS,
        http=httpx.Client(),
    )
    yield client
    client.close()


@pytest.fixture
def worker(
    db: Database, gemini: GeminiClient, events: ListEventSink, sleep: RecordingSleep
) -> Iterator[ResponseWorker]:
    w = ResponseWorker(db, gemini, events, retry_base_seconds=BASE, sleep=sleep, max_workers=2)
    yield w
    w.shutdown()


def ask(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    text: str,
    session_id: str | None = None,
    persona: str = "Tester",
) -> tuple[str, str]:
    chat = ChatService(db)
    if session_id is None:
        session_id = chat.create_session(user, persona).public_id
    message = chat.add_user_message(session_id, user, text)
    job_id = worker.enqueue(message.id, user)
    worker.wait(job_id, timeout=30)
    return session_id, job_id


def stored(db: Database, session_id: str, user: UserView) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in ChatService(db).messages(session_id, user)]


def test_a_reply_is_stored_with_model_tokens_and_timings(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
) -> None:
    gemini_server.enqueue(text="Hi there!", chunks=["Hi ", "there!"])
    session_id, job_id = ask(db, worker, user, "Hello")
    assert worker.get(job_id).status == "succeeded"
    messages = ChatService(db).messages(session_id, user)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Hello"),
        ("assistant", "Hi there!"),
    ]
    reply = messages[1]
    assert reply.model == "gemini-test-model" and reply.provider == "gemini"
    assert reply.tokens_in == 12 and reply.tokens_out == 9
    assert reply.latency_ms is not None and reply.latency_ms > 0
    assert reply.ttft_ms is not None and reply.ttft_ms <= reply.latency_ms
    assert reply.persona_version == 1 and reply.reply_to_id == messages[0].id
    names = [e["event"] for e in events.events]
    assert names == ["job_enqueued", "job_start", "request_start", "request_success", "job_success"]
    assert {e["job_id"] for e in events.events if "job_id" in e} == {job_id}
    assert all(
        e["chat_session_id"] == session_id and e["user_id"] == user.id for e in events.events
    )
    start, success = events.named("request_start")[0], events.named("request_success")[0]
    assert start["request_id"] == success["request_id"]
    assert (start["attempt"], start["model"], start["provider"]) == (
        1,
        "gemini-test-model",
        "gemini",
    )
    assert success["status_code"] == 200 and success["tokens_out"] == 9
    assert "ttft_ms" in success and success["latency_ms"] > 0
    assert events.named("job_success")[0]["attempts"] == 1
    request = gemini_server.requests[-1]
    assert request.path.startswith("/v1beta/models/gemini-test-model:streamGenerateContent")
    assert request.body["generationConfig"]["temperature"] == 0.3
    assert request.body["systemInstruction"]["parts"][0]["text"].startswith("You are a terse")


def test_follow_up_messages_carry_the_conversation_but_not_error_bubbles(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
) -> None:
    gemini_server.enqueue(text="First answer")
    session_id, _ = ask(db, worker, user, "First question")
    gemini_server.enqueue(status=400)
    ask(db, worker, user, "Broken question", session_id)
    gemini_server.enqueue(text="Third answer")
    ask(db, worker, user, "Third question", session_id)
    contents = gemini_server.requests[-1].body["contents"]
    assert [(c["role"], c["parts"][0]["text"]) for c in contents] == [
        ("user", "First question"),
        ("model", "First answer"),
        ("user", "Broken question"),
        ("user", "Third question"),
    ]
    roles = [role for role, _ in stored(db, session_id, user)]
    assert roles == ["user", "assistant", "user", "error", "user", "assistant"]


def test_503_503_200_retries_twice_with_growing_delays(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
    sleep: RecordingSleep,
) -> None:
    gemini_server.enqueue(status=503)
    gemini_server.enqueue(status=503)
    gemini_server.enqueue(text="Finally")
    session_id, job_id = ask(db, worker, user, "Are you there?")
    assert len(gemini_server.requests) == 3
    assert worker.get(job_id).status == "succeeded"
    assert stored(db, session_id, user)[-1] == ("assistant", "Finally")
    first, second = sleep.delays
    assert BASE <= first <= 2 * BASE
    assert 2 * BASE <= second <= 3 * BASE
    retries = events.named("job_retry")
    assert [(r["attempt"], r["error_type"]) for r in retries] == [(1, "http_503"), (2, "http_503")]
    assert [r["delay_ms"] for r in retries] == [pytest.approx(d * 1000) for d in sleep.delays]
    assert [e["attempt"] for e in events.named("request_failure")] == [1, 2]
    assert all(e["retryable"] and e["status_code"] == 503 for e in events.named("request_failure"))
    assert events.named("job_success")[0]["attempts"] == 3


def test_persistent_503_keeps_user_message_and_logs_job_failure(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
    sleep: RecordingSleep,
) -> None:
    for _ in range(MAX_ATTEMPTS):
        gemini_server.enqueue(status=503)
    session_id, job_id = ask(db, worker, user, "Keep me")
    assert len(gemini_server.requests) == 1 + 3
    assert len(sleep.delays) == 3
    job = worker.get(job_id)
    assert (job.status, job.attempt, job.error_type) == ("failed", 4, "http_503")
    messages = stored(db, session_id, user)
    assert messages[0] == ("user", "Keep me")
    assert messages[1] == (
        "error",
        "Gemini is overloaded or unavailable (HTTP 503); try again in a moment. "
        f"No reply after {MAX_ATTEMPTS} attempts.",
    )
    failure = events.named("job_failure")[0]
    assert (failure["attempts"], failure["error_type"]) == (4, "http_503")


def test_400_is_not_retried(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
    sleep: RecordingSleep,
) -> None:
    gemini_server.enqueue(status=400)
    _, job_id = ask(db, worker, user, "Bad request")
    assert len(gemini_server.requests) == 1 and sleep.delays == []
    assert worker.get(job_id).status == "failed"
    assert events.named("request_failure")[0]["retryable"] is False
    assert events.named("job_retry") == []


def test_429_with_retry_info_is_waited_out(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    sleep: RecordingSleep,
) -> None:
    gemini_server.enqueue(status=429, retry_delay="7s")
    gemini_server.enqueue(text="After the quota wait")
    _, job_id = ask(db, worker, user, "Quota?")
    assert worker.get(job_id).status == "succeeded"
    assert sleep.delays == [pytest.approx(7.0)]


def test_a_timeout_is_retried(
    db: Database,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
    sleep: RecordingSleep,
) -> None:
    gemini = GeminiClient(API_KEY, "gemini-flash-latest", gemini_server.base_url, SLOW_SECONDS)
    worker = ResponseWorker(db, gemini, events, retry_base_seconds=BASE, sleep=sleep)
    gemini_server.enqueue(delay=SLOW_SECONDS + 1.0)
    gemini_server.enqueue(text="Faster now")

    session_id, _ = ask(db, worker, user, "Slow?")
    worker.shutdown()
    gemini.close()

    assert stored(db, session_id, user)[-1] == ("assistant", "Faster now")
    assert events.named("request_failure")[0]["error_type"] == "timeout"


def test_a_safety_block_is_not_retried_and_says_why(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    sleep: RecordingSleep,
) -> None:
    gemini_server.enqueue(finish_reason="SAFETY", text="")
    session_id, job_id = ask(db, worker, user, "Something unsafe")
    assert sleep.delays == [] and len(gemini_server.requests) == 1
    job = worker.get(job_id)
    assert job.status == "failed" and job.error_type.startswith("blocked")
    assert stored(db, session_id, user)[-1][0] == "error"


def test_retry_reuses_the_same_user_message(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
) -> None:
    gemini_server.enqueue(status=400)
    session_id, job_id = ask(db, worker, user, "Try me twice")
    gemini_server.enqueue(text="Second time lucky")
    new_job = worker.retry(job_id, user)
    assert new_job != job_id
    assert worker.wait(new_job, timeout=30).status == "succeeded"
    messages = stored(db, session_id, user)
    assert [m for m in messages if m[0] == "user"] == [("user", "Try me twice")]
    assert messages[-1] == ("assistant", "Second time lucky")
    last_contents = gemini_server.requests[-1].body["contents"]
    assert [c["parts"][0]["text"] for c in last_contents] == ["Try me twice"]


def test_only_failed_jobs_can_be_retried(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
) -> None:
    _, job_id = ask(db, worker, user, "Fine")
    with pytest.raises(Exception, match="Only a failed reply"):
        worker.retry(job_id, user)


def test_a_job_survives_the_thread_that_started_it(
    db: Database,
    events: ListEventSink,
    user: UserView,
) -> None:
    """A Streamlit script thread may end (rerun, page change, closed tab) mid-reply."""
    slow = SimulatedProvider(latency_seconds=0.01)
    worker = ResponseWorker(db, slow, events)
    chat = ChatService(db)
    session_id = chat.create_session(user, "Nexus Assistant").public_id
    started: list[str] = []

    def page_script() -> None:
        message = chat.add_user_message(session_id, user, "Write a long answer")
        started.append(worker.enqueue(message.id, user))

    thread = threading.Thread(target=page_script)
    thread.start()
    thread.join()
    assert not thread.is_alive()
    job = worker.wait(started[0], timeout=30)
    worker.shutdown()
    assert job.status == "succeeded"
    assert stored(db, session_id, user)[-1][0] == "assistant"


def test_deltas_are_published_while_the_reply_streams(
    db: Database,
    events: ListEventSink,
    user: UserView,
) -> None:
    worker = ResponseWorker(db, SimulatedProvider(latency_seconds=0.005), events)
    chat = ChatService(db)
    session_id = chat.create_session(user, "Nexus Assistant").public_id
    message = chat.add_user_message(session_id, user, "Stream please")
    updates: list[str] = []
    worker.broker.subscribe(session_id, lambda u: updates.append(u.status))
    job_id = worker.enqueue(message.id, user)
    watched = list(worker.broker.watch(job_id, timeout=30))
    worker.wait(job_id, timeout=30)
    worker.shutdown()
    pieces = [item for item in watched if isinstance(item, str)]
    assert len(pieces) > 5
    assert "".join(pieces) == stored(db, session_id, user)[-1][1]
    assert [item.status for item in watched if isinstance(item, JobUpdate)][-1] == "succeeded"
    assert (updates[0], updates[-1]) == ("queued", "succeeded")


def test_jobs_left_running_by_a_dead_process_are_failed_at_start_up(
    db: Database,
    events: ListEventSink,
    user: UserView,
) -> None:
    chat = ChatService(db)
    session_id = chat.create_session(user, "Nexus Assistant").public_id
    message = chat.add_user_message(session_id, user, "Interrupted")
    dead_pid = _dead_pid()
    with db.session() as session:
        session_row = chat.get_session(session_id, user)
        session.add(
            AiJob(
                id="dead-job",
                session_id=session_row.id,
                user_message_id=message.id,
                status="running",
                attempt=1,
                user_id=user.id,
                owner=f"{socket.gethostname()}:{dead_pid}:abcd",
            )
        )
        session.add(
            AiJob(
                id="other-host-job",
                session_id=session_row.id,
                user_message_id=message.id,
                status="running",
                owner="elsewhere:1:abcd",
            )
        )
    worker = ResponseWorker(db, SimulatedProvider(latency_seconds=0), events)
    assert worker.recover_stale_jobs() == 1
    worker.shutdown()
    assert worker.get("dead-job").status == "failed"
    assert worker.get("other-host-job").status == "running"
    assert stored(db, session_id, user)[-1] == ("error", INTERRUPTED_MESSAGE)
    assert events.named("job_failure")[0]["error_type"] == "interrupted"


def _dead_pid() -> int:
    pid = os.getpid() + 100_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_the_api_key_never_reaches_logs_messages_or_errors(
    db: Database,
    gemini: GeminiClient,
    user: UserView,
    gemini_server: FakeGeminiServer,
    tmp_path: Path,
    sleep: RecordingSleep,
) -> None:
    log = ApiEventLogger(tmp_path / "logs" / "api_events.log")
    worker = ResponseWorker(db, gemini, log, retry_base_seconds=BASE, sleep=sleep)
    gemini_server.enqueue(status=401)
    gemini_server.enqueue(status=503)
    gemini_server.enqueue(text="ok")
    session_id, _ = ask(db, worker, user, "key leak check 1")
    ask(db, worker, user, "key leak check 2", session_id)
    worker.shutdown()
    log.close()
    text = (tmp_path / "logs" / "api_events.log").read_text()
    events, skipped = read_events(tmp_path / "logs" / "api_events.log")
    assert skipped == 0 and len(events) > 5
    assert API_KEY not in text
    with db.session() as session:
        contents = " ".join(session.scalars(select(Message.content)))
        errors = " ".join(str(e) for e in session.scalars(select(AiJob.last_error)))
    assert API_KEY not in contents and API_KEY not in errors
    assert all("key=" not in r.path for r in gemini_server.requests)
    assert all(r.headers.get("x-goog-api-key") == API_KEY for r in gemini_server.requests)


@pytest.mark.parametrize(
    ("retry", "jitter", "hint", "expected"),
    [
        (1, 0.0, None, 1.0),
        (2, 0.5, None, 2.5),
        (3, 0.99, None, 4.99),
        (1, 0.2, 47.0, 47.0),
        (3, 0.0, 1.0, 4.0),
        (3, 0.0, 10_000.0, 120.0),
    ],
)
def test_backoff_is_exponential_with_jitter_and_honours_the_hint(
    retry: int, jitter: float, hint: float | None, expected: float
) -> None:
    assert backoff_seconds(retry, 1.0, jitter, hint) == pytest.approx(expected)


def test_events_are_valid_json_lines_in_the_real_log(
    db: Database,
    user: UserView,
    tmp_path: Path,
) -> None:
    log = ApiEventLogger(tmp_path / "api_events.log")
    worker = ResponseWorker(db, SimulatedProvider(latency_seconds=0), log)
    ask(db, worker, user, "log me", persona="Nexus Assistant")
    worker.shutdown()
    log.close()
    lines = (tmp_path / "api_events.log").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [
        "job_enqueued",
        "job_start",
        "request_start",
        "request_success",
        "job_success",
    ]


# --- bounds: the job's deadline and the reply's size -------------------------------------------

TRICKLE_SECONDS = 0.05
SHORT_DEADLINE_SECONDS = 1.5
HUGE_LINE_BYTES = 200 * 1024 * 1024


def trickle_for_ever(server: FakeGeminiServer) -> None:
    """A stream that starts an answer, then sends keep-alives without end, well within any
    per-read timeout."""
    server.enqueue(
        chunks=["Let me think "],
        finish_reason=None,
        split_bytes=False,
        keep_alive_forever=True,
        trickle_seconds=TRICKLE_SECONDS,
    )


def slow_gemini(server: FakeGeminiServer) -> GeminiClient:
    """A client whose own per-attempt limit is long, so only the job's deadline can stop it."""
    return GeminiClient(API_KEY, "gemini-flash-latest", server.base_url, 30.0, httpx.Client())


@pytest.mark.timeout(120)
def test_a_trickling_reply_ends_at_the_job_deadline_with_a_timeout_bubble(
    db: Database,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
    sleep: RecordingSleep,
) -> None:
    gemini = slow_gemini(gemini_server)
    worker = ResponseWorker(
        db, gemini, events, sleep=sleep, job_deadline_seconds=SHORT_DEADLINE_SECONDS
    )
    trickle_for_ever(gemini_server)

    session_id, job_id = ask(db, worker, user, "Still there?")
    worker.shutdown()
    gemini.close()

    job = worker.get(job_id)
    assert (job.status, job.error_type, job.attempt) == ("failed", "timeout", 1)
    messages = stored(db, session_id, user)
    assert messages[0] == ("user", "Still there?")
    assert messages[1][0] == "error"
    assert messages[1][1].endswith(f"No reply within {SHORT_DEADLINE_SECONDS:g} s (1 attempt).")
    assert sleep.delays == []  # no retry could have finished in the time left
    failure = events.named("request_failure")[0]
    assert (failure["error_type"], failure["retryable"]) == ("timeout", True)


@pytest.mark.timeout(120)
def test_a_queued_chat_reply_starts_while_slow_replies_hold_every_worker(
    db: Database,
    user: UserView,
    gemini_server: FakeGeminiServer,
    events: ListEventSink,
    sleep: RecordingSleep,
) -> None:
    gemini = slow_gemini(gemini_server)
    worker = ResponseWorker(
        db,
        gemini,
        events,
        sleep=sleep,
        max_workers=2,
        job_deadline_seconds=SHORT_DEADLINE_SECONDS,
    )
    trickle_for_ever(gemini_server)
    trickle_for_ever(gemini_server)
    gemini_server.enqueue(text="Your turn now.")
    chat = ChatService(db)
    jobs = []
    for text in ("slow one", "slow two", "quick question"):
        session = chat.create_session(user, "Tester")
        jobs.append(worker.enqueue(chat.add_user_message(session.public_id, user, text).id, user))

    outcomes = [worker.wait(job_id, timeout=60).status for job_id in jobs]
    worker.shutdown()
    gemini.close()

    assert outcomes == ["failed", "failed", "succeeded"]


def test_a_retry_that_would_wait_past_the_job_deadline_is_not_started(
    db: Database,
    worker: ResponseWorker,
    user: UserView,
    gemini_server: FakeGeminiServer,
    sleep: RecordingSleep,
) -> None:
    gemini_server.enqueue(status=429, retry_delay="100s")  # longer than the 90 s deadline
    gemini_server.enqueue(text="Too late to matter")

    session_id, job_id = ask(db, worker, user, "Quota again?")

    assert sleep.delays == [] and len(gemini_server.requests) == 1
    job = worker.get(job_id)
    assert (job.status, job.error_type, job.attempt) == ("failed", "http_429", 1)
    assert stored(db, session_id, user)[-1][1].endswith("No reply within 90 s (1 attempt).")


def test_each_attempt_may_use_only_the_time_left_of_its_job(
    db: Database, user: UserView, events: ListEventSink
) -> None:
    gated = GatedProvider()
    gated.open()
    worker = ResponseWorker(db, gated, events, job_deadline_seconds=42.0)

    session_id, _ = ask(db, worker, user, "How long may you take?")
    worker.shutdown()

    (request,) = gated.requests
    assert request.timeout_seconds is not None and 0 < request.timeout_seconds <= 42.0
    assert stored(db, session_id, user)[-1] == ("assistant", gated.text)


@pytest.mark.timeout(120)
def test_a_200_mb_reply_fails_once_and_stores_and_logs_nothing_large(
    db: Database,
    gemini: GeminiClient,
    user: UserView,
    gemini_server: FakeGeminiServer,
    tmp_path: Path,
    sleep: RecordingSleep,
) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    log = ApiEventLogger(log_path)
    worker = ResponseWorker(db, gemini, log, retry_base_seconds=BASE, sleep=sleep)
    gemini_server.enqueue(chunks=["An answer "], finish_reason=None, flood_bytes=HUGE_LINE_BYTES)

    session_id, job_id = ask(db, worker, user, "Tell me everything")
    worker.shutdown()
    log.close()

    job = worker.get(job_id)
    assert (job.status, job.error_type, job.attempt) == ("failed", "response_too_large", 1)
    assert sleep.delays == [] and len(gemini_server.requests) == 1
    (asked, bubble) = stored(db, session_id, user)
    assert asked == ("user", "Tell me everything")
    assert bubble[0] == "error" and bubble[1].startswith("The reply was too long")
    assert len(bubble[1]) < 300
    assert log_path.stat().st_size < 4_096
    failure = next(e for e in read_events(log_path)[0] if e["event"] == "request_failure")
    assert (failure["error_type"], failure["retryable"]) == ("response_too_large", False)
