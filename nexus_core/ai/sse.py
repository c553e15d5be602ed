"""An incremental Server-Sent Events parser, after the WHATWG "event stream interpretation".

Bytes arrive in whatever pieces the network hands us, so the parser keeps three kinds of
leftovers between calls to `SSEParser.feed`: undecoded bytes of a multi-byte UTF-8 character
(the incremental decoder), an unfinished line, and a ``\\r`` at the very end of a chunk whose
``\\n`` may be the first byte of the next one. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``;
a blank line dispatches the event. `SSEParser.close` also dispatches a last event that the
server did not end with a blank line (the spec would drop it; providers that end the stream by
closing the connection rely on it).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_EVENT_TYPE = "message"
BYTE_ORDER_MARK = "\ufeff"
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its type, data (lines joined by ``\\n``), last event id and retry."""

    event: str = DEFAULT_EVENT_TYPE
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Turns a byte stream, fed in arbitrary pieces, into `SSEEvent` objects."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = ""
        self._started = False
        self._skip_lf = False
        self._closed = False
        self._event_type = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse the next piece of the stream and return the events it completed."""
        if self._closed:
            raise ValueError("SSEParser.feed() called after close()")
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """End the stream, returning any event left without a trailing blank line."""
        if self._closed:
            return []
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._closed = True
        if self._line:
            self._process_line(self._line, events)
            self._line = ""
        self._dispatch(events)
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if not text:
            return events
        if not self._started:
            self._started = True
            text = text.removeprefix(BYTE_ORDER_MARK)
        if self._skip_lf:
            # The previous chunk ended in "\r"; a "\n" here belongs to that line ending.
            self._skip_lf = False
            text = text.removeprefix("\n")
        buffer = self._line + text
        start = 0
        for match in _LINE_END.finditer(buffer):
            self._process_line(buffer[start : match.start()], events)
            start = match.end()
            if match.group() == "\r" and start == len(buffer):
                self._skip_lf = True
        self._line = buffer[start:]
        return events

    def _process_line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment, e.g. a keep-alive
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
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
        self._event_type = ""


def iter_events(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Parse an iterable of byte chunks (e.g. ``response.iter_bytes()``) into events, lazily."""
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
