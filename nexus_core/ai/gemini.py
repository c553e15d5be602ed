"""Google Gemini over its REST API (v1beta), streamed with server-sent events.

The key travels only in the ``x-goog-api-key`` header: a ``?key=`` query string would end up in
proxy logs and in httpx's error messages. It never appears in a URL, a message or a ``repr``.

Judgement calls, all retried by the job unless noted (the shared ones are in
`nexus_core.ai.http_client`):

- a ``data:`` payload that is not a JSON object is `TransientProviderError` ``invalid_response``;
- a stream that ends before any ``finishReason`` is Transient ``incomplete_response``;
- no text with ``finishReason: STOP`` is Transient ``empty_response`` (Gemini occasionally does
  this; a retry helps), but no text with ``MAX_TOKENS`` is Permanent ``empty_response`` (thinking
  used the whole output budget; retrying with the same limit would fail the same way);
- a blocked prompt (``promptFeedback.blockReason``) or a blocked answer (``SAFETY``,
  ``RECITATION``, ...) with no text is Permanent; a blocked answer *with* partial text returns it
  with that ``finish_reason``.

``timeout_seconds`` bounds the whole attempt, from connecting to the last byte, however slowly
the server trickles (see `nexus_core.ai.wire`); a request's own ``timeout_seconds`` may shorten
it. ``limits`` bound what is read: the reply's characters, one stream event, the bytes in all.
Error messages never quote Gemini's words: finish and block reasons are named only when they are
in Gemini's documented vocabulary. The client holds no per-request state, so one instance serves
many threads (``httpx.Client`` is thread-safe).
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

DEFAULT_MODEL = "gemini-flash-latest"
DEFAULT_API_BASE = "https://generativelanguage.googleapis.com/v1beta"
API_KEY_HEADER = "x-goog-api-key"
STREAM_METHOD = "streamGenerateContent"
# Finish reasons that mean "the answer was withheld", mapped to their dashboard error_type.
BLOCKED_FINISH_REASONS = {
    "SAFETY": "blocked_safety",
    "PROHIBITED_CONTENT": "blocked_safety",
    "SPII": "blocked_safety",
    "BLOCKLIST": "blocked_safety",
    "IMAGE_SAFETY": "blocked_safety",
    "RECITATION": "blocked_recitation",
    "OTHER": "blocked_other",
}
OUT_OF_TOKENS_FINISH_REASON = "MAX_TOKENS"
# Gemini's documented finish and block reasons; any other word is recorded as OTHER.
FINISH_REASONS = frozenset(
    {
        "STOP",
        "MAX_TOKENS",
        "LANGUAGE",
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "FINISH_REASON_UNSPECIFIED",
        *BLOCKED_FINISH_REASONS,
    }
)
BLOCK_REASONS = frozenset(
    {"SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "SPII"}
)
UNKNOWN_REASON = "OTHER"
NO_TEXT_REASONS = FinishReasons(BLOCKED_FINISH_REASONS, OUT_OF_TOKENS_FINISH_REASON)


class GeminiClient(HttpProvider):
    """The Gemini provider: one reusable, thread-safe client for the REST API."""

    name = "gemini"
    label = "Google Gemini"

    def __init__(
        self,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        api_base: str = DEFAULT_API_BASE,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
        limits: ReplyLimits | None = None,
    ) -> None:
        hints = ProviderHints(
            who="Gemini",
            key_setting="GEMINI_API_KEY",
            base_setting="GEMINI_API_BASE",
            model_setting="GEMINI_MODEL",
        )
        super().__init__(hints, timeout_seconds, http, limits)
        self._api_key = api_key or None
        self.default_model = _bare_model(model)
        self.api_base = api_base.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.Client | None = None) -> GeminiClient:
        """A client configured by ``GEMINI_API_KEY``, ``GEMINI_MODEL``, ``GEMINI_API_BASE`` etc."""
        return cls(
            api_key=settings.gemini_api_key,
            model=settings.gemini_model,
            api_base=settings.gemini_api_base,
            timeout_seconds=settings.gemini_timeout_seconds,
            http=http,
            limits=ReplyLimits.from_settings(settings),
        )

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"GeminiClient(model={self.default_model!r}, api_base={self.api_base!r}, key={key})"

    def configured(self) -> bool:
        """Whether an API key is set."""
        return self._api_key is not None

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        """Stream the reply via ``:streamGenerateContent?alt=sse``, yielding text deltas."""
        model = self._model_for(request)
        reply = _Reply(self._hints, self.limits.max_reply_chars)
        started = time.perf_counter()
        ttft_ms: float | None = None
        with self._events(
            request,
            url=self._url(model, STREAM_METHOD),
            base_url=self.api_base,
            model=model,
            params={"alt": "sse"},
            headers=self._headers(accept="text/event-stream"),
            body=_body(request),
        ) as events:
            for event in events:
                for delta in reply.add(decode_payload(event.data, self._hints), model):
                    if ttft_ms is None:
                        ttft_ms = ms_since(started)
                    yield delta
        return finished_reply(
            Attempt(
                model=model,
                text=reply.text(),
                finish_reason=reply.finish_reason,
                complete=reply.finish_reason is not None,
                usage=reply.usage,
                latency_ms=ms_since(started),
                ttft_ms=ttft_ms,
            ),
            self._hints,
            NO_TEXT_REASONS,
        )

    def _model_for(self, request: GenerationRequest) -> str:
        if self._api_key is None:
            raise PermanentProviderError(
                "Gemini is not configured: set GEMINI_API_KEY (or choose another "
                "NEXUS_AI_PROVIDER).",
                error_type="not_configured",
            )
        return _bare_model(request.model) if request.model else self.default_model

    def _url(self, model: str, method: str) -> str:
        return f"{self.api_base}/models/{model}:{method}"

    def _headers(self, *, accept: str) -> dict[str, str]:
        return {API_KEY_HEADER: self._api_key or "", "accept": accept, **IDENTITY_ENCODING}


class _Reply:
    """Collects the text, finish reason and usage from one or more response chunks."""

    def __init__(self, hints: ProviderHints, max_chars: int) -> None:
        self._hints = hints
        self._text = ReplyText(hints, max_chars)
        self.finish_reason: str | None = None
        self.usage = Usage()

    def add(self, chunk: dict[str, Any], model: str) -> list[str]:
        """Take in one ``GenerateContentResponse`` and return its new text deltas."""
        if not chunk:
            return []
        if "error" in chunk:
            raise error_for_stream_error(chunk, hints=self._hints, model=model)
        metadata = chunk.get("usageMetadata")
        if isinstance(metadata, dict):
            self.usage = _usage(metadata)
        candidates = chunk.get("candidates")
        feedback = chunk.get("promptFeedback")
        block_reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if block_reason and not candidates:
            block_reason = known_value(block_reason, BLOCK_REASONS, UNKNOWN_REASON)
            raise PermanentProviderError(
                f"Gemini refused this prompt (reason: {block_reason}). "
                "Rephrase the message and try again.",
                status_code=200,
                error_type="blocked_prompt",
            )
        if not isinstance(candidates, list) or not candidates:
            return []
        candidate = candidates[0] if isinstance(candidates[0], dict) else {}
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        deltas = [
            part["text"]
            for part in (parts if isinstance(parts, list) else [])
            if isinstance(part, dict)
            and not part.get("thought")
            and isinstance(part.get("text"), str)
            and part["text"]
        ]
        if candidate.get("finishReason"):
            self.finish_reason = known_value(
                candidate["finishReason"], FINISH_REASONS, UNKNOWN_REASON
            )
        for delta in deltas:
            self._text.add(delta)
        return deltas

    def text(self) -> str:
        """The reply's text so far."""
        return self._text.text()


def _body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [{"role": turn.role, "parts": [{"text": turn.text}]} for turn in request.turns]
    }
    if request.system_instruction:
        body["systemInstruction"] = {"parts": [{"text": request.system_instruction}]}
    config = {
        key: value
        for key, value in (
            ("temperature", request.temperature),
            ("maxOutputTokens", request.max_output_tokens),
        )
        if value is not None
    }
    if config:
        body["generationConfig"] = config
    return body


def _usage(metadata: dict[str, Any]) -> Usage:
    """Gemini's ``usageMetadata``: ``promptTokenCount`` includes the cached input and
    ``candidatesTokenCount`` excludes the thinking (``thoughtsTokenCount``)."""
    return Usage(
        input_tokens=token_count(metadata.get("promptTokenCount")),
        cached_input_tokens=token_count(metadata.get("cachedContentTokenCount")),
        output_tokens=token_count(metadata.get("candidatesTokenCount")),
        reasoning_tokens=token_count(metadata.get("thoughtsTokenCount")),
    )


def _bare_model(model: str) -> str:
    return model.removeprefix("models/")
