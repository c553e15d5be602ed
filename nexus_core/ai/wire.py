"""Reading a provider's HTTP answer within bounds: time, bytes, stream lines and reply length.

Nothing a provider sends is trusted to be small or quick. Each attempt runs under one
`AttemptDeadline` (the whole attempt, not each read) and reads at most ``max_response_bytes``
of the stream from the wire, counted as the bytes arrive, so an over-long answer is cut off, not
read to the end and then refused. A stream line or event may hold at most
``max_event_bytes`` (the SSE parser enforces it), the reply's text at most ``max_reply_chars``,
and an error body is read only up to `MAX_ERROR_BODY_BYTES` (only its codes are used).

Running out of time is Transient ``timeout``; an over-long reply is Permanent (the same question
would get the same answer): ``reply_too_long`` for the text, ``response_too_large`` for the wire.
Neither keeps any of the reply.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import httpx

from nexus_core.ai.deadline import AttemptDeadline
from nexus_core.ai.protocol import (
    GenerationRequest,
    ProviderHints,
    attempt_timed_out,
    error_for_request_failure,
)
from nexus_core.ai.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge
from nexus_core.errors import PermanentProviderError
from nexus_core.settings import Settings

# Asked of every provider: a compressed chunk could expand a thousandfold in memory before any
# byte count sees it, so Nexus reads only uncompressed answers (and refuses any other).
IDENTITY_ENCODING: Final = {"accept-encoding": "identity"}
DEFAULT_MAX_REPLY_CHARS = 100_000
DEFAULT_MAX_RESPONSE_BYTES = 8_388_608
MAX_ERROR_BODY_BYTES = 65_536


@dataclass(frozen=True)
class ReplyLimits:
    """How much one attempt may read: reply text, one stream line or event, and bytes in all."""

    max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplyLimits:
        """The limits set by ``NEXUS_MAX_REPLY_CHARS``, ``NEXUS_MAX_SSE_EVENT_BYTES`` and
        ``NEXUS_MAX_RESPONSE_BYTES``."""
        return cls(
            max_reply_chars=settings.max_reply_chars,
            max_event_bytes=settings.max_sse_event_bytes,
            max_response_bytes=settings.max_response_bytes,
        )


def reply_too_long(hints: ProviderHints, max_chars: int) -> PermanentProviderError:
    """The error for a reply whose text passed ``max_chars``."""
    return PermanentProviderError(
        f"The reply was too long: {hints.who} wrote more than {max_chars:,} characters, so "
        "Nexus stopped it and kept none of it. Ask for a shorter answer.",
        status_code=200,
        error_type="reply_too_long",
    )


def response_too_large(hints: ProviderHints, max_bytes: int) -> PermanentProviderError:
    """The error for a response, stream line or event larger than ``max_bytes``."""
    return PermanentProviderError(
        f"The reply was too long: {hints.who} sent more than {max_bytes:,} bytes at once, so "
        "Nexus stopped reading and kept none of it. Ask for a shorter answer.",
        status_code=200,
        error_type="response_too_large",
    )


class ReplyText:
    """The text of a reply as it arrives, refusing to grow past ``max_chars``."""

    def __init__(self, hints: ProviderHints, max_chars: int) -> None:
        self._hints = hints
        self._max_chars = max_chars
        self._parts: list[str] = []
        self._chars = 0

    def add(self, delta: str) -> None:
        """Append ``delta``, or fail with ``reply_too_long`` if the reply would be too long."""
        self._chars += len(delta)
        if self._chars > self._max_chars:
            self._parts.clear()
            raise reply_too_long(self._hints, self._max_chars)
        self._parts.append(delta)

    def text(self) -> str:
        """All the text so far."""
        return "".join(self._parts)


def attempt_seconds(own_timeout: float, request: GenerationRequest) -> float:
    """The time limit of an attempt: the provider's own, shortened by the request's."""
    if request.timeout_seconds is None:
        return own_timeout
    return max(0.0, min(own_timeout, request.timeout_seconds))


@contextlib.contextmanager
def bounded_attempt(
    seconds: float, hints: ProviderHints, base_url: str
) -> Iterator[AttemptDeadline]:
    """Run one HTTP attempt under a deadline, translating httpx and parser failures once."""
    deadline = AttemptDeadline(seconds).start()
    try:
        yield deadline
    except httpx.RequestError as exc:
        if deadline.expired:  # the deadline cut the connection, or a phase timeout hit it
            raise attempt_timed_out(hints.who, seconds) from exc
        raise error_for_request_failure(exc, hints=hints, base_url=base_url) from exc
    except httpx.InvalidURL:
        # Not a RequestError, and its text quotes the URL (a password in it, say): drop it.
        raise PermanentProviderError(
            f"{hints.base_setting} is not a valid URL; fix the setting.", error_type="invalid_url"
        ) from None
    except EventTooLarge as exc:
        raise response_too_large(hints, exc.limit) from exc
    finally:
        deadline.disarm()


def compressed_answer(hints: ProviderHints) -> PermanentProviderError:
    """The error for a provider that compressed its answer although Nexus asked for none."""
    return PermanentProviderError(
        f"{hints.who} sent a compressed answer although Nexus asks for none; Nexus does not "
        "read compressed answers.",
        error_type="response_encoding",
    )


def wire_bytes(response: httpx.Response, hints: ProviderHints) -> Iterator[bytes]:
    """The body as it came over the wire, never decompressed: a compressed one is refused."""
    if _encoded(response):
        raise compressed_answer(hints)
    return response.iter_raw()


def _encoded(response: httpx.Response) -> bool:
    return response.headers.get("content-encoding", "").strip().lower() not in ("", "identity")


def bounded_chunks(
    chunks: Iterable[bytes], deadline: AttemptDeadline, max_bytes: int, hints: ProviderHints
) -> Iterator[bytes]:
    """``chunks`` as they arrive, stopped past ``max_bytes`` in all or past the deadline."""
    total = 0
    for chunk in chunks:
        if deadline.expired:
            raise attempt_timed_out(hints.who, deadline.seconds)
        total += len(chunk)
        if total > max_bytes:
            raise response_too_large(hints, max_bytes)
        yield chunk
    if deadline.expired:  # a cut connection can look like the end of the body
        raise attempt_timed_out(hints.who, deadline.seconds)


def read_error_body(response: httpx.Response) -> bytes:
    """The start of an error body, at most `MAX_ERROR_BODY_BYTES` (the rest is not read; a
    compressed one is not read at all)."""
    if _encoded(response):
        return b""
    kept: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        kept.append(chunk[: MAX_ERROR_BODY_BYTES - size])
        size += len(kept[-1])
        if size >= MAX_ERROR_BODY_BYTES:
            break
    return b"".join(kept)
