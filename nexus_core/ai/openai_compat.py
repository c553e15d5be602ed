"""Any OpenAI-compatible chat server (Ollama, vLLM, OpenAI, Gemini's compatible endpoint), streamed.

``POST {base}/chat/completions`` with ``stream: true`` answers server-sent events of
``chat.completion.chunk`` objects and ends with ``data: [DONE]``; with
``stream_options.include_usage`` the last chunk before it carries the token usage. Failures map
exactly as for Gemini (see `nexus_core.ai.protocol`); a stream that ends with neither ``[DONE]`` nor
a ``finish_reason`` is Transient ``incomplete_response`` and a non-JSON payload is Transient
``invalid_response``. The key travels only as a bearer token and is never echoed.

``timeout_seconds`` (``OPENAI_TIMEOUT_SECONDS``) bounds the whole attempt and ``limits`` what is
read, as for Gemini (see `nexus_core.ai.wire`); finish reasons outside the documented vocabulary
are recorded as ``other``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from typing import Any

import httpx

from nexus_core.ai.protocol import (
    GenerationRequest,
    ProviderHints,
    ProviderResult,
    Usage,
    error_for_status,
    error_for_stream_error,
    invalid_response,
    known_value,
    token_count,
)
from nexus_core.ai.sse import iter_events
from nexus_core.ai.wire import (
    IDENTITY_ENCODING,
    ReplyLimits,
    ReplyText,
    attempt_seconds,
    bounded_attempt,
    bounded_chunks,
    read_error_body,
    wire_bytes,
)
from nexus_core.errors import PermanentProviderError, ProviderError, TransientProviderError
from nexus_core.settings import Settings

DEFAULT_TIMEOUT_SECONDS = 30.0
DONE_SENTINEL = "[DONE]"
BLOCKED_FINISH_REASONS = {"content_filter": "blocked_safety"}
OUT_OF_TOKENS_FINISH_REASON = "length"
ROLE_NAMES = {"user": "user", "model": "assistant"}
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
UNKNOWN_REASON = "other"


class OpenAICompatibleClient:
    """The provider for any server that speaks OpenAI's streaming chat completions API."""

    name = "openai"
    label = "OpenAI-compatible server"

    def __init__(
        self,
        api_base: str | None,
        api_key: str | None,
        model: str | None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
        limits: ReplyLimits | None = None,
    ) -> None:
        self.api_base = (api_base or "").rstrip("/")
        self._api_key = api_key or None
        self.default_model = model or ""
        self.timeout_seconds = timeout_seconds
        self.limits = limits or ReplyLimits()
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()
        self._hints = ProviderHints(
            who="OpenAI-compatible server",
            key_setting="OPENAI_API_KEY",
            base_setting="OPENAI_API_BASE",
            model_setting="OPENAI_MODEL",
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, http: httpx.Client | None = None
    ) -> OpenAICompatibleClient:
        """A client configured by ``OPENAI_API_BASE``, ``OPENAI_API_KEY``, ``OPENAI_MODEL`` and
        ``OPENAI_TIMEOUT_SECONDS``."""
        return cls(
            api_base=settings.openai_api_base,
            api_key=settings.openai_api_key,
            model=settings.openai_model,
            timeout_seconds=settings.openai_timeout_seconds,
            http=http,
            limits=ReplyLimits.from_settings(settings),
        )

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return (
            f"OpenAICompatibleClient(model={self.default_model!r}, "
            f"api_base={self.api_base!r}, key={key})"
        )

    def configured(self) -> bool:
        """Whether a base URL and a default model are set (the key is optional, e.g. Ollama)."""
        return bool(self.api_base and self.default_model)

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> OpenAICompatibleClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        """Stream the reply from ``{base}/chat/completions``, yielding text deltas."""
        model = self._model_for(request)
        reply = _Reply(self._hints, model, self.limits.max_reply_chars)
        started = time.perf_counter()
        ttft_ms: float | None = None
        seconds = attempt_seconds(self.timeout_seconds, request)
        with (
            bounded_attempt(seconds, self._hints, self.api_base) as deadline,
            self._http.stream(
                "POST",
                f"{self.api_base}/chat/completions",
                headers=self._headers(),
                json=_body(request, model),
                timeout=deadline.timeout(),
                extensions=deadline.extensions,
            ) as response,
            deadline.watching(response),
        ):
            if not response.is_success:
                raise self._status_error(response, model)
            chunks = bounded_chunks(
                wire_bytes(response, self._hints),
                deadline,
                self.limits.max_response_bytes,
                self._hints,
            )
            for event in iter_events(chunks, self.limits.max_event_bytes):
                data = event.data.strip()
                if data == DONE_SENTINEL:
                    reply.done = True
                    break
                for delta in reply.add(self._decode(data)):
                    if ttft_ms is None:
                        ttft_ms = (time.perf_counter() - started) * 1000.0
                    yield delta
        return reply.result(latency_ms=(time.perf_counter() - started) * 1000.0, ttft_ms=ttft_ms)

    def _model_for(self, request: GenerationRequest) -> str:
        if not self.api_base:
            raise PermanentProviderError(
                "The OpenAI-compatible provider is not configured: set OPENAI_API_BASE "
                "(e.g. http://localhost:11434/v1).",
                error_type="not_configured",
            )
        model = request.model or self.default_model
        if not model:
            raise PermanentProviderError(
                "No model chosen for the OpenAI-compatible provider: set OPENAI_MODEL "
                "or the persona's model.",
                error_type="not_configured",
            )
        return model

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream", **IDENTITY_ENCODING}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _decode(self, data: str) -> dict[str, Any]:
        if not data:
            return {}
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise invalid_response(self._hints, "a payload that is not JSON") from exc
        if not isinstance(payload, dict):
            raise invalid_response(self._hints, "a payload that is not a JSON object")
        return payload

    def _status_error(self, response: httpx.Response, model: str) -> ProviderError:
        return error_for_status(
            response.status_code,
            read_error_body(response),
            response.headers,
            hints=self._hints,
            model=model,
        )


class _Reply:
    """Collects the text, finish reason and usage from ``chat.completion.chunk`` objects."""

    def __init__(self, hints: ProviderHints, model: str, max_chars: int) -> None:
        self._hints = hints
        self._model = model
        self._text = ReplyText(hints, max_chars)
        self.finish_reason: str | None = None
        self.usage = Usage()
        self.done = False

    def add(self, chunk: dict[str, Any]) -> list[str]:
        """Take in one chunk and return its new text deltas."""
        if not chunk:
            return []
        if "error" in chunk:
            raise error_for_stream_error(chunk, hints=self._hints, model=self._model)
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = known_value(
                choice["finish_reason"], FINISH_REASONS, UNKNOWN_REASON
            )
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(content, str) or not content:
            return []
        self._text.add(content)
        return [content]

    def result(self, *, latency_ms: float, ttft_ms: float | None) -> ProviderResult:
        """The finished reply, or the error that explains why there is none."""
        text = self._text.text()
        who = self._hints.who
        if not self.done and self.finish_reason is None:
            raise TransientProviderError(
                f"{who}'s reply ended before it was complete; try again.",
                status_code=200,
                error_type="incomplete_response",
            )
        if not text:
            reason = self.finish_reason
            if reason in BLOCKED_FINISH_REASONS:
                raise PermanentProviderError(
                    f"{who} withheld its answer (reason: {reason}). "
                    "Rephrase the message and try again.",
                    status_code=200,
                    error_type=BLOCKED_FINISH_REASONS[reason],
                )
            if reason == OUT_OF_TOKENS_FINISH_REASON:
                raise PermanentProviderError(
                    f"{who} used its whole output budget before writing any answer; "
                    "raise the output token limit or ask a shorter question.",
                    status_code=200,
                    error_type="empty_response",
                )
            raise TransientProviderError(
                f"{who} returned an empty answer; try again.",
                status_code=200,
                error_type="empty_response",
            )
        return ProviderResult(
            text=text,
            finish_reason=self.finish_reason,
            usage=self.usage,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            model=self._model,
            status_code=200,
        )


def _body(request: GenerationRequest, model: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": request.system_instruction}]
    messages += [{"role": ROLE_NAMES[turn.role], "content": turn.text} for turn in request.turns]
    if not request.system_instruction:
        messages = messages[1:]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    return body


def _usage(usage: dict[str, Any]) -> Usage:
    """OpenAI's ``usage``: ``prompt_tokens`` includes the cached input and ``completion_tokens``
    includes the reasoning, so the visible output is completion − reasoning (billed alike)."""
    prompt_details, completion_details = (
        usage.get("prompt_tokens_details"),
        usage.get("completion_tokens_details"),
    )
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    )
    completion, reasoning = token_count(usage.get("completion_tokens")), token_count(reasoning)
    visible = completion if completion is None or reasoning is None else completion - reasoning
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")),
        cached_input_tokens=token_count(cached),
        output_tokens=None if visible is None else max(visible, 0),
        reasoning_tokens=reasoning,
    )
