"""Loopback HTTP servers that stand in for an attacker's host (nothing may reach it) and for an
allow-listed image host (the control that shows allowed images do load)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEAK_HOST = "127.0.0.1"
ALLOWED_HOST = "127.0.0.2"  # any 127/8 address is loopback on Linux
ALLOWED_IMAGE_PATH = "/allowed.png"
# A 1x1 transparent PNG, so an allowed image really decodes.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class RecordingServer:
    """A loopback HTTP server that answers every GET with a tiny PNG and remembers the path."""

    host: str
    server: ThreadingHTTPServer | None = None
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"{self.host}:{self.server.server_address[1]}"

    def seen(self) -> list[str]:
        with self.lock:
            return list(self.paths)


@contextmanager
def recording_server(host: str) -> Iterator[RecordingServer]:
    """A ``RecordingServer`` on a free port of ``host`` for the duration of the block."""
    recording = RecordingServer(host=host)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with recording.lock:
                recording.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG_1X1)))
            self.end_headers()
            self.wfile.write(PNG_1X1)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    recording.server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=recording.server.serve_forever, name=f"recorder-{host}")
    thread.start()
    try:
        yield recording
    finally:
        recording.server.shutdown()
        recording.server.server_close()
        thread.join()
