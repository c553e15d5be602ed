"""Fake AI servers on real sockets, and the scripted HTTP server they share.

A `ScriptedServer` listens on ``127.0.0.1`` (port 0) in a background thread, records every
request, and answers each one with the next scripted `WireReply` (or a default). Replies can wait
before answering (to provoke client timeouts) and are written in small, awkward byte pieces with
``TCP_NODELAY`` and a pause between writes, so the client really sees frames split mid-line and
mid-character. A reply may also *trickle* (a long pause between pieces, so no single read ever
times out) and end in a lazily made ``tail`` that never needs to exist in memory at once: an
endless keep-alive (`keep_alive_forever`) or hundreds of megabytes without a newline (`flood`).
``bytes_sent`` counts what was written, so a test can tell how much the client really read.
`stop` interrupts pending waits and trickles and joins every handler thread, so tests leave no
sockets or threads behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

DEFAULT_CHUNK_SIZE = 7
DEFAULT_CHUNK_PAUSE_SECONDS = 0.001
FLOOD_PIECE_BYTES = 65_536
KEEP_ALIVE = b": keep-alive\n"
SERVE_POLL_SECONDS = 0.01
DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes


@dataclass
class WireReply:
    """Exactly what to send back: status, headers and body pieces, with timing."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[bytes] = field(default_factory=list)
    delay: float = 0.0
    chunk_size: int | None = DEFAULT_CHUNK_SIZE
    streamed: bool = False
    pause: float | None = None  # between written pieces; None: the server's chunk pause
    tail: Iterable[bytes] | None = None  # written after ``pieces``, as made (no Content-Length)
    raw: bool = False  # write ``pieces`` and ``tail`` as they are, with no status line or headers


class ScriptedServer:
    """A threaded HTTP server answering from a queue of scripts; subclasses render the scripts."""

    def __init__(self, chunk_pause: float = DEFAULT_CHUNK_PAUSE_SECONDS) -> None:
        self.chunk_pause = chunk_pause
        self.requests: list[RecordedRequest] = []
        self.bytes_sent = 0
        self.answered = 0  # requests whose reply is over (written, cut short, or abandoned)
        self._scripts: deque[Any] = deque()
        self._lock = threading.Lock()
        self._answered = threading.Condition()
        self._stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_SECONDS},
            name=f"{type(self).__name__}",
            daemon=True,
        )

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Begin serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut short any scripted delay and join every handler thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _push(self, script: Any) -> None:
        with self._lock:
            self._scripts.append(script)

    def _record_and_pop(self, request: RecordedRequest) -> Any | None:
        with self._lock:
            self.requests.append(request)
            return self._scripts.popleft() if self._scripts else None

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (fails the test if there was none)."""
        with self._lock:
            assert self.requests, "the fake server received no request"
            return self.requests[-1]

    def reply_for(self, request: RecordedRequest, script: Any | None) -> WireReply:
        """Build the reply to ``request`` from ``script`` (None: the queue was empty)."""
        raise NotImplementedError

    def wait_until_answered(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` replies are over (so ``bytes_sent`` is final for them)."""
        with self._answered:
            if not self._answered.wait_for(lambda: self.answered >= count, timeout):
                raise TimeoutError(f"{self.answered} of {count} replies are over")

    def _reply_over(self) -> None:
        with self._answered:
            self.answered += 1
            self._answered.notify_all()

    def _send(self, handler: BaseHTTPRequestHandler, reply: WireReply) -> None:
        if reply.delay and self._stopping.wait(reply.delay):
            return
        if not reply.raw:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if not reply.streamed and reply.tail is None:
                handler.send_header("Content-Length", str(sum(map(len, reply.pieces))))
            handler.send_header("Connection", "close")
            handler.end_headers()
        pause = reply.pause
        if pause is None:
            pause = self.chunk_pause if reply.streamed else 0.0
        pieces = itertools.chain(_split(reply.pieces, reply.chunk_size), reply.tail or ())
        for piece in pieces:
            if self._stopping.is_set():
                return
            handler.wfile.write(piece)
            handler.wfile.flush()
            with self._lock:
                self.bytes_sent += len(piece)
            if pause and self._stopping.wait(pause):
                return


def json_bytes(payload: Any) -> bytes:
    """Compact JSON with raw (not escaped) non-ASCII characters, as real servers send it."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sse_frame(data: str | bytes, line_ending: str = "\n") -> bytes:
    """One ``data:`` event, ended by a blank line."""
    raw = data if isinstance(data, bytes) else data.encode()
    end = line_ending.encode()
    return b"data: " + raw + end + end


def flood(prefix: bytes, size: int) -> Iterator[bytes]:
    """``prefix`` and then ``size`` bytes of ``x`` (no newline), made piece by piece."""
    yield prefix
    for start in range(0, size, FLOOD_PIECE_BYTES):
        yield b"x" * min(FLOOD_PIECE_BYTES, size - start)


def headers_forever() -> Iterator[bytes]:
    """A status line and then header lines without end: a response that never starts."""
    return itertools.chain([b"HTTP/1.1 200 OK\r\n"], itertools.repeat(b"X-Still-Thinking: 1\r\n"))


def keep_alive_forever() -> Iterator[bytes]:
    """SSE comment lines without end, as a stalled upstream that keeps the connection open."""
    return itertools.repeat(KEEP_ALIVE)


def _split(pieces: list[bytes], size: int | None) -> list[bytes]:
    if not size:
        return pieces
    blob = b"".join(pieces)
    return [blob[i : i + size] for i in range(0, len(blob), size)]


class _QuietServer(ThreadingHTTPServer):
    # Non-daemon handler threads, so server_close() joins them and nothing outlives the test.
    daemon_threads = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], DISCONNECTS):
            super().handle_error(request, client_address)


def _handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def _answer(self) -> None:
            self.close_connection = True
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                raw_body=raw,
            )
            script = server._record_and_pop(request)
            # A client that gave up (e.g. it timed out) needs no answer.
            try:
                with contextlib.suppress(DISCONNECTS):
                    server._send(self, server.reply_for(request, script))
            finally:
                server._reply_over()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
