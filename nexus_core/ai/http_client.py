"""What the HTTP providers (Gemini, OpenAI-compatible) share: the httpx client they own, one
streamed attempt, decoding a payload, and what a reply without text means.

- **Ownership.** A provider given an ``httpx.Client`` uses it and leaves closing it to the giver;
  one it made itself it closes in ``close()`` (or at the end of a ``with`` block).
- **One attempt.** ``HttpProvider._events`` POSTs the request under the attempt's deadline, turns
  an unsuccessful status into the provider error (`nexus_core.ai.protocol.error_for_status`) and
  hands back the server-sent events, read within the byte and event limits (`nexus_core.ai.wire`).
- **Decoding.** An event's ``data`` must be a JSON object; anything else is Transient
  ``invalid_response`` (a proxy or the connection mangled it; a retry is cheap and usually heals).
- **No text.** A reply that ended before it was complete is Transient ``incomplete_response``, so a
  truncated answer is never stored as complete. A complete reply without text is Permanent when the
  provider withheld it (its blocked finish reasons, each with its dashboard ``error_type``) or when
  the output budget ran out before any text (retrying with the same limit fails the same way), and
  otherwise Transient ``empty_response`` (providers occasionally do this; a retry helps).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx

from nexus_core.ai.protocol import (
    GenerationRequest,
    ProviderHints,
    ProviderResult,
    Usage,
    error_for_status,
    invalid_response,
)
from nexus_core.ai.sse import SSEEvent, iter_events
from nexus_core.ai.wire import (
    ReplyLimits,
    attempt_seconds,
    bounded_attempt,
    bounded_chunks,
    read_error_body,
    wire_bytes,
)
from nexus_core.errors import PermanentProviderError, TransientProviderError

DEFAULT_TIMEOUT_SECONDS = 30.0
EMPTY_RESPONSE = "empty_response"
INCOMPLETE_RESPONSE = "incomplete_response"


class HttpProvider:
    """The part of an HTTP provider that owns its ``httpx.Client`` and runs one streamed attempt."""

    def __init__(
        self,
        hints: ProviderHints,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
        limits: ReplyLimits | None = None,
    ) -> None:
        self._hints = hints
        self.timeout_seconds = timeout_seconds
        self.limits = limits or ReplyLimits()
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _events(
        self,
        request: GenerationRequest,
        *,
        url: str,
        base_url: str,
        model: str,
        headers: dict[str, str],
        body: dict[str, Any],
        params: dict[str, str] | None = None,
    ) -> Iterator[Iterator[SSEEvent]]:
        """POST ``body`` to ``url`` and give the answer's server-sent events, all within the
        attempt's time limit and the reading limits; failures become provider errors."""
        seconds = attempt_seconds(self.timeout_seconds, request)
        with (
            bounded_attempt(seconds, self._hints, base_url) as deadline,
            self._http.stream(
                "POST",
                url,
                params=params,
                headers=headers,
                json=body,
                timeout=deadline.timeout(),
                extensions=deadline.extensions,
            ) as response,
            deadline.watching(response),
        ):
            if not response.is_success:
                raise error_for_status(
                    response.status_code,
                    read_error_body(response),
                    response.headers,
                    hints=self._hints,
                    model=model,
                )
            chunks = bounded_chunks(
                wire_bytes(response, self._hints),
                deadline,
                self.limits.max_response_bytes,
                self._hints,
            )
            yield iter_events(chunks, self.limits.max_event_bytes)


def decode_payload(data: str, hints: ProviderHints) -> dict[str, Any]:
    """An event's ``data`` as a JSON object (``{}`` when blank), else Transient
    ``invalid_response``."""
    if not data.strip():
        return {}
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise invalid_response(hints, "a payload that is not JSON") from exc
    if not isinstance(payload, dict):
        raise invalid_response(hints, "a payload that is not a JSON object")
    return payload


@dataclass(frozen=True)
class FinishReasons:
    """A provider's finish reasons that explain a reply without text."""

    blocked: Mapping[str, str]
    """Reasons meaning "the answer was withheld", each with its dashboard ``error_type``."""
    out_of_tokens: str
    """The reason meaning the output budget ran out."""


@dataclass(frozen=True)
class Attempt:
    """What one attempt gathered: the reply's text, how it ended, and its measurements."""

    model: str
    text: str
    finish_reason: str | None
    complete: bool
    usage: Usage
    latency_ms: float
    ttft_ms: float | None


def finished_reply(
    attempt: Attempt, hints: ProviderHints, reasons: FinishReasons
) -> ProviderResult:
    """The attempt's reply, or the provider error that explains why there is none."""
    if not attempt.complete:
        raise TransientProviderError(
            f"{hints.who}'s reply ended before it was complete; try again.",
            status_code=200,
            error_type=INCOMPLETE_RESPONSE,
        )
    if not attempt.text:
        raise _no_text(attempt.finish_reason, hints, reasons)
    return ProviderResult(
        text=attempt.text,
        finish_reason=attempt.finish_reason,
        usage=attempt.usage,
        latency_ms=attempt.latency_ms,
        ttft_ms=attempt.ttft_ms,
        model=attempt.model,
        status_code=200,
    )


def _no_text(
    reason: str | None, hints: ProviderHints, reasons: FinishReasons
) -> PermanentProviderError | TransientProviderError:
    who = hints.who
    if reason in reasons.blocked:
        return PermanentProviderError(
            f"{who} withheld its answer (reason: {reason}). Rephrase the message and try again.",
            status_code=200,
            error_type=reasons.blocked[reason],
        )
    if reason == reasons.out_of_tokens:
        return PermanentProviderError(
            f"{who} used its whole output budget before writing any answer ({reason}); "
            "raise the output token limit or ask a shorter question.",
            status_code=200,
            error_type=EMPTY_RESPONSE,
        )
    said = f" (finish reason: {reason})" if reason else ""
    return TransientProviderError(
        f"{who} returned an empty answer{said}; try again.",
        status_code=200,
        error_type=EMPTY_RESPONSE,
    )


def ms_since(started: float) -> float:
    """Milliseconds from ``started`` (a ``time.perf_counter()`` reading) to now."""
    return (time.perf_counter() - started) * 1000.0
