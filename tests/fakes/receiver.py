"""A real HTTP receiver on 127.0.0.1 for the alert webhooks and the OTLP exporter: it records
every POST (path, headers, raw body) and answers with a scripted status (200 by default).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class Received:
    """One POST as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """``with Receiver() as r``: ``r.url`` to POST to, ``r.received`` what came, ``r.fail_next``
    statuses to answer before 200 again, ``r.status`` the answer after them; ``r.open`` cleared
    makes it a slow receiver that holds every POST until it is set again."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_next: list[int] = []
        self.status = 200
        self.open = threading.Event()
        self.open.set()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.open.wait(WAIT_SECONDS)
                with receiver._changed:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.fail_next.pop(0) if receiver.fail_next else receiver.status
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def wait_for(self, condition: Callable[[list[Received]], bool]) -> list[Received]:
        """Wait until ``condition(received)`` holds (or fail after ``WAIT_SECONDS``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self.received), WAIT_SECONDS):
                raise AssertionError(f"receiver never saw what was expected: {self.received}")
            return list(self.received)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.open.set()
        self._server.shutdown()
        self._server.server_close()
