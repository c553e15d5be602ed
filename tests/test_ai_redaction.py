"""A provider's error text never leaves the provider client: whatever an error body says — the
key lower-cased, base64- or hex-encoded, URL-encoded, truncated or split, the user's own prompt,
markup — none of it reaches the error bubble, the job row, the event log, the server log or the
page's live updates. Both providers, through their fake servers, real HTTP and both databases."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.openai_compat import OpenAICompatibleClient
from nexus_core.ai.progress import JobUpdate
from nexus_core.ai.protocol import Provider
from nexus_core.chat import ChatService
from nexus_core.db.engine import Database
from nexus_core.db.models import AiJob, Message
from nexus_core.ops.events import ApiEventLogger, ListEventSink
from nexus_core.personas import PersonaService
from nexus_core.users import UserService, UserView
from tests.constants import PASSWORD
from tests.fakes import ScriptedServer

KEY = "AIzaSyRedactTest+Key/0123456789=abcdefXYZ"
SPLIT_AT = 18
PROMPT = "What is our Q3 plan? PROMPT-ECHO-7731"
PROMPT_MARK = "PROMPT-ECHO-7731"
MARKUP = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **now** `code`"


def key_forms(key: str) -> dict[str, str]:
    """Ways an error message could quote the key that an exact-string scrub would miss."""
    raw = key.encode()
    return {
        "exact": key,
        "lower": key.lower(),
        "upper": key.upper(),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
        "url-encoded": quote(key, safe=""),
        "truncated": key[:16],
        "split-head": key[:SPLIT_AT],
        "split-tail": key[SPLIT_AT:],
    }


FORMS = key_forms(KEY)
FREE_TEXT = (
    f"API key {FORMS['lower']} / {FORMS['upper']} / {FORMS['base64']} / {FORMS['base64url']} / "
    f"{FORMS['hex']} / {FORMS['url-encoded']} is not valid (prefix {FORMS['truncated']}…). "
    f"Key was {FORMS['split-head']}\n    …{FORMS['split-tail']}. You asked: {PROMPT!r}. {MARKUP}"
)
# Everything that must not leave the provider client: each key form, the echoed prompt, markup.
NEEDLES = [*FORMS.values(), PROMPT_MARK, "onerror", "javascript:", "<img"]


@dataclass
class Upstream:
    """A provider, its fake server, and how its error bubbles start."""

    name: str
    server: ScriptedServer | None
    provider: Provider

    def enqueue(self, **script: object) -> None:
        if self.name == "gemini":
            script.pop("send_done", None)  # Gemini streams have no [DONE]
        self.server.enqueue(**script)  # type: ignore[union-attr]


@pytest.fixture(params=["gemini", "openai"])
def upstream(request: pytest.FixtureRequest) -> Iterator[Upstream]:
    server = request.getfixturevalue(f"{request.param}_server")
    http = httpx.Client()
    provider: Provider
    if request.param == "gemini":
        provider = GeminiClient(KEY, "gemini-flash-latest", server.base_url, 5.0, http)
    else:
        provider = OpenAICompatibleClient(server.base_url, KEY, "llama-test", 5.0, http)
    yield Upstream(request.param, server, provider)
    http.close()


@pytest.fixture
def user(db: Database) -> UserView:
    PersonaService(db).create("Tester", "You are terse.", model="gemini-test-model")
    return UserService(db).create("quinn", PASSWORD)


@dataclass
class Outputs:
    """Everything a job left behind that people or programs can read."""

    bubble: str
    texts: list[str]  # bubble, job error, event log, server log, live updates


def run_failing_job(
    db: Database,
    user: UserView,
    upstream: Upstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> Outputs:
    log_path = tmp_path / "api_events.log"
    events = ApiEventLogger(log_path)
    worker = ResponseWorker(db, upstream.provider, events, sleep=lambda _s: None)
    chat = ChatService(db)
    session = chat.create_session(user, "Tester")
    updates: list[JobUpdate] = []
    worker.broker.subscribe(session.public_id, updates.append)
    caplog.set_level(logging.DEBUG)
    message = chat.add_user_message(session.public_id, user, PROMPT)
    job = worker.wait(worker.enqueue(message.id, user), timeout=60)
    worker.shutdown()
    events.close()
    assert job.status == "failed"
    with db.session() as s:
        bubble = s.scalars(select(Message.content).where(Message.role == "error")).one()
        last_error = s.scalars(select(AiJob.last_error)).one()
        asked = s.scalars(select(Message.content).where(Message.role == "user")).one()
    assert asked == PROMPT  # the user's message stays as it was
    live = [u.message or "" for u in updates]
    return Outputs(bubble, [bubble, last_error or "", log_path.read_text(), caplog.text, *live])


def assert_nothing_leaked(outputs: Outputs) -> None:
    for text in outputs.texts:
        for needle in NEEDLES:
            assert needle not in text, f"{needle!r} leaked"
            assert needle.lower() not in text.lower(), f"{needle!r} leaked (any case)"


PERMANENT_BUBBLES = {
    ("gemini", 400): "Gemini rejected the request (HTTP 400, INVALID_ARGUMENT).",
    ("gemini", 401): (
        "Gemini rejected the API key (HTTP 401, UNAUTHENTICATED); check GEMINI_API_KEY."
    ),
    ("gemini", 403): (
        "Gemini rejected the API key (HTTP 403, PERMISSION_DENIED); check GEMINI_API_KEY."
    ),
    ("gemini", 404): (
        "Gemini model 'gemini-test-model' not found (HTTP 404, NOT_FOUND); check GEMINI_MODEL "
        "or the persona's model, and GEMINI_API_BASE."
    ),
    ("openai", 400): (
        "OpenAI-compatible server rejected the request (HTTP 400, invalid_request_error)."
    ),
    ("openai", 401): (
        "OpenAI-compatible server rejected the API key (HTTP 401, invalid_request_error); "
        "check OPENAI_API_KEY."
    ),
    ("openai", 403): (
        "OpenAI-compatible server rejected the API key (HTTP 403, server_error); "
        "check OPENAI_API_KEY."
    ),
    ("openai", 404): (
        "OpenAI-compatible server model 'llama-test' not found (HTTP 404, server_error); check "
        "OPENAI_MODEL or the persona's model, and OPENAI_API_BASE."
    ),
}


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_a_refusal_stores_nexus_own_sentence_and_no_word_of_the_error_body(
    db: Database,
    user: UserView,
    upstream: Upstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    upstream.enqueue(status=status, error_message=FREE_TEXT)

    outputs = run_failing_job(db, user, upstream, tmp_path, caplog)

    assert outputs.bubble == PERMANENT_BUBBLES[(upstream.name, status)]
    assert_nothing_leaked(outputs)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_retried_failure_stores_nexus_own_sentence_and_no_word_of_the_error_body(
    db: Database,
    user: UserView,
    upstream: Upstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    for _ in range(4):
        upstream.enqueue(status=status, error_message=FREE_TEXT)

    outputs = run_failing_job(db, user, upstream, tmp_path, caplog)

    assert f"(HTTP {status})" in outputs.bubble
    assert outputs.bubble.endswith("No reply after 4 attempts.")
    assert_nothing_leaked(outputs)


@pytest.mark.parametrize("with_code", [True, False], ids=["coded", "uncoded"])
def test_an_error_inside_the_stream_stores_no_word_of_its_message(
    db: Database,
    user: UserView,
    upstream: Upstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    with_code: bool,
) -> None:
    error = {"code": 400, "message": FREE_TEXT} if with_code else {"message": FREE_TEXT}
    for _ in range(4):
        upstream.enqueue(raw_events=[json.dumps({"error": error})], send_done=False)

    outputs = run_failing_job(db, user, upstream, tmp_path, caplog)

    if with_code:
        assert "rejected the request (HTTP 400)" in outputs.bubble
    else:
        assert "failed while streaming the reply; try again." in outputs.bubble
    assert_nothing_leaked(outputs)


@pytest.fixture
def gemini_upstream(gemini_server: ScriptedServer) -> Iterator[Upstream]:
    with httpx.Client() as http:
        client = GeminiClient(KEY, "gemini-flash-latest", gemini_server.base_url, 5.0, http)  # type: ignore[attr-defined]
        yield Upstream("gemini", gemini_server, client)


def test_a_block_reason_outside_geminis_vocabulary_is_stored_as_other(
    db: Database,
    user: UserView,
    gemini_upstream: Upstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gemini_upstream.enqueue(block_reason=FREE_TEXT)

    outputs = run_failing_job(db, user, gemini_upstream, tmp_path, caplog)

    assert outputs.bubble == (
        "Gemini refused this prompt (reason: OTHER). Rephrase the message and try again."
    )
    assert_nothing_leaked(outputs)


def test_a_finish_reason_outside_the_vocabulary_is_stored_as_other(
    db: Database, user: UserView, upstream: Upstream
) -> None:
    upstream.enqueue(text="A fine answer.", finish_reason=FREE_TEXT)
    worker = ResponseWorker(db, upstream.provider, ListEventSink())
    chat = ChatService(db)
    session = chat.create_session(user, "Tester")
    message = chat.add_user_message(session.public_id, user, "Hello")

    job = worker.wait(worker.enqueue(message.id, user), timeout=60)
    worker.shutdown()

    assert job.status == "succeeded"
    reply = chat.messages(session.public_id, user)[-1]
    assert reply.content == "A fine answer."
    assert reply.finish_reason == ("OTHER" if upstream.name == "gemini" else "other")


@pytest.mark.parametrize("credentials", ["encoded", "raw"])
def test_a_base_url_with_credentials_is_never_quoted(
    db: Database,
    user: UserView,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    credentials: str,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    password = FORMS["url-encoded"] if credentials == "encoded" else KEY  # raw: an invalid URL
    base = f"http://admin:{password}@127.0.0.1:{port}/v1?token={FORMS['hex']}"
    with httpx.Client() as http:
        client = OpenAICompatibleClient(base, KEY, "llama-test", 5.0, http)

        outputs = run_failing_job(db, user, Upstream("openai", None, client), tmp_path, caplog)

    if credentials == "encoded":
        assert outputs.bubble.startswith(
            f"Could not reach OpenAI-compatible server at http://127.0.0.1:{port}/v1 (ConnectError)"
        )
    else:
        assert outputs.bubble == "OPENAI_API_BASE is not a valid URL; fix the setting."
    assert_nothing_leaked(outputs)
