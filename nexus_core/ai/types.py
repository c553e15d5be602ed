"""The provider contract: request and result types, the `Provider` protocol, HTTP failure mapping.

A provider's ``stream(request)`` is a generator: it yields text deltas as they arrive and *returns*
the `ProviderResult` (``StopIteration.value``); `run_stream` drives it. Providers raise only the
two provider errors, and the HTTP ones share one translation of failures::

    408, 429, 500, 502, 503, 504, timeouts, connection errors  ->  TransientProviderError
    any other 4xx/5xx, blocked prompts, blocked answers          ->  PermanentProviderError

``error_type`` is a short snake_case label for dashboards (``http_503``, ``timeout``,
``connection_error``, ``blocked_prompt``, ...). ``retry_after`` is the larger of the server's
``Retry-After`` header and Gemini's ``RetryInfo.retryDelay``, in seconds. Messages tell the user
what to do and never contain a key: server messages are scrubbed of the secrets we hold.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from nexus_core.errors import PermanentProviderError, ProviderError, TransientProviderError

RETRYABLE_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS_CODES = frozenset({401, 403})
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
INVALID_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"})
MAX_SERVER_MESSAGE_CHARS = 300
REDACTED = "[redacted]"


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


@dataclass(frozen=True)
class Usage:
    """Token counts reported (or, offline, estimated) for one reply."""

    tokens_in: int = 0
    tokens_out: int = 0
    thoughts_tokens: int = 0


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
    """Drive ``provider.stream``, handing each delta to ``on_delta``, and return the result."""
    stream = provider.stream(request)
    try:
        while True:
            try:
                delta = next(stream)
            except StopIteration as stop:
                return stop.value
            if on_delta is not None:
                on_delta(delta)
    finally:
        stream.close()


# --- HTTP failure mapping, shared by the Gemini and OpenAI-compatible clients -----------------


@dataclass(frozen=True)
class ProviderHints:
    """How error messages name a provider and the settings that fix it."""

    who: str
    key_setting: str
    base_setting: str
    model_setting: str
    secrets: tuple[str, ...] = field(default=(), repr=False)


def error_for_status(
    status: int,
    body: bytes | Any,
    headers: Mapping[str, str] | None,
    *,
    hints: ProviderHints,
    model: str,
) -> ProviderError:
    """The provider error for a non-success HTTP status (``body`` raw bytes or parsed JSON)."""
    error = _error_object(_parse_json(body) if isinstance(body, bytes) else body)
    detail = _server_message(error, hints.secrets)
    said = f" {hints.who} said: {detail}" if detail else ""
    if status in RETRYABLE_STATUS_CODES:
        retry_after = retry_after_seconds(headers or {}, error)
        return TransientProviderError(
            _transient_message(status, hints.who, retry_after),
            status_code=status,
            error_type=f"http_{status}",
            retry_after=retry_after,
        )
    if status in AUTH_STATUS_CODES or _is_invalid_key(error):
        message = (
            f"{hints.who} rejected the API key (HTTP {status}); check {hints.key_setting}.{said}"
        )
    elif status == 404:
        message = (
            f"{hints.who} model {model!r} not found (HTTP 404); check {hints.model_setting} "
            f"or the persona's model, and {hints.base_setting}.{said}"
        )
    elif status == 400:
        message = f"{hints.who} rejected the request (HTTP 400).{said or ' No reason given.'}"
    else:
        message = f"{hints.who} refused the request (HTTP {status}).{said}"
    return PermanentProviderError(message, status_code=status, error_type=f"http_{status}")


def error_for_stream_error(
    payload: Mapping[str, Any], *, hints: ProviderHints, model: str
) -> ProviderError:
    """The provider error for an ``{"error": ...}`` object that arrived inside a 200 stream."""
    error = _error_object(payload)
    code = error.get("code") if error else None
    if isinstance(code, int) and 400 <= code <= 599:
        return error_for_status(code, payload, None, hints=hints, model=model)
    detail = _server_message(error, hints.secrets)
    return TransientProviderError(
        f"{hints.who} failed while streaming the reply; try again."
        + (f" {hints.who} said: {detail}" if detail else ""),
        error_type="stream_error",
    )


def error_for_request_failure(
    exc: httpx.RequestError, *, hints: ProviderHints, base_url: str
) -> ProviderError:
    """The provider error for an httpx transport failure (timeout, refused connection, bad URL)."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientProviderError(
            f"{hints.who} did not answer in time ({type(exc).__name__}); try again.",
            error_type="timeout",
        )
    if isinstance(exc, httpx.UnsupportedProtocol):
        return PermanentProviderError(
            f"{hints.base_setting}={base_url!r} is not an http:// or https:// URL; "
            "fix the setting.",
            error_type="invalid_url",
        )
    if isinstance(exc, httpx.DecodingError):
        return TransientProviderError(
            f"{hints.who} sent a response that could not be decoded; try again.",
            error_type="invalid_response",
        )
    reason = _scrub(str(exc), hints.secrets) or type(exc).__name__
    return TransientProviderError(
        f"Could not reach {hints.who} at {base_url} ({reason}); check the network and "
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


def _server_message(error: Mapping[str, Any] | None, secrets: Iterable[str]) -> str:
    message = error.get("message") if error else None
    if not isinstance(message, str):
        return ""
    message = _scrub(" ".join(message.split()), secrets)
    if len(message) > MAX_SERVER_MESSAGE_CHARS:
        message = message[: MAX_SERVER_MESSAGE_CHARS - 1] + "…"
    return message


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    # Belt and braces: a key that slipped into a URL query string never reaches a message.
    return re.sub(r"(?i)([?&]key=)[^&\s]+", rf"\1{REDACTED}", text)


def _is_invalid_key(error: Mapping[str, Any] | None) -> bool:
    details = error.get("details") if error else None
    if not isinstance(details, list):
        return False
    return any(isinstance(d, dict) and d.get("reason") in INVALID_KEY_REASONS for d in details)


def _transient_message(status: int, who: str, retry_after: float | None) -> str:
    when = f"in {retry_after:g} s" if retry_after is not None else "in a moment"
    if status == 429:
        return f"{who} is rate-limiting requests (HTTP 429); try again {when}."
    if status == 503:
        return f"{who} is overloaded or unavailable (HTTP 503); try again {when}."
    if status == 408:
        return f"{who} timed out handling the request (HTTP 408); try again {when}."
    return f"{who} had a server error (HTTP {status}); try again {when}."
