"""The AI pipeline's own overhead per message over a zero-latency provider (goal: ≤ 10 ms median).

A 500-message session on a real SQLite file; each measured message is stored, enqueued, run by
the worker (context building, job rows, events to a real log file, reply stored) and waited for.
The provider's own time is subtracted, so what remains is Nexus's cost.

    python benchmarks/bench_pipeline.py [--messages 100] [--history 500]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

from nexus_core.ai.jobs import ResponseWorker
from nexus_core.ai.protocol import GenerationRequest, ProviderResult, Usage
from nexus_core.app_context import AppContext
from nexus_core.db.models import Message
from nexus_core.ops.events import ApiEventLogger
from nexus_core.settings import Settings


class InstantProvider:
    """A provider that answers at once, timing itself so its cost can be subtracted."""

    name = "simulated"
    label = "Instant benchmark provider"
    default_model = "instant"

    def __init__(self) -> None:
        self.spent_ms: list[float] = []

    def configured(self) -> bool:
        return True

    def stream(self, request: GenerationRequest) -> Generator[str, None, ProviderResult]:
        started = time.perf_counter()
        yield "ok"
        spent = (time.perf_counter() - started) * 1000
        self.spent_ms.append(spent)
        return ProviderResult("ok", "STOP", Usage(10, 1), spent, spent, "instant", 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--history", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = AppContext(Settings(data_dir=Path(tmp), env="test"))
        ctx.init()
        user = ctx.users.get("admin")
        session = ctx.chat.create_session(user, "Nexus Assistant")
        with ctx.db.session() as db_session:
            for i in range(args.history):
                role = "user" if i % 2 == 0 else "assistant"
                db_session.add(
                    Message(session_id=session.id, role=role, content=f"history message {i} " * 8)
                )
        provider = InstantProvider()
        events = ApiEventLogger(Path(tmp) / "logs" / "api_events.log")
        worker = ResponseWorker(ctx.db, provider, events, max_workers=1)
        overhead: list[float] = []
        for i in range(args.messages):
            started = time.perf_counter()
            message = ctx.chat.add_user_message(session.public_id, user, f"question {i}")
            job = worker.wait(worker.enqueue(message.id, user))
            total = (time.perf_counter() - started) * 1000
            assert job.status == "succeeded"
            overhead.append(total - provider.spent_ms[-1])
        worker.shutdown()
        events.close()
        ctx.close()
    overhead.sort()
    p95 = overhead[int(0.95 * (len(overhead) - 1))]
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(f"session of {args.history}+ messages, {args.messages} measured messages, SQLite file")
    print("| median ms | p95 ms | max ms |")
    print("|---:|---:|---:|")
    print(f"| {statistics.median(overhead):.2f} | {p95:.2f} | {overhead[-1]:.2f} |")


if __name__ == "__main__":
    main()
