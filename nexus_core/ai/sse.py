"""An incremental Server-Sent Events parser, after the WHATWG "event stream interpretation".

Bytes arrive in whatever pieces the network hands us. Lines end with ``\\n``, ``\\r\\n`` or
``\\r``, all ASCII, which never occur inside a multi-byte UTF-8 character, so the parser splits
*bytes* into lines and decodes each finished line on its own (invalid UTF-8 becomes U+FFFD). Only
each new chunk is searched for line ends; the unfinished line is kept as a list of pieces and
joined once, when it ends — so the work is linear in the bytes fed, however a long line is cut
up (rescanning the unfinished line on every chunk made one huge line quadratic). A ``\\r`` at the
very end of a chunk remembers that a ``\\n`` starting the next one belongs to it.

A line, and the data lines of one event together, may hold at most ``max_event_bytes`` bytes;
past that the parser raises `EventTooLarge` at once instead of buffering on. A blank line
dispatches the event. `SSEParser.close` also dispatches a last event that the server did not end
with a blank line (the spec would drop it; providers that end the stream by closing the
connection rely on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_EVENT_TYPE = "message"
DEFAULT_MAX_EVENT_BYTES = 1_048_576
BYTE_ORDER_MARK = "\ufeff"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventTooLarge(ValueError):
    """A line, or the data of one event, grew past the parser's byte limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an event stream line or event exceeded {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its type, data (lines joined by ``\\n``), last event id and retry."""

    event: str = DEFAULT_EVENT_TYPE
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Turns a byte stream, fed in arbitrary pieces, into `SSEEvent` objects.

    ``max_event_bytes`` bounds a line and the data of an event (None: unbounded).
    """

    def __init__(self, max_event_bytes: int | None = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._pieces: list[bytes] = []  # the unfinished line
        self._pending_bytes = 0
        self._first_line = True
        self._skip_lf = False
        self._closed = False
        self._event_type = ""
        self._data: list[str] = []
        self._data_bytes = 0
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse the next piece of the stream and return the events it completed."""
        if self._closed:
            raise ValueError("SSEParser.feed() called after close()")
        events: list[SSEEvent] = []
        if self._skip_lf and chunk:
            # The previous chunk ended in "\r"; a "\n" here belongs to that line ending.
            self._skip_lf = False
            chunk = chunk.removeprefix(b"\n")
        if not chunk:
            return events
        start = 0
        for match in _LINE_END.finditer(chunk):
            self._end_line(chunk[start : match.start()], events)
            start = match.end()
        self._skip_lf = chunk.endswith(b"\r")
        if start < len(chunk):
            self._pieces.append(chunk[start:])
            self._pending_bytes += len(chunk) - start
            self._check_size(self._pending_bytes)
        return events

    def close(self) -> list[SSEEvent]:
        """End the stream, returning any event left without a trailing blank line."""
        if self._closed:
            return []
        self._closed = True
        events: list[SSEEvent] = []
        if self._pieces:
            self._end_line(b"", events)
        self._dispatch(events)
        return events

    def _check_size(self, size: int) -> None:
        if self.max_event_bytes is not None and size > self.max_event_bytes:
            raise EventTooLarge(self.max_event_bytes)

    def _end_line(self, tail: bytes, events: list[SSEEvent]) -> None:
        raw = tail
        if self._pieces:
            self._pieces.append(tail)
            raw = b"".join(self._pieces)
            self._pieces = []
            self._pending_bytes = 0
        self._check_size(len(raw))
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(BYTE_ORDER_MARK)
        self._process_line(line, len(raw), events)

    def _process_line(self, line: str, size: int, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment, e.g. a keep-alive
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data_bytes += size
            self._check_size(self._data_bytes)
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(
                SSEEvent(
                    event=self._event_type or DEFAULT_EVENT_TYPE,
                    data="\n".join(self._data),
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._data = []
        self._data_bytes = 0
        self._event_type = ""


def iter_events(
    chunks: Iterable[bytes], max_event_bytes: int | None = DEFAULT_MAX_EVENT_BYTES
) -> Iterator[SSEEvent]:
    """Parse an iterable of byte chunks (e.g. ``response.iter_bytes()``) into events, lazily."""
    parser = SSEParser(max_event_bytes)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
