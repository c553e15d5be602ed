"""Window metrics over a large event log: compacted store vs the naive re-parse of every line.

Run: ``python benchmarks/bench_metrics.py [--events N] [--small-events N] [--repeats N]``.
Writes realistic events (jobs with requests, retries, failures, personas and models) at one rate
(the large log spans 30 days) into a temporary directory, rotated at the default 50 MB as
``ApiEventLogger`` does, then measures in separate processes (so each peak RSS is its own):

- cold: a new store with an empty cache (compacts every rotated file) and the first metrics;
- restart: a new process over the existing cache (reads the live file, compacts nothing);
- warm: the dashboard's refresh — ``compute_metrics`` again with nothing new, and after appending
  a few hundred events through the real ``ApiEventLogger``; plus ``timeseries``; the 30-day
  window in a process of its own (its scan fills DuckDB's buffer pool, so its RSS is apart);
- naive: a Python ``json.loads`` loop over every line computing p95 latency and success rate.

Prints the machine and a markdown table; timings are medians (and minimums) of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics, parse_window, timeseries
from nexus_core.ops.events import DEFAULT_MAX_BYTES, ApiEventLogger, format_ts, log_files

EVENTS = 2_000_000
SMALL_EVENTS = 10_000
REPEATS = 15
NEW_EVENTS = 300
HISTORY = timedelta(days=30)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DASHBOARD_WINDOWS = "60m,24h"
LONG_WINDOWS = "30d"
MODELS = (("gemini-flash-latest", 0.7), ("gemini-pro-latest", 0.2), ("gpt-4o-mini", 0.1))
PERSONAS = ("Analyst", "Coder", "Writer", "Tutor", "Support")
ERRORS = (("http_503", 503), ("http_429", 429), ("timeout", None), ("http_500", 500))
REQUEST_FAILURE_RATE = 0.02
EVENTS_PER_JOB = 5.1  # enqueued, start, request start + outcome, job outcome, some retries
LOG_NAME = "api_events.log"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _line(ts: datetime, event: str, session: str, user: int, **fields: Any) -> str:
    # ``ts`` is naive UTC here; the same text as ``format_ts`` writes, made faster.
    stamp = ts.isoformat(timespec="milliseconds") + "Z"
    record = {"ts": stamp, "event": event, "chat_session_id": session, "user_id": user}
    record.update(fields)
    return json.dumps(record, separators=(",", ":")) + "\n"


def job_lines(rng: random.Random, at: datetime, sessions: list[str]) -> list[str]:
    """The events of one AI response job, as the worker would log them."""
    session, user, job = rng.choice(sessions), rng.randint(1, 200), _uuid(rng)
    persona = rng.choice(PERSONAS)
    model = rng.choices([m for m, _ in MODELS], [w for _, w in MODELS])[0]
    lines = [_line(at, "job_enqueued", session, user, job_id=job)]
    clock = at + timedelta(milliseconds=rng.randint(2, 30))
    lines.append(_line(clock, "job_start", session, user, job_id=job))
    error = "unknown"
    for attempt in range(1, 5):
        request = _uuid(rng)
        lines.append(
            _line(
                clock,
                "request_start",
                session,
                user,
                request_id=request,
                attempt=attempt,
                model=model,
                provider="gemini",
                persona=persona,
            )
        )
        latency = round(rng.lognormvariate(7.0, 0.45), 3)  # median ~1.1 s, a few above 3 s
        clock += timedelta(milliseconds=latency)
        if rng.random() >= REQUEST_FAILURE_RATE:
            lines.append(
                _line(
                    clock,
                    "request_success",
                    session,
                    user,
                    request_id=request,
                    attempt=attempt,
                    latency_ms=latency,
                    status_code=200,
                    tokens_in=rng.randint(50, 4000),
                    tokens_out=rng.randint(20, 1500),
                    ttft_ms=round(latency * rng.uniform(0.15, 0.4), 3),
                )
            )
            total = round((clock - at).total_seconds() * 1000 + 15, 3)
            lines.append(
                _line(
                    clock,
                    "job_success",
                    session,
                    user,
                    job_id=job,
                    latency_ms=total,
                    attempts=attempt,
                    persona=persona,
                )
            )
            return lines
        error, status = rng.choice(ERRORS)
        lines.append(
            _line(
                clock,
                "request_failure",
                session,
                user,
                request_id=request,
                attempt=attempt,
                latency_ms=latency,
                status_code=status,
                error_type=error,
                retryable=True,
            )
        )
        if attempt < 4:
            delay = 1000 * 2 ** (attempt - 1) + rng.randint(0, 1000)
            lines.append(
                _line(
                    clock,
                    "job_retry",
                    session,
                    user,
                    job_id=job,
                    attempt=attempt,
                    delay_ms=delay,
                    error_type=error,
                )
            )
            clock += timedelta(milliseconds=delay)
    lines.append(
        _line(clock, "job_failure", session, user, job_id=job, attempts=4, error_type=error)
    )
    return lines


def generate(
    directory: Path, events: int, per_day: float, max_bytes: int = DEFAULT_MAX_BYTES
) -> Path:
    """Write about ``events`` events ending at ``NOW`` (``per_day`` a day), rotated like the logger.

    Both sizes share one rate, so a 60-minute window holds as many events either way and only
    the length of the history differs.
    """
    rng = random.Random(20261127)
    directory.mkdir(parents=True, exist_ok=True)
    jobs = max(1, round(events / EVENTS_PER_JOB))
    step = timedelta(days=events / per_day) / jobs
    sessions = [_uuid(rng) for _ in range(max(1, jobs // 8))]
    segments: list[Path] = []
    out, size = None, 0
    start = NOW.replace(tzinfo=None) - jobs * step
    for index in range(jobs):
        for line in job_lines(rng, start + index * step, sessions):
            data = line.encode()
            if out is None or (size > 0 and size + len(data) > max_bytes):
                if out is not None:
                    out.close()
                segments.append(directory / f"segment-{len(segments):04d}")
                out, size = segments[-1].open("wb"), 0
            out.write(data)
            size += len(data)
    assert out is not None
    out.close()
    live = directory / LOG_NAME
    for age, segment in enumerate(reversed(segments)):  # newest is live, then .1, .2, ...
        segment.rename(live if age == 0 else live.with_name(f"{LOG_NAME}.{age}"))
    return live


def _timed(fn: Any, repeats: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), min(samples)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_store(log: Path, cache: Path, repeats: int, windows: list[str]) -> dict[str, Any]:
    """Cold or restart (depending on the cache), then warm refreshes; one process."""
    started = time.perf_counter()
    store = EventStore(log, cache)
    first = compute_metrics(store, "60m", NOW)
    result: dict[str, Any] = {"first_s": time.perf_counter() - started}
    snapshot = store.refresh()
    result["rows"], result["skipped"] = snapshot.rows, snapshot.skipped_lines
    result["p95"] = first["p95_latency_ms"]
    result["success_rate"] = first["success_rate"]
    for label in windows:
        compute_metrics(store, label, NOW)
        result[f"warm_{label}"] = _timed(lambda w=label: compute_metrics(store, w, NOW), repeats)
    if "24h" not in windows:
        store.close()
        result["peak_rss_mb"] = _peak_rss_mb()
        return result
    result["timeseries_24h"] = _timed(lambda: timeseries(store, parse_window("24h"), NOW), repeats)
    clock_at = [NOW - timedelta(seconds=30)]

    def clock() -> datetime:
        clock_at[0] += timedelta(microseconds=50)
        return clock_at[0]

    with ApiEventLogger(log, clock=clock) as logger:

        def append_and_refresh() -> None:
            for n in range(NEW_EVENTS):
                logger.emit("request_start", request_id=f"new-{n}", attempt=1, model="m")
            started = time.perf_counter()
            compute_metrics(store, "60m", NOW)
            result.setdefault("_new", []).append(time.perf_counter() - started)

        for _ in range(repeats):
            append_and_refresh()
    samples = result.pop("_new")
    result["warm_new_lines"] = (statistics.median(samples), min(samples))
    store.close()
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def run_naive(log: Path) -> dict[str, Any]:
    """The original design: parse every line of every file, then compute p95 and success rate."""
    start, end = format_ts(NOW - parse_window("60m")), format_ts(NOW)
    started = time.perf_counter()
    latencies: list[float] = []
    successes = failures = 0
    for file in log_files(log):
        with file.open("rb") as fh:
            for raw in fh:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if not start <= event.get("ts", "") < end:
                    continue
                kind = event.get("event")
                if kind == "job_success":
                    latencies.append(event["latency_ms"])
                elif kind == "request_success":
                    successes += 1
                elif kind == "request_failure":
                    failures += 1
    latencies.sort()
    p95 = None
    if latencies:
        rank = (len(latencies) - 1) * 0.95
        low = int(rank)
        high = min(low + 1, len(latencies) - 1)
        p95 = latencies[low] + (latencies[high] - latencies[low]) * (rank - low)
    elapsed = time.perf_counter() - started
    rate = successes / (successes + failures) if successes + failures else None
    return {"seconds": elapsed, "p95": p95, "success_rate": rate, "peak_rss_mb": _peak_rss_mb()}


def _phase(*args: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", *args]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> str:
    """Cores, CPU model, RAM and Python, for the results table."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if "model name" in line), cpu)
    with open("/proc/meminfo") as fh:
        ram_kb = int(fh.readline().split()[1])
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores, {cpu}, {ram_kb / 1024**2:.0f} GB RAM, "
        f"Python {platform.python_version()}, load average {load:.1f} at start"
    )


def _close(a: float | None, b: float | None) -> bool:
    return a == b if a is None or b is None else abs(a - b) <= 1e-9 * max(1.0, abs(a))


def _ms(pair: tuple[float, float]) -> str:
    return f"{pair[0] * 1000:.1f} ms (min {pair[1] * 1000:.1f})"


def report(events: int, small_events: int, repeats: int) -> None:
    """Generate both logs, run every phase in its own process and print the table."""
    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows: dict[int, dict[str, Any]] = {}
        for count in (small_events, events):
            base = Path(tmp) / f"n{count}"
            started = time.perf_counter()
            log = generate(base / "logs", count, per_day=events / HISTORY.days)
            files = log_files(log)
            size = sum(f.stat().st_size for f in files)
            print(
                f"{count:,} events requested: {len(files)} files, {size / 1e6:.0f} MB, "
                f"generated in {time.perf_counter() - started:.1f} s"
            )
            cache = str(base / "cache")
            cold = _phase("store", str(log), cache, str(repeats), "60m")
            restart = _phase("store", str(log), cache, str(repeats), DASHBOARD_WINDOWS)
            long = _phase("store", str(log), cache, str(max(3, repeats // 3)), LONG_WINDOWS)
            naive = _phase("naive", str(log))
            rows[count] = {"cold": cold, "restart": restart, "long": long, "naive": naive}
            agree = _close(cold["p95"], naive["p95"]) and _close(
                cold["success_rate"], naive["success_rate"]
            )
            print(
                f"  {cold['rows']:,} events stored; {cold['skipped']} skipped lines; "
                f"store and naive agree on p95 and success rate: {agree}"
            )
    print()
    print(f"| measurement | {small_events:,} events | {events:,} events |")
    print("|---|---|---|")
    lines = [
        ("cold: compact all rotated files + first metrics (60m)", "cold", "first_s", None),
        ("restart: new process, cache on disk, first metrics", "restart", "first_s", None),
    ]
    for label, phase, key, _ in lines:
        cells = [f"{rows[n][phase][key]:.2f} s" for n in (small_events, events)]
        print(f"| {label} | {' | '.join(cells)} |")
    for phase, key, label in (
        ("restart", "warm_60m", "warm refresh, nothing new: compute_metrics 60m"),
        ("restart", "warm_new_lines", f"warm refresh after {NEW_EVENTS} new live lines (60m)"),
        ("restart", "warm_24h", "warm refresh, nothing new: compute_metrics 24h"),
        ("restart", "timeseries_24h", "timeseries 24h (15-min buckets)"),
        ("long", "warm_30d", "warm refresh, nothing new: compute_metrics 30d"),
    ):
        cells = [_ms(rows[n][phase][key]) for n in (small_events, events)]
        print(f"| {label} | {' | '.join(cells)} |")
    cells = [f"{rows[n]['naive']['seconds']:.2f} s" for n in (small_events, events)]
    label = "naive: json.loads loop over every line (p95 + success rate, 60m)"
    print(f"| {label} | {' | '.join(cells)} |")
    speedups = [
        rows[n]["naive"]["seconds"] / rows[n]["restart"]["warm_60m"][0]
        for n in (small_events, events)
    ]
    print(f"| naive ÷ warm refresh (60m) | {' | '.join(f'{s:.0f}×' for s in speedups)} |")
    for phase, label in (
        ("cold", "cold"),
        ("restart", "restart + warm 60m/24h"),
        ("long", "restart + warm 30d"),
        ("naive", "naive"),
    ):
        cells = [f"{rows[n][phase]['peak_rss_mb']:.0f} MB" for n in (small_events, events)]
        print(f"| peak RSS, {label} process | {' | '.join(cells)} |")


def main() -> None:
    """Parse the arguments: either one measuring phase (internal) or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--small-events", type=int, default=SMALL_EVENTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, *rest = args.phase
        if kind == "store":
            result = run_store(Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3].split(","))
        else:
            result = run_naive(Path(rest[0]))
        print(json.dumps(result))
        return
    report(args.events, args.small_events, args.repeats)


if __name__ == "__main__":
    main()
