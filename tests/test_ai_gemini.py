"""The Gemini client against a fake Gemini server on a real socket."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from nexus_core.ai.gemini import GeminiClient
from nexus_core.ai.protocol import ChatTurn, GenerationRequest, Provider, Usage, run_stream
from nexus_core.ai.providers import build_provider
from nexus_core.errors import (
    ConfigError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from nexus_core.settings import Settings
from tests.fakes.gemini_server import FakeGeminiServer

SECRET_KEY = "AIzaSy-NEXUS-TEST-KEY-7f3c9e1d-do-not-leak"
MODEL = "gemini-test"
SHORT_TIMEOUT_SECONDS = 0.3
HELLO = GenerationRequest(system_instruction="You are terse.", turns=(ChatTurn("user", "Hi"),))


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def gemini(gemini_server: FakeGeminiServer, http: httpx.Client) -> GeminiClient:
    return GeminiClient(api_key=SECRET_KEY, model=MODEL, api_base=gemini_server.base_url, http=http)


def stream_all(client: GeminiClient, request: GenerationRequest = HELLO) -> tuple[list[str], str]:
    deltas: list[str] = []
    result = run_stream(client, request, on_delta=deltas.append)
    return deltas, result.text


def failure_of(client: GeminiClient, request: GenerationRequest = HELLO) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run_stream(client, request)
    return caught.value


def test_gemini_client_is_a_provider(gemini: GeminiClient) -> None:
    assert isinstance(gemini, Provider)
    assert (gemini.name, gemini.default_model, gemini.configured()) == ("gemini", MODEL, True)


def test_stream_yields_deltas_as_they_arrive_and_returns_the_result(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(chunks=["Hel", "lo, ", "wörld ☕"])

    deltas: list[str] = []
    result = run_stream(gemini, HELLO, on_delta=deltas.append)

    assert deltas == ["Hel", "lo, ", "wörld ☕"]
    assert result.text == "Hello, wörld ☕"
    assert result.finish_reason == "STOP"
    assert result.model == MODEL
    assert result.status_code == 200
    assert result.ttft_ms is not None
    assert 0 < result.ttft_ms <= result.latency_ms


def test_request_carries_system_instruction_turns_in_order_and_generation_config(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    request = GenerationRequest(
        system_instruction="You are Ada, a data analyst.",
        turns=(
            ChatTurn("user", "What is p95?"),
            ChatTurn("model", "The 95th percentile."),
            ChatTurn("user", "And p99?"),
        ),
        temperature=0.2,
        max_output_tokens=256,
    )

    run_stream(gemini, request)

    assert gemini_server.last_request.body == {
        "systemInstruction": {"parts": [{"text": "You are Ada, a data analyst."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "What is p95?"}]},
            {"role": "model", "parts": [{"text": "The 95th percentile."}]},
            {"role": "user", "parts": [{"text": "And p99?"}]},
        ],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256},
    }


def test_unset_generation_options_are_left_out(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    run_stream(gemini, GenerationRequest(system_instruction="", turns=(ChatTurn("user", "x"),)))

    assert set(gemini_server.last_request.body) == {"contents"}


def test_key_is_sent_only_in_the_header_never_in_the_url(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    run_stream(gemini, HELLO)

    (call,) = gemini_server.requests
    assert call.path == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    assert call.headers["x-goog-api-key"] == SECRET_KEY
    assert "key=" not in call.path
    assert SECRET_KEY not in call.path
    assert SECRET_KEY.encode() not in call.raw_body


def test_persona_model_replaces_the_default_in_the_path(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    result = run_stream(
        gemini, GenerationRequest("", (ChatTurn("user", "x"),), model="models/gemini-other")
    )

    assert gemini_server.last_request.path.startswith("/v1beta/models/gemini-other:")
    assert result.model == "gemini-other"


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_stream_split_at_awkward_byte_boundaries_keeps_multibyte_characters_whole(
    gemini_server: FakeGeminiServer, gemini: GeminiClient, chunk_size: int
) -> None:
    pieces = ["Grüße ", "aus 東京 ", "🚀🚀 ", "and ", "ça va?"]
    gemini_server.enqueue(chunks=pieces, chunk_size=chunk_size)

    deltas, text = stream_all(gemini)

    assert deltas == pieces
    assert text == "Grüße aus 東京 🚀🚀 and ça va?"


def test_usage_metadata_keeps_input_cached_output_and_thinking_tokens(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(
        text="Fine.",
        usage={
            "promptTokenCount": 31,
            "cachedContentTokenCount": 20,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 120,
        },
    )

    result = run_stream(gemini, HELLO)

    assert result.usage == Usage(
        input_tokens=31, cached_input_tokens=20, output_tokens=4, reasoning_tokens=120
    )


def test_counts_gemini_does_not_send_are_null_not_zero(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(text="Fine.", usage={"promptTokenCount": 7, "candidatesTokenCount": -1})

    result = run_stream(gemini, HELLO)

    assert result.usage == Usage(input_tokens=7)


def test_thought_parts_are_not_part_of_the_answer(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(thoughts=["Let me think about it…"], chunks=["Answer."])

    deltas, text = stream_all(gemini)

    assert deltas == ["Answer."]
    assert text == "Answer."


def test_503_is_transient_and_carries_the_status_code(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(status=503)

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert (error.status_code, error.error_type, error.retry_after) == (503, "http_503", None)
    assert "try again" in str(error)


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_retryable_statuses_are_transient(
    gemini_server: FakeGeminiServer, gemini: GeminiClient, status: int
) -> None:
    gemini_server.enqueue(status=status)

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == f"http_{status}"


def test_429_with_retry_info_carries_the_servers_wait_hint(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(status=429, retry_delay="2s")

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert (error.status_code, error.error_type, error.retry_after) == (429, "http_429", 2.0)


def test_429_with_retry_after_header_carries_the_servers_wait_hint(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(status=429, retry_after="2")

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert error.retry_after == 2.0


def test_wait_hint_is_the_larger_of_header_and_retry_info(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(status=503, retry_after="1", retry_delay="1.5s")

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert error.retry_after == 1.5


def test_400_is_permanent_and_names_the_status_code_but_not_geminis_free_text(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(status=400, error_message="Invalid value at 'temperature' (3.5)")

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert (error.status_code, error.error_type) == (400, "http_400")
    assert str(error) == "Gemini rejected the request (HTTP 400, INVALID_ARGUMENT)."


def test_400_for_an_invalid_key_says_to_check_the_key(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(
        status=400, error_reason="API_KEY_INVALID", error_message="API key not valid."
    )

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert "check GEMINI_API_KEY" in str(error)


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_permanent_and_says_to_check_the_key(
    gemini_server: FakeGeminiServer, gemini: GeminiClient, status: int
) -> None:
    gemini_server.enqueue(status=status)

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert error.status_code == status
    assert "Gemini rejected the API key" in str(error)
    assert "check GEMINI_API_KEY" in str(error)


def test_404_names_the_model_and_the_settings_to_check(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(status=404)

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "http_404"
    assert f"model '{MODEL}' not found" in str(error)
    assert "GEMINI_MODEL" in str(error)


def test_server_slower_than_the_timeout_is_a_transient_timeout(
    gemini_server: FakeGeminiServer, http: httpx.Client
) -> None:
    client = GeminiClient(SECRET_KEY, MODEL, gemini_server.base_url, SHORT_TIMEOUT_SECONDS, http)
    gemini_server.enqueue(delay=5)

    started = time.perf_counter()
    error = failure_of(client)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "timeout"
    assert time.perf_counter() - started < 3


def test_refused_connection_is_a_transient_connection_error(http: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GeminiClient(SECRET_KEY, MODEL, f"http://127.0.0.1:{port}/v1beta", 5, http)

    error = failure_of(client)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "connection_error"
    assert isinstance(error.__cause__, httpx.ConnectError)


def test_blocked_prompt_is_permanent_with_a_message_the_user_can_act_on(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(block_reason="SAFETY")

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "blocked_prompt"
    assert str(error) == (
        "Gemini refused this prompt (reason: SAFETY). Rephrase the message and try again."
    )


@pytest.mark.parametrize(
    ("finish_reason", "error_type"),
    [
        ("SAFETY", "blocked_safety"),
        ("PROHIBITED_CONTENT", "blocked_safety"),
        ("RECITATION", "blocked_recitation"),
    ],
)
def test_withheld_answer_without_text_is_permanent(
    gemini_server: FakeGeminiServer, gemini: GeminiClient, finish_reason: str, error_type: str
) -> None:
    gemini_server.enqueue(chunks=[], finish_reason=finish_reason)

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == error_type
    assert finish_reason in str(error)


def test_safety_stop_after_some_text_returns_that_text(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(chunks=["Partial answer"], finish_reason="SAFETY")

    result = run_stream(gemini, HELLO)

    assert (result.text, result.finish_reason) == ("Partial answer", "SAFETY")


def test_garbled_stream_payload_is_a_transient_invalid_response(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(raw_events=['{"candidates": [{"content": {"par'])

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "invalid_response"


def test_stream_that_ends_before_a_finish_reason_is_transient(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(chunks=["Half an ans"], finish_reason=None)

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "incomplete_response"


def test_error_object_inside_the_stream_maps_by_its_code(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(raw_events=['{"error": {"code": 503, "message": "overloaded"}}'])

    error = failure_of(gemini)

    assert isinstance(error, TransientProviderError)
    assert (error.status_code, error.error_type) == (503, "http_503")


def test_empty_answer_that_ran_out_of_tokens_is_permanent(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    gemini_server.enqueue(thoughts=["long musing"], chunks=[], finish_reason="MAX_TOKENS")

    error = failure_of(gemini)

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "empty_response"


@pytest.mark.parametrize(
    "script",
    [
        {"status": 400, "error_message": f"API key not valid: {SECRET_KEY}"},
        {"status": 401},
        {"status": 403, "error_message": f"Permission denied for ?key={SECRET_KEY}"},
        {"status": 404},
        {"status": 429, "retry_delay": "3s"},
        {"status": 503},
        {"block_reason": "SAFETY"},
        {"raw_events": ["not json"]},
        {"delay": 5},
    ],
    ids=lambda script: "-".join(f"{k}={v}" for k, v in script.items())[:30],
)
def test_the_key_never_appears_in_an_error_or_its_cause(
    gemini_server: FakeGeminiServer, http: httpx.Client, script: dict[str, object]
) -> None:
    client = GeminiClient(SECRET_KEY, MODEL, gemini_server.base_url, SHORT_TIMEOUT_SECONDS, http)
    gemini_server.enqueue(**script)

    error: BaseException | None = failure_of(client)

    while error is not None:
        for text in (str(error), repr(error), repr(error.args)):
            assert SECRET_KEY not in text
        error = error.__cause__ or error.__context__


def test_the_key_is_not_in_the_clients_repr(gemini: GeminiClient) -> None:
    assert SECRET_KEY not in repr(gemini)
    assert "key=set" in repr(gemini)


def test_missing_key_fails_without_calling_gemini(
    gemini_server: FakeGeminiServer, http: httpx.Client
) -> None:
    client = GeminiClient(api_key=None, api_base=gemini_server.base_url, http=http)

    error = failure_of(client)

    assert client.configured() is False
    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "not_configured"
    assert gemini_server.requests == []


def test_one_client_serves_many_threads_at_once(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    requests = [GenerationRequest("", (ChatTurn("user", f"question {n}"),)) for n in range(8)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = [result.text for result in pool.map(lambda r: run_stream(gemini, r), requests)]

    assert len(set(texts)) == 1 and texts[0]
    asked = sorted(call.body["contents"][0]["parts"][0]["text"] for call in gemini_server.requests)
    assert asked == sorted(f"question {n}" for n in range(8))


def test_abandoned_stream_releases_its_connection(
    gemini_server: FakeGeminiServer, gemini: GeminiClient
) -> None:
    stream = gemini.stream(HELLO)
    assert next(stream)
    stream.close()

    assert run_stream(gemini, HELLO).text


def test_build_provider_picks_gemini_when_a_key_is_set(
    gemini_server: FakeGeminiServer, http: httpx.Client
) -> None:
    settings = Settings(gemini_api_key=SECRET_KEY, gemini_api_base=gemini_server.base_url)

    provider = build_provider(settings, http=http)

    assert isinstance(provider, GeminiClient)
    assert run_stream(provider, HELLO).text


def test_build_provider_refuses_gemini_without_a_key() -> None:
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        build_provider(Settings(), name="gemini")
