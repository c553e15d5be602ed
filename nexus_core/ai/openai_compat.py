"""Any OpenAI-compatible chat server (Ollama, vLLM, OpenAI, Gemini's compatible endpoint), streamed.

``POST {base}/chat/completions`` with ``stream: true`` answers server-sent events of
``chat.completion.chunk`` objects and ends with ``data: [DONE]``; with
``stream_options.include_usage`` the last chunk before it carries the token usage. Failures map
exactly as for Gemini (see `nexus_core.ai.protocol`), and so does a reply without text (see
`nexus_core.ai.http_client`): a stream that ends with neither ``[DONE]`` nor a ``finish_reason``
is Transient ``incomplete_response``, a non-JSON payload is Transient ``invalid_response``, no text
with ``content_filter`` is Permanent ``blocked_safety`` and with ``length`` Permanent
``empty_response``. The key travels only as a bearer token and is never echoed.

``timeout_seconds`` (``OPENAI_TIMEOUT_SECONDS``) bounds the whole attempt and ``limits`` what is
read, as for Gemini (see `nexus_core.ai.wire`); finish reasons outside the documented vocabulary
are recorded as ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import httpx

from nexus_core.ai.http_client import (
    DEFAULT_TIMEOUT_SECONDS,
    Attempt,
    FinishReasons,
    HttpProvider,
    decode_payload,
    finished_reply,
    ms_since,
)
from nexus_core.ai.protocol import (
    GenerationRequest,
    ProviderHints,
    ProviderResult,
    Usage,
    error_for_stream_error,
    known_value,
    token_count,
)
from nexus_core.ai.wire import IDENTITY_ENCODING, ReplyLimits, ReplyText
from nexus_core.errors import PermanentProviderError
from nexus_core.settings import Settings

DONE_SENTINEL = "[DONE]"
BLOCKED_FINISH_REASONS = {"content_filter": "blocked_safety"}
OUT_OF_TOKENS_FINISH_REASON = "length"
ROLE_NAMES = {"user": "user", "model": "assistant"}
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
UNKNOWN_REASON = "other"
NO_TEXT_REASONS = FinishReasons(BLOCKED_FINISH_REASONS, OUT_OF_TOKENS_FINISH_REASON)


class OpenAICompatibleClient(HttpProvider):
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
        hints = ProviderHints(
            who="OpenAI-compatible server",
            key_setting="OPENAI_API_KEY",
            base_setting="OPENAI_API_BASE",
            model_setting="OPENAI_MODEL",
        )
        super().__init__(hints, timeout_seconds, http, limits)
        self.api_base = (api_base or "").rstrip("/")
        self._api_key = api_key or None
        self.default_model = model or ""

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

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        """Stream the reply from ``{base}/chat/completions``, yielding text deltas."""
        model = self._model_for(request)
        reply = _Reply(self._hints, model, self.limits.max_reply_chars)
        started = time.perf_counter()
        ttft_ms: float | None = None
        with self._events(
            request,
            url=f"{self.api_base}/chat/completions",
            base_url=self.api_base,
            model=model,
            headers=self._headers(),
            body=_body(request, model),
        ) as events:
            for event in events:
                data = event.data.strip()
                if data == DONE_SENTINEL:
                    reply.done = True
                    break
                for delta in reply.add(decode_payload(data, self._hints)):
                    if ttft_ms is None:
                        ttft_ms = ms_since(started)
                    yield delta
        return finished_reply(
            Attempt(
                model=model,
                text=reply.text(),
                finish_reason=reply.finish_reason,
                complete=reply.done or reply.finish_reason is not None,
                usage=reply.usage,
                latency_ms=ms_since(started),
                ttft_ms=ttft_ms,
            ),
            self._hints,
            NO_TEXT_REASONS,
        )

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

    def text(self) -> str:
        """The reply's text so far."""
        return self._text.text()


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
