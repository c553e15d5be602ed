"""A provider that answers only when its gate opens, so a test can hold replies in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

from nexus_core.ai.protocol import GenerationRequest, ProviderResult, Usage
from nexus_core.errors import TransientProviderError

GATE_TIMEOUT_SECONDS = 30.0


class GatedProvider:
    """Streams ``text`` once ``open()`` is called; counts the calls that are waiting."""

    label = "Gated test provider"
    default_model = "gated-1"

    def __init__(self, name: str = "gated", text: str = "The gated reply.") -> None:
        self.name = name
        self.text = text
        self.gate = threading.Event()
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    def configured(self) -> bool:
        return True

    def open(self) -> None:
        """Let every waiting and future call answer."""
        self.gate.set()

    def waiting(self) -> int:
        """How many calls have started."""
        with self._lock:
            return len(self.requests)

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        started = time.perf_counter()
        with self._lock:
            self.requests.append(request)
        if not self.gate.wait(GATE_TIMEOUT_SECONDS):
            raise TransientProviderError("The gate never opened.", error_type="gate_closed")
        yield self.text
        spent = (time.perf_counter() - started) * 1000
        return ProviderResult(
            self.text,
            "STOP",
            Usage(input_tokens=3, output_tokens=2),
            spent,
            spent,
            self.default_model,
            200,
        )
