"""How many events per second the JSON-lines event log appends, from one thread and from four.

Run: ``python benchmarks/bench_event_log.py [--events N]``. Writes into a temporary directory and
prints a markdown table. Each event is a typical ``request_success`` record (about 250 bytes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nexus_core.ops.events import ApiEventLogger, EventName, log_files

EVENTS_PER_RUN = 40_000
THREAD_COUNTS = (1, 4)


def append_events(logger: ApiEventLogger, count: int) -> None:
    """Emit ``count`` request_success events, as the AI response job would."""
    session = str(uuid.uuid4())
    for attempt in range(count):
        logger.emit(
            EventName.REQUEST_SUCCESS,
            chat_session_id=session,
            user_id=42,
            request_id=str(uuid.uuid4()),
            attempt=attempt % 3 + 1,
            latency_ms=812,
            status_code=200,
            tokens_in=120,
            tokens_out=480,
        )


def measure(threads: int, total_events: int) -> tuple[float, int]:
    """Seconds taken and bytes written for ``total_events`` spread over ``threads`` threads."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs" / "api_events.log"
        with ApiEventLogger(path) as logger:
            logger.emit("warm_up")
            per_thread = total_events // threads
            workers = [
                threading.Thread(target=append_events, args=(logger, per_thread))
                for _ in range(threads)
            ]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - started
        written = sum(p.stat().st_size for p in log_files(path))
        return elapsed, written


def main() -> None:
    """Measure each thread count and print the results as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS_PER_RUN, help="events per run")
    args = parser.parse_args()

    print("| threads | events | seconds | events/s | µs/event | MB/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threads in THREAD_COUNTS:
        total = args.events // threads * threads
        elapsed, written = measure(threads, total)
        print(
            f"| {threads} | {total:,} | {elapsed:.2f} | {total / elapsed:,.0f} | "
            f"{elapsed / total * 1e6:.1f} | {written / elapsed / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
