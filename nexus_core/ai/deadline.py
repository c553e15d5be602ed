"""`AttemptDeadline`: one time limit for a whole HTTP attempt, however slowly the server sends.

httpx's timeouts bound each phase — connect, write, and *every* read — so a server that sends a
byte just before each read timeout keeps a request alive for ever. An attempt deadline bounds the
whole attempt instead, three ways:

- each phase's httpx timeout is at most the time left when the request starts;
- the reader asks `AttemptDeadline.expired` between chunks;
- a timer shuts the connection's socket down when the time is up, which wakes a read that is
  blocked waiting for the next trickled byte (the read then fails and the attempt reports a
  timeout).

The socket is learnt from httpx's ``trace`` extension when the attempt opens a connection, and
from the response's ``network_stream`` once headers arrive (a connection reused from the pool).
`disarm` must run before the response goes back to the pool, so a late timer never cuts a
connection another request is using; `watching` does that around the body.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import httpx

# Even a nearly spent deadline gives httpx a positive timeout (0 would mean "no wait at all").
MIN_PHASE_TIMEOUT_SECONDS = 0.05
_STREAM_EVENTS = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class AttemptDeadline:
    """The time limit of one HTTP attempt; start it, pass `extensions` and `timeout` to httpx."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends_at = clock() + seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._cut = False
        self._disarmed = False
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def start(self) -> Self:
        """Start the timer that cuts the connection at the deadline."""
        self._timer.start()
        return self

    def remaining(self) -> float:
        """Seconds left (0 when the time is up)."""
        return max(0.0, self._ends_at - self._clock())

    @property
    def expired(self) -> bool:
        """Whether the time is up."""
        return self._cut or self._clock() >= self._ends_at

    def timeout(self) -> httpx.Timeout:
        """httpx's per-phase timeouts, none longer than the time left."""
        return httpx.Timeout(max(self.remaining(), MIN_PHASE_TIMEOUT_SECONDS))

    @property
    def extensions(self) -> dict[str, Any]:
        """The httpx request extensions that tell this deadline about new connections."""
        return {"trace": self._trace}

    @contextlib.contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        """Watch ``response``'s connection while the body is read; disarm before it is pooled."""
        self._watch(response.extensions.get("network_stream"))
        try:
            yield
        finally:
            self.disarm()

    def disarm(self) -> None:
        """Stop the timer; a connection learnt later is left alone."""
        with self._lock:
            self._disarmed = True
            self._socket = None
        self._timer.cancel()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event in _STREAM_EVENTS:
            self._watch(info.get("return_value"))

    def _watch(self, stream: Any) -> None:
        sock = _socket_of(stream)
        if sock is None:
            return
        with self._lock:
            if self._disarmed:
                return
            self._socket = sock
            cut_now = self._cut
        if cut_now:
            _shut_down(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._disarmed:
                return
            self._cut = True
            sock = self._socket
        if sock is not None:
            _shut_down(sock)


def _socket_of(stream: Any) -> socket.socket | None:
    get_extra_info = getattr(stream, "get_extra_info", None)
    if get_extra_info is None:
        return None
    sock = get_extra_info("socket")
    return sock if isinstance(sock, socket.socket) else None


def _shut_down(sock: socket.socket) -> None:
    # shutdown (not close) wakes a recv blocked in another thread; the owner still closes it.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
