"""The provider contract: request and result types, the `Provider` protocol, HTTP failure mapping.

A provider's ``stream(request)`` is a generator: it yields text deltas as they arrive and *returns*
the `ProviderResult` (``StopIteration.value``); `run_stream` drives it. Providers raise only the
two provider errors, and the HTTP ones share one translation of failures::

    408, 429, 500, 502, 503, 504, timeouts, connection errors  ->  TransientProviderError
    any other 4xx/5xx, blocked prompts, blocked answers          ->  PermanentProviderError

``error_type`` is a short snake_case label for dashboards (``http_503``, ``timeout``,
``connection_error``, ``blocked_prompt``, ...). ``retry_after`` is the larger of the server's
``Retry-After`` header and Gemini's ``RetryInfo.retryDelay``, in seconds.

Error messages are Nexus's own sentences. A provider's error body is read *structurally*, never
quoted: its free-text ``message`` may echo the request — the key lower-cased, base64-encoded,
truncated, split in two — and no string search can find every form, so the whole text is dropped.
What a message may carry from the provider is the HTTP status, the wait hint, and a code found in
a fixed vocabulary (`KNOWN_ERROR_CODES`); everything else in it comes from our settings.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from nexus_core.credentials import safe_url
from nexus_core.errors import PermanentProviderError, ProviderError, TransientProviderError

RETRYABLE_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS_CODES = frozenset({401, 403})
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
INVALID_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"})
# Codes an error body may carry that a message may name: google.rpc.Code names (Gemini's
# ``error.status``), ErrorInfo reasons, and OpenAI-style ``error.type`` / ``error.code`` values.
KNOWN_ERROR_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
        *INVALID_KEY_REASONS,
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "rate_limit_exceeded",
        "insufficient_quota",
        "server_error",
        "overloaded_error",
        "context_length_exceeded",
        "string_above_max_length",
        "model_not_found",
        "invalid_api_key",
    }
)
# What Nexus adds to a refusal when the provider names one of these codes.
TOO_LONG_ADVICE = "The conversation is longer than the model accepts; start a new chat."
CODE_ADVICE = {
    "context_length_exceeded": TOO_LONG_ADVICE,
    "string_above_max_length": TOO_LONG_ADVICE,
    "insufficient_quota": "The account's quota or credit is used up; check it with the provider.",
    "FAILED_PRECONDITION": "The service is not available for this account or region.",
}


@dataclass(frozen=True)
class ChatTurn:
    """One message of the conversation as the model sees it."""

    role: Literal["user", "model"]
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a provider needs for one reply; ``model=None`` means the provider's default."""

    system_instruction: str
    turns: tuple[ChatTurn, ...]
    model: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    timeout_seconds: float | None = None  # this attempt's limit; None: the provider's own


def token_count(value: object) -> int | None:
    """A token count from a provider's JSON: a non-negative integer, else None (never a guess)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@dataclass(frozen=True)
class Usage:
    """Token counts a provider reported for one reply (offline: estimated); None: it did not say.

    ``input_tokens`` is all input, cached included; ``cached_input_tokens`` its cached part;
    ``output_tokens`` the visible output; ``reasoning_tokens`` the thinking, billed as output.
    """

    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class ProviderResult:
    """A finished reply with its timing; ``finish_reason`` is in the provider's own vocabulary."""

    text: str
    finish_reason: str | None
    usage: Usage
    latency_ms: float
    ttft_ms: float | None
    model: str
    status_code: int | None


@runtime_checkable
class Provider(Protocol):
    """An AI backend that streams a reply to a `GenerationRequest`."""

    name: str
    label: str
    default_model: str

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        """Yield text deltas as they arrive and return the finished `ProviderResult`."""
        ...

    def configured(self) -> bool:
        """Whether the settings this provider needs are present (for health checks)."""
        ...


def run_stream(
    provider: Provider,
    request: GenerationRequest,
    on_delta: Callable[[str], None] | None = None,
) -> ProviderResult:
    """Drive ``provider.stream``, handing each delta to ``on_delta``, and return the result.

    Past ``request.timeout_seconds`` the stream is abandoned between deltas with a transient
    ``timeout`` (the HTTP providers also cut a read that blocks past it).
    """
    limit = request.timeout_seconds
    ends_at = None if limit is None else time.monotonic() + limit
    stream = provider.stream(request)
    try:
        while True:
            try:
                delta = next(stream)
            except StopIteration as stop:
                return stop.value
            if ends_at is not None and time.monotonic() > ends_at:
                raise attempt_timed_out(getattr(provider, "label", provider.name), limit)
            if on_delta is not None:
                on_delta(delta)
    finally:
        stream.close()


def attempt_timed_out(who: str, seconds: float | None) -> TransientProviderError:
    """The error for an attempt that ran out of time (``seconds``: its limit)."""
    limit = f" within {seconds:.3g} s" if seconds is not None else " in time"
    return TransientProviderError(
        f"{who} did not finish answering{limit}; try again.", error_type="timeout"
    )


# --- HTTP failure mapping, shared by the Gemini and OpenAI-compatible clients -----------------


@dataclass(frozen=True)
class ProviderHints:
    """How error messages name a provider and the settings that fix it."""

    who: str
    key_setting: str
    base_setting: str
    model_setting: str


def error_for_status(
    status: int,
    body: bytes | Any,
    headers: Mapping[str, str] | None,
    *,
    hints: ProviderHints,
    model: str,
) -> ProviderError:
    """The provider error for a non-success HTTP status (``body`` raw bytes or parsed JSON).

    The body's free text is never used; only its known code (`provider_code`) and wait hint.
    """
    error = _error_object(_parse_json(body) if isinstance(body, bytes) else body)
    if status in RETRYABLE_STATUS_CODES:
        retry_after = retry_after_seconds(headers or {}, error)
        return TransientProviderError(
            _transient_message(status, hints.who, retry_after),
            status_code=status,
            error_type=f"http_{status}",
            retry_after=retry_after,
        )
    code = provider_code(error)
    label = f"HTTP {status}, {code}" if code else f"HTTP {status}"
    if status in AUTH_STATUS_CODES or code in INVALID_KEY_REASONS or code == "invalid_api_key":
        message = f"{hints.who} rejected the API key ({label}); check {hints.key_setting}."
    elif status == 404:
        message = (
            f"{hints.who} model {model!r} not found ({label}); check {hints.model_setting} "
            f"or the persona's model, and {hints.base_setting}."
        )
    elif status == 400:
        message = f"{hints.who} rejected the request ({label})."
    else:
        message = f"{hints.who} refused the request ({label})."
    if code in CODE_ADVICE:
        message = f"{message} {CODE_ADVICE[code]}"
    return PermanentProviderError(message, status_code=status, error_type=f"http_{status}")


def error_for_stream_error(
    payload: Mapping[str, Any], *, hints: ProviderHints, model: str
) -> ProviderError:
    """The provider error for an ``{"error": ...}`` object that arrived inside a 200 stream."""
    error = _error_object(payload)
    code = error.get("code") if error else None
    if isinstance(code, int) and 400 <= code <= 599:
        return error_for_status(code, payload, None, hints=hints, model=model)
    return TransientProviderError(
        f"{hints.who} failed while streaming the reply; try again.", error_type="stream_error"
    )


def error_for_request_failure(
    exc: httpx.RequestError, *, hints: ProviderHints, base_url: str
) -> ProviderError:
    """The provider error for an httpx transport failure (timeout, refused connection, bad URL).

    The exception's text is not used (it can hold a URL); the URL is shown without credentials,
    query or fragment.
    """
    if isinstance(exc, httpx.TimeoutException):
        return TransientProviderError(
            f"{hints.who} did not answer in time ({type(exc).__name__}); try again.",
            error_type="timeout",
        )
    where = safe_url(base_url)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return PermanentProviderError(
            f"{hints.base_setting}={where!r} is not an http:// or https:// URL; fix the setting.",
            error_type="invalid_url",
        )
    if isinstance(exc, httpx.DecodingError):
        return TransientProviderError(
            f"{hints.who} sent a response that could not be decoded; try again.",
            error_type="invalid_response",
        )
    return TransientProviderError(
        f"Could not reach {hints.who} at {where} ({type(exc).__name__}); check the network and "
        f"{hints.base_setting}, then try again.",
        error_type="connection_error",
    )


def invalid_response(hints: ProviderHints, what: str) -> TransientProviderError:
    """The error for a success response we cannot read (garbled JSON, missing fields)."""
    return TransientProviderError(
        f"{hints.who} sent an unreadable response ({what}); try again.",
        status_code=200,
        error_type="invalid_response",
    )


def provider_code(error: Mapping[str, Any] | None) -> str | None:
    """The most specific code in an error object that is in `KNOWN_ERROR_CODES`, else None."""
    if not error:
        return None
    details = error.get("details")
    reasons = [
        item.get("reason")
        for item in (details if isinstance(details, list) else [])
        if isinstance(item, dict)
    ]
    candidates = [*reasons, error.get("code"), error.get("type"), error.get("status")]
    return next((c for c in candidates if isinstance(c, str) and c in KNOWN_ERROR_CODES), None)


def known_value(value: Any, allowed: frozenset[str], fallback: str) -> str:
    """``value`` when it is one of ``allowed``, else ``fallback`` (provider words we repeat)."""
    return value if isinstance(value, str) and value in allowed else fallback


def retry_after_seconds(
    headers: Mapping[str, str], error: Mapping[str, Any] | None
) -> float | None:
    """The server's wait hint in seconds: the larger of ``Retry-After`` and ``RetryInfo``."""
    hints = [
        hint
        for hint in (_header_seconds(headers.get("retry-after")), _retry_info_seconds(error))
        if hint is not None
    ]
    return max(hints) if hints else None


def _header_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _retry_info_seconds(error: Mapping[str, Any] | None) -> float | None:
    details = error.get("details") if error else None
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and item.get("@type") == RETRY_INFO_TYPE:
            delay = item.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    seconds = float(delay[:-1])
                except ValueError:
                    return None
                return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_object(payload: Any) -> dict[str, Any] | None:
    # Gemini's OpenAI endpoint wraps errors in a list; Ollama sends {"error": "text"}.
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else None


def _transient_message(status: int, who: str, retry_after: float | None) -> str:
    when = f"in {retry_after:g} s" if retry_after is not None else "in a moment"
    if status == 429:
        return f"{who} is rate-limiting requests (HTTP 429); try again {when}."
    if status == 503:
        return f"{who} is overloaded or unavailable (HTTP 503); try again {when}."
    if status == 408:
        return f"{who} timed out handling the request (HTTP 408); try again {when}."
    return f"{who} had a server error (HTTP {status}); try again {when}."
