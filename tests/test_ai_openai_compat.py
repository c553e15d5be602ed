"""The OpenAI-compatible client against a fake chat-completions server on a real socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from nexus_core.ai.openai_compat import OpenAICompatibleClient
from nexus_core.ai.protocol import ChatTurn, GenerationRequest, Provider, Usage, run_stream
from nexus_core.ai.providers import build_provider
from nexus_core.errors import (
    ConfigError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from nexus_core.settings import Settings
from tests.fakes.openai_server import FakeOpenAIServer

SECRET_KEY = "sk-nexus-test-4b8e2a91-do-not-leak"
MODEL = "llama-test"
SHORT_TIMEOUT_SECONDS = 0.3
HELLO = GenerationRequest(system_instruction="You are terse.", turns=(ChatTurn("user", "Hi"),))


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def openai(openai_server: FakeOpenAIServer, http: httpx.Client) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        api_base=openai_server.base_url, api_key=SECRET_KEY, model=MODEL, http=http
    )


def failure_of(client: OpenAICompatibleClient) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run_stream(client, HELLO)
    return caught.value


def test_openai_client_is_a_configured_provider(openai: OpenAICompatibleClient) -> None:
    assert isinstance(openai, Provider)
    assert (openai.name, openai.default_model, openai.configured()) == ("openai", MODEL, True)


def test_stream_yields_deltas_and_returns_text_finish_reason_and_usage(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(
        chunks=["Bon", "jour ", "à tous ✓"],
        usage={
            "prompt_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 16},
            "completion_tokens": 5,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    )

    deltas: list[str] = []
    result = run_stream(openai, HELLO, on_delta=deltas.append)

    assert deltas == ["Bon", "jour ", "à tous ✓"]
    assert (result.text, result.finish_reason, result.model) == ("Bonjour à tous ✓", "stop", MODEL)
    # completion_tokens includes the reasoning: the visible output is 5 − 2
    assert result.usage == Usage(
        input_tokens=21, cached_input_tokens=16, output_tokens=3, reasoning_tokens=2
    )
    assert result.ttft_ms is not None and result.ttft_ms <= result.latency_ms


def test_request_has_system_message_mapped_roles_and_asks_for_usage(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    request = GenerationRequest(
        system_instruction="You are Ada.",
        turns=(ChatTurn("user", "Q1"), ChatTurn("model", "A1"), ChatTurn("user", "Q2")),
        temperature=0.7,
        max_output_tokens=100,
    )

    run_stream(openai, request)

    assert openai_server.last_request.path == "/v1/chat/completions"
    assert openai_server.last_request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are Ada."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "max_tokens": 100,
    }


def test_key_is_sent_only_as_a_bearer_token(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    run_stream(openai, HELLO)

    call = openai_server.last_request
    assert call.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert SECRET_KEY not in call.path
    assert SECRET_KEY.encode() not in call.raw_body


def test_server_without_a_key_gets_no_authorization_header(
    openai_server: FakeOpenAIServer, http: httpx.Client
) -> None:
    client = OpenAICompatibleClient(openai_server.base_url, None, MODEL, http=http)

    run_stream(client, HELLO)

    assert "authorization" not in openai_server.last_request.headers


@pytest.mark.parametrize("chunk_size", [1, 4, 7])
def test_stream_split_at_awkward_byte_boundaries_keeps_multibyte_characters_whole(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient, chunk_size: int
) -> None:
    openai_server.enqueue(chunks=["Ωmega ", "🚀 ", "日本"], chunk_size=chunk_size)

    assert run_stream(openai, HELLO).text == "Ωmega 🚀 日本"


def test_503_is_transient_and_carries_the_status_code(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(status=503)

    error = failure_of(openai)

    assert isinstance(error, TransientProviderError)
    assert (error.status_code, error.error_type) == (503, "http_503")


def test_429_with_retry_after_header_carries_the_servers_wait_hint(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(status=429, retry_after="2")

    error = failure_of(openai)

    assert isinstance(error, TransientProviderError)
    assert (error.error_type, error.retry_after) == ("http_429", 2.0)


def test_401_is_permanent_and_says_to_check_the_key(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(status=401, error_message=f"Incorrect API key provided: {SECRET_KEY}")

    error = failure_of(openai)

    assert isinstance(error, PermanentProviderError)
    assert "check OPENAI_API_KEY" in str(error)
    assert SECRET_KEY not in str(error)
    assert SECRET_KEY not in repr(error)


def test_400_is_permanent_and_names_the_error_type_but_not_the_servers_free_text(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(status=400, error_message="max_tokens is too large")

    error = failure_of(openai)

    assert isinstance(error, PermanentProviderError)
    assert str(error) == (
        "OpenAI-compatible server rejected the request (HTTP 400, invalid_request_error)."
    )


def test_404_points_at_the_model_and_base_url_settings(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(status=404, error_message=f"model '{MODEL}' not found")

    error = failure_of(openai)

    assert isinstance(error, PermanentProviderError)
    assert "OPENAI_MODEL" in str(error) and "OPENAI_API_BASE" in str(error)


def test_server_slower_than_the_timeout_is_a_transient_timeout(
    openai_server: FakeOpenAIServer, http: httpx.Client
) -> None:
    client = OpenAICompatibleClient(
        openai_server.base_url, SECRET_KEY, MODEL, SHORT_TIMEOUT_SECONDS, http
    )
    openai_server.enqueue(delay=5)

    error = failure_of(client)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "timeout"


def test_refused_connection_is_a_transient_connection_error(http: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OpenAICompatibleClient(f"http://127.0.0.1:{port}/v1", SECRET_KEY, MODEL, 5, http)

    error = failure_of(client)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "connection_error"


def test_content_filter_without_text_is_permanent_blocked_safety(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(chunks=[], finish_reason="content_filter")

    error = failure_of(openai)

    assert isinstance(error, PermanentProviderError)
    assert error.error_type == "blocked_safety"


@pytest.mark.parametrize(
    ("finish_reason", "error_class", "named"),
    [
        ("length", PermanentProviderError, "before writing any answer (length)"),
        ("stop", TransientProviderError, "an empty answer (finish reason: stop)"),
    ],
)
def test_an_answer_without_text_is_permanent_only_when_it_ran_out_of_tokens(
    openai_server: FakeOpenAIServer,
    openai: OpenAICompatibleClient,
    finish_reason: str,
    error_class: type[Exception],
    named: str,
) -> None:
    openai_server.enqueue(chunks=[], finish_reason=finish_reason)

    error = failure_of(openai)

    assert type(error) is error_class
    assert error.error_type == "empty_response"
    assert named in str(error)


def test_stream_cut_before_done_or_finish_reason_is_transient(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(chunks=["Half"], finish_reason=None, send_done=False)

    error = failure_of(openai)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "incomplete_response"


def test_nothing_after_done_is_read(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(raw_events=['{"choices":[{"delta":{"content":"ok"}}]}', "[DONE]", "junk"])

    assert run_stream(openai, HELLO).text == "ok"


def test_garbled_payload_is_a_transient_invalid_response(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(raw_events=["{oops"])

    error = failure_of(openai)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "invalid_response"


def test_error_chunk_inside_the_stream_is_a_provider_error(
    openai_server: FakeOpenAIServer, openai: OpenAICompatibleClient
) -> None:
    openai_server.enqueue(raw_events=['{"error": {"message": "backend crashed"}}'])

    error = failure_of(openai)

    assert isinstance(error, TransientProviderError)
    assert error.error_type == "stream_error"
    assert "backend crashed" not in str(error)


def test_the_key_is_not_in_the_clients_repr(openai: OpenAICompatibleClient) -> None:
    assert SECRET_KEY not in repr(openai)


def test_client_without_base_url_is_not_configured_and_fails_permanently() -> None:
    with OpenAICompatibleClient(api_base=None, api_key=None, model=MODEL) as client:
        error = failure_of(client)

    assert client.configured() is False
    assert isinstance(error, PermanentProviderError)
    assert "OPENAI_API_BASE" in str(error)


def test_build_provider_picks_openai_when_configured(
    openai_server: FakeOpenAIServer, http: httpx.Client
) -> None:
    settings = Settings(
        ai_provider="openai", openai_api_base=openai_server.base_url, openai_model=MODEL
    )

    provider = build_provider(settings, http=http)

    assert isinstance(provider, OpenAICompatibleClient)
    assert run_stream(provider, HELLO).text


def test_build_provider_refuses_openai_without_base_url_and_model() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_BASE and OPENAI_MODEL"):
        build_provider(Settings(ai_provider="openai"))


def test_build_provider_refuses_openai_without_a_model() -> None:
    with pytest.raises(ConfigError, match="needs OPENAI_MODEL;"):
        build_provider(Settings(openai_api_base="http://localhost:11434/v1"), name="openai")
