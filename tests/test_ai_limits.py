"""Both HTTP providers, against their fake servers on real sockets, stay within bounds: a reply's
length, a stream line, the bytes read from the wire, and the whole attempt's time — however the
server floods or trickles."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.openai_compat import OpenAICompatibleClient
from nexus_core.ai.protocol import ChatTurn, GenerationRequest, Provider, run_stream
from nexus_core.ai.wire import MAX_ERROR_BODY_BYTES, ReplyLimits
from nexus_core.errors import PermanentProviderError, ProviderError, TransientProviderError
from nexus_core.settings import Settings
from tests.fakes import ScriptedServer

KEY = "sk-limits-test-key-0000"
HELLO = GenerationRequest(system_instruction="", turns=(ChatTurn("user", "Hi"),))
HUGE = 200 * 1024 * 1024  # the 200 MB of the incident
# What may be in flight when the client stops reading: its own reads plus both sockets' buffers.
IN_FLIGHT_ALLOWANCE = 32 * 1024 * 1024
TRICKLE_SECONDS = 0.05
ATTEMPT_SECONDS = 1.0
QUICK_ATTEMPT_SECONDS = 3.0  # a quick reply's deadline, with room for a loaded machine


@dataclass
class Upstream:
    """One provider's fake server and a way to build its client."""

    name: str
    server: ScriptedServer
    http: httpx.Client

    def client(self, *, timeout: float = 30.0, limits: ReplyLimits | None = None) -> Provider:
        if self.name == "gemini":
            base = self.server.base_url  # type: ignore[attr-defined]
            return GeminiClient(KEY, "gemini-test", base, timeout, self.http, limits)
        base = self.server.base_url  # type: ignore[attr-defined]
        return OpenAICompatibleClient(base, KEY, "llama-test", timeout, self.http, limits)

    def enqueue(self, **script: object) -> None:
        self.server.enqueue(**script)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture(params=["gemini", "openai"])
def upstream(request: pytest.FixtureRequest, http: httpx.Client) -> Upstream:
    server = request.getfixturevalue(f"{request.param}_server")
    return Upstream(request.param, server, http)


def failure_of(provider: Provider, request: GenerationRequest = HELLO) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run_stream(provider, request)
    return caught.value


# --- size ---------------------------------------------------------------------------------------


def test_a_reply_longer_than_the_limit_fails_permanently_and_delivers_nothing_past_it(
    upstream: Upstream,
) -> None:
    limit = 1_000
    upstream.enqueue(chunks=["0123456789" * 10] * 50, split_bytes=False)
    deltas: list[str] = []

    with pytest.raises(PermanentProviderError) as caught:
        run_stream(upstream.client(limits=ReplyLimits(max_reply_chars=limit)), HELLO, deltas.append)

    assert caught.value.error_type == "reply_too_long"
    assert str(caught.value).startswith("The reply was too long")
    assert sum(map(len, deltas)) <= limit


def test_a_reply_at_the_limit_is_whole(upstream: Upstream) -> None:
    upstream.enqueue(chunks=["0123456789"] * 100, split_bytes=False)

    result = run_stream(upstream.client(limits=ReplyLimits(max_reply_chars=1_000)), HELLO)

    assert len(result.text) == 1_000


@pytest.mark.timeout(120)
def test_a_200_mb_line_without_a_newline_fails_at_the_line_limit_without_reading_it_all(
    upstream: Upstream,
) -> None:
    upstream.enqueue(chunks=["Start of an answer "], finish_reason=None, flood_bytes=HUGE)

    error = failure_of(upstream.client())

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "response_too_large"
    assert str(error).startswith("The reply was too long")
    upstream.server.wait_until_answered(1)
    assert upstream.server.bytes_sent < IN_FLIGHT_ALLOWANCE


@pytest.mark.timeout(120)
def test_endless_small_events_stop_at_the_response_byte_limit(upstream: Upstream) -> None:
    upstream.enqueue(chunks=["A start"], finish_reason=None, keep_alive_forever=True)
    upstream.server.chunk_pause = 0.0  # as fast as the socket takes them
    limits = ReplyLimits(max_response_bytes=256 * 1024)

    error = failure_of(upstream.client(limits=limits))

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "response_too_large"
    upstream.server.wait_until_answered(1)
    assert upstream.server.bytes_sent < IN_FLIGHT_ALLOWANCE


@pytest.mark.timeout(120)
def test_a_huge_error_body_is_read_only_as_far_as_its_codes(upstream: Upstream) -> None:
    upstream.enqueue(status=503, flood_bytes=HUGE)

    error = failure_of(upstream.client())

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "http_503"
    upstream.server.wait_until_answered(1)
    assert upstream.server.bytes_sent < MAX_ERROR_BODY_BYTES + IN_FLIGHT_ALLOWANCE


# --- time ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_stream_that_trickles_for_ever_times_out_at_the_attempt_deadline(
    upstream: Upstream,
) -> None:
    upstream.enqueue(
        chunks=["Thinking "],
        finish_reason=None,
        split_bytes=False,  # the first event in one piece, then a keep-alive at a time
        keep_alive_forever=True,
        trickle_seconds=TRICKLE_SECONDS,  # far below any per-read timeout
    )
    deltas: list[str] = []

    with pytest.raises(TransientProviderError) as caught:
        run_stream(upstream.client(timeout=ATTEMPT_SECONDS), HELLO, deltas.append)

    assert caught.value.error_type == "timeout"
    assert deltas == ["Thinking "]


@pytest.mark.timeout(60)
def test_headers_that_trickle_for_ever_time_out_at_the_attempt_deadline(
    upstream: Upstream,
) -> None:
    upstream.enqueue(headers_forever=True, trickle_seconds=TRICKLE_SECONDS)

    error = failure_of(upstream.client(timeout=ATTEMPT_SECONDS))

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "timeout"


@pytest.mark.timeout(60)
def test_the_requests_own_limit_shortens_the_providers_timeout(upstream: Upstream) -> None:
    upstream.enqueue(keep_alive_forever=True, trickle_seconds=TRICKLE_SECONDS)
    request = GenerationRequest("", (ChatTurn("user", "Hi"),), timeout_seconds=ATTEMPT_SECONDS)

    error = failure_of(upstream.client(timeout=600.0), request)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "timeout"


def test_a_quick_reply_is_not_disturbed_by_its_deadline_on_a_reused_connection(
    upstream: Upstream,
) -> None:
    """The first attempt's deadline passes while its connection waits in the pool: a timer left
    armed would cut the connection the next attempts reuse. The deadline is long enough for a
    quick reply on a loaded machine (1 s was not, once, beside another run of the suite)."""
    client = upstream.client(timeout=QUICK_ATTEMPT_SECONDS)
    began = time.monotonic()
    texts = [run_stream(client, HELLO).text]
    time.sleep(max(0.0, began + QUICK_ATTEMPT_SECONDS + 0.2 - time.monotonic()))

    texts += [run_stream(client, HELLO).text for _ in range(2)]

    assert all(texts) and len(set(texts)) == 1


# --- settings -----------------------------------------------------------------------------------


def test_the_openai_provider_has_its_own_timeout_and_both_take_the_size_limits() -> None:
    settings = Settings(
        gemini_api_key=KEY,
        gemini_timeout_seconds=30.0,
        openai_api_base="http://127.0.0.1:9/v1",
        openai_model="m",
        openai_timeout_seconds=7.0,
        max_reply_chars=123,
        max_sse_event_bytes=456,
        max_response_bytes=789,
    )

    gemini = GeminiClient.from_settings(settings)
    openai = OpenAICompatibleClient.from_settings(settings)

    assert (gemini.timeout_seconds, openai.timeout_seconds) == (30.0, 7.0)
    assert gemini.limits == openai.limits == ReplyLimits(123, 456, 789)


# --- encoding -----------------------------------------------------------------------------------


def test_every_request_asks_for_an_uncompressed_answer(upstream: Upstream) -> None:
    upstream.enqueue()
    run_stream(upstream.client(), HELLO)
    assert upstream.server.last_request.headers["accept-encoding"] == "identity"  # type: ignore[attr-defined]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP, identity"])
def test_an_answer_compressed_anyway_is_refused_without_decompressing_it(
    upstream: Upstream, encoding: str
) -> None:
    bomb = gzip.compress(b"data: " + b"x" * 50_000_000)  # 50 MB in about 50 KB
    upstream.enqueue(body=bomb, headers={"Content-Encoding": encoding})

    failure = failure_of(upstream.client())

    assert isinstance(failure, PermanentProviderError)
    assert failure.error_type == "response_encoding"
    assert "compressed answer" in str(failure)
