"""Window metrics over a large event log: compacted store vs the naive re-parse of every line.

Run: ``python benchmarks/bench_metrics.py [--events N] [--small-events N] [--large-events N]
[--repeats N] [--fresh-repeats N] [--data-dir DIR]``.
Writes realistic events (jobs with requests, retries, failures, personas and models) at one rate
(the large log spans 30 days) into a temporary directory (or ``--data-dir``, where the logs and the
compacted cache are kept for the next run), rotated at the default 50 MB as ``ApiEventLogger``
does, then measures in separate processes (so each peak RSS is its own):

- cold: a new store with an empty cache (compacts every rotated file) and the first metrics;
- fresh: ``--fresh-repeats`` new processes over the cache on disk, each timing its first
  ``compute_metrics`` 60m (store opened, live file read, metrics; CPU time too, which a loaded
  machine disturbs less), and as many runs of the whole command, ``nexus metrics --window 60m``
  (interpreter start and imports included);
- restart: a new process over the existing cache (reads the live file, compacts nothing);
- warm: the dashboard's refresh — ``compute_metrics`` again with nothing new, and after appending
  a few hundred events through the real ``ApiEventLogger``; plus ``timeseries``; the 30-day
  window in a process of its own (its scan fills DuckDB's buffer pool, so its RSS is apart);
- naive: a Python ``json.loads`` loop over every line computing p95 latency and success rate;
- large (``--large-events``, 20 M by default, 0 skips it): the large log replicated by DuckDB
  (each job ten times, a fraction of the job spacing apart, ids made unique: the same 30 days at
  ten times the rate; a minute instead of an hour of Python), compacted once, then the 30-day
  ``compute_metrics`` in process (the parts' tallies written first if missing, and timed), and its
  tally, SLO and dashboard queries alone.

Prints the machine and a markdown table; timings are medians (and minimums) of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nexus_core.analytics import breakdowns, tallies
from nexus_core.analytics.log_store import CACHE_DIR_NAME, DUCKDB_MEMORY_LIMIT, EventStore
from nexus_core.analytics.metrics import compute_metrics, parse_window, timeseries
from nexus_core.analytics.slo import slo_report
from nexus_core.analytics.windows import window_bounds
from nexus_core.ops.events import DEFAULT_MAX_BYTES, ApiEventLogger, format_ts, log_files

ROOT = Path(__file__).resolve().parents[1]
EVENTS = 2_000_000
SMALL_EVENTS = 10_000
LARGE_EVENTS = 20_000_000
REPEATS = 15
FRESH_REPEATS = 9
LARGE_MEMORY_LIMIT = "1GB"  # the large window again with more memory for DuckDB than the store's
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


# Each line of the large log's source ten times: ts moved back k × (job spacing / factor), ids
# prefixed with k. Lines are read as text (a tab never occurs in JSON Lines) and written as is.
REPLICATE_SQL = """
COPY (
    WITH lines AS (
        SELECT line FROM read_csv($path, columns = {{'line': 'VARCHAR'}}, header = false,
            delim = '\t', quote = '', escape = '', auto_detect = false)
    ), stamped AS (
        SELECT line, strptime(substr(line, 8, 24), '%Y-%m-%dT%H:%M:%S.%gZ') AS t
        FROM lines WHERE line <> ''
    )
    SELECT unnest(list_transform(range({factor}), lambda k:
        '{{"ts":"' || strftime(t - to_milliseconds((k * {step_ms})::BIGINT),
            '%Y-%m-%dT%H:%M:%S.%g') || 'Z'
        || replace(replace(replace(substr(line, 32),
            '"job_id":"', '"job_id":"' || k),
            '"request_id":"', '"request_id":"' || k),
            '"chat_session_id":"', '"chat_session_id":"' || k)))
    FROM stamped
) TO {target} (FORMAT csv, header false, quote '', escape '', delimiter '\t')
"""


def replicate(source: Path, directory: Path, factor: int, spacing: timedelta) -> Path:
    """The log ``source`` with each line ``factor`` times (a ``factor`` times denser log over
    the same days), rotated at the default size like the logger; returns the live file."""
    directory.mkdir(parents=True, exist_ok=True)
    step_ms = spacing / timedelta(milliseconds=1) / factor
    con = duckdb.connect(config={"memory_limit": "2GB"})
    copies = []
    for index, file in enumerate(log_files(source)):
        copies.append(directory / f"copy-{index:04d}")
        target = "'" + str(copies[-1]).replace("'", "''") + "'"
        sql = REPLICATE_SQL.format(factor=factor, step_ms=step_ms, target=target)
        con.execute(sql, {"path": str(file)})
    con.close()
    segments = _split(copies, directory, DEFAULT_MAX_BYTES)
    live = directory / LOG_NAME
    for age, segment in enumerate(reversed(segments)):
        segment.rename(live if age == 0 else live.with_name(f"{LOG_NAME}.{age}"))
    return live


def _split(files: list[Path], directory: Path, max_bytes: int) -> list[Path]:
    """The lines of ``files`` (in order) in files of at most ``max_bytes``, cut at newlines."""
    segments: list[Path] = []
    out, size, pending = None, 0, b""
    for file in files:
        with file.open("rb") as fh:
            while block := fh.read(8 << 20):
                pending += block
                while pending:
                    if out is None:
                        segments.append(directory / f"segment-{len(segments):05d}")
                        out, size = segments[-1].open("wb"), 0
                    if size + len(pending) <= max_bytes:
                        out.write(pending)
                        size, pending = size + len(pending), b""
                        break
                    cut = pending.rfind(b"\n", 0, max_bytes - size) + 1
                    out.write(pending[:cut])
                    pending = pending[cut:]
                    out.close()
                    out = None
        file.unlink()
    if out is not None:
        out.close()
    return segments


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


def run_fresh(log: Path, cache: Path) -> dict[str, Any]:
    """A new process's first metrics over the cache on disk, wall and CPU time."""
    started, cpu = time.perf_counter(), time.process_time()
    with EventStore(log, cache) as store:
        first = compute_metrics(store, "60m", NOW)
    return {
        "first_s": time.perf_counter() - started,
        "first_cpu_s": time.process_time() - cpu,
        "p95": first["p95_latency_ms"],
    }


def run_queries(
    log: Path, cache: Path, repeats: int, window: str, memory_limit: str
) -> dict[str, Any]:
    """Each query of ``compute_metrics`` over ``window`` alone, warm (medians of ``repeats``, wall
    and CPU time), and the dashboard's series and persona breakdown; one that runs out of
    DuckDB's memory is recorded as such."""
    result: dict[str, Any] = {"memory_limit": memory_limit}

    def timed(key: str, fn: Any) -> None:
        try:
            fn()
            cpu = time.process_time()
            result[key] = _timed(fn, repeats)
            result[f"{key} (CPU)"] = [(time.process_time() - cpu) / repeats] * 2
        except duckdb.OutOfMemoryException:
            result[key] = "out of memory"

    with EventStore(log, cache, memory_limit=memory_limit) as store:
        snapshot = store.refresh().of_traffic("user")
        start, end = window_bounds(parse_window(window), NOW)
        result["load_before"] = os.getloadavg()[0]
        began = time.perf_counter()
        tallies.window_tally(snapshot, start, end)  # writes the parts' tallies if none are on disk
        result["first window_tally (parts' tallies written if missing)"] = [
            time.perf_counter() - began
        ] * 2
        timed("compute_metrics", lambda: compute_metrics(snapshot, window, NOW))
        timed("slo_report", lambda: slo_report(snapshot, start, end, NOW))
        timed("window_tally", lambda: tallies.window_tally(snapshot, start, end))
        timed("dashboard timeseries", lambda: timeseries(snapshot, parse_window(window), NOW))
        timed(
            "dashboard by_persona",
            lambda: breakdowns.by_persona(snapshot, parse_window(window), NOW),
        )
        result["load_after"] = os.getloadavg()[0]
        result["rows"] = snapshot.rows
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def command_seconds(data_dir: Path, window: str) -> tuple[float, float]:
    """Wall and CPU time of one ``nexus metrics --window …`` run over ``data_dir``."""
    env = {**os.environ, "NEXUS_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "nexus_core.cli", "metrics", "--window", window, "--json"]
    command += ["--now", format_ts(NOW)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=data_dir)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


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


@contextlib.contextmanager
def _data_root(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def _events_log(
    root: Path, count: int, per_day: float, source: tuple[Path, int] | None = None
) -> Path:
    """The log of ``count`` events under ``root/n<count>``: reused when a run wrote it already
    (its live file cut back to its generated length: the restart phase appends to it), else
    generated (or replicated from ``source``)."""
    base = root / f"n{count}"
    log, done = base / "logs" / LOG_NAME, base / "generated.json"
    if done.is_file():
        os.truncate(log, json.loads(done.read_text())["live_bytes"])
        print(f"{count:,} events: reusing {base}")
        return log
    shutil.rmtree(base, ignore_errors=True)
    started = time.perf_counter()
    if source is None:
        generate(log.parent, count, per_day)
    else:
        path, requested = source  # the source's requested events set its jobs' spacing
        spacing = HISTORY / max(1, round(requested / EVENTS_PER_JOB))
        replicate(path, log.parent, max(1, round(count / requested)), spacing)
    files = log_files(log)
    size = sum(f.stat().st_size for f in files)
    seconds = time.perf_counter() - started
    facts = {"files": len(files), "bytes": size, "live_bytes": log.stat().st_size}
    done.write_text(json.dumps(facts | {"seconds": seconds}))
    print(f"{count:,} events: {len(files)} files, {size / 1e6:.0f} MB, written in {seconds:.1f} s")
    return log


def _median(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), min(samples)


def report(
    events: int,
    small_events: int,
    large_events: int,
    repeats: int,
    fresh_repeats: int,
    data_dir: str | None,
) -> None:
    """Generate the logs, run every phase in its own process and print the tables."""
    print(f"Machine: {machine()}\n")
    with _data_root(data_dir) as root:
        rows: dict[int, dict[str, Any]] = {}
        sizes = (small_events, events)
        logs = {n: _events_log(root, n, per_day=events / HISTORY.days) for n in sizes}
        colds = {}
        for count in sizes:
            cache = logs[count].parent.parent / CACHE_DIR_NAME
            shutil.rmtree(cache, ignore_errors=True)
            colds[count] = _phase("store", str(logs[count]), str(cache), str(repeats), "60m")
        # Fresh processes (before the restart phase appends to the logs), the two sizes
        # interleaved so that a change of load hits both alike.
        fresh: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
        for _ in range(fresh_repeats):
            for count in sizes:
                log = logs[count]
                got = _phase("fresh", str(log), str(log.parent.parent / CACHE_DIR_NAME))
                wall, cpu = command_seconds(log.parent.parent, "60m")
                for key, value in (
                    ("first", got["first_s"]),
                    ("first_cpu", got["first_cpu_s"]),
                    ("command", wall),
                    ("command_cpu", cpu),
                ):
                    fresh[count].setdefault(key, []).append(value)
        for count in sizes:
            log, cache = logs[count], logs[count].parent.parent / CACHE_DIR_NAME
            cold = colds[count]
            restart = _phase("store", str(log), str(cache), str(repeats), DASHBOARD_WINDOWS)
            long = _phase("store", str(log), str(cache), str(max(3, repeats // 3)), LONG_WINDOWS)
            naive = _phase("naive", str(log))
            rows[count] = {"cold": cold, "restart": restart, "long": long, "naive": naive}
            agree = _close(cold["p95"], naive["p95"]) and _close(
                cold["success_rate"], naive["success_rate"]
            )
            print(
                f"  {cold['rows']:,} events stored; {cold['skipped']} skipped lines; "
                f"store and naive agree on p95 and success rate: {agree}"
            )
        large: list[dict[str, Any]] | None = None
        if large_events:
            large = _large(root, (logs[events], events), large_events, max(3, repeats // 3))
    _print_tables(rows, fresh, sizes, fresh_repeats)
    if large is not None:
        _print_large(large, large_events)
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}")


def _large(root: Path, source: tuple[Path, int], count: int, repeats: int) -> list[dict[str, Any]]:
    """The large log (replicated), compacted once (kept in the data dir), then its 30-day
    window's queries, warm, in one process."""
    log = _events_log(root, count, per_day=0, source=source)
    cache = log.parent.parent / CACHE_DIR_NAME
    compacted = log.parent.parent / "compacted.json"
    if not compacted.is_file():
        shutil.rmtree(cache, ignore_errors=True)
        cold = _phase("store", str(log), str(cache), "1", "60m")
        compacted.write_text(json.dumps(cold))
    cold = json.loads(compacted.read_text())
    print(f"{count:,} events: {cold['rows']:,} stored, compacted in {cold['first_s']:.0f} s")
    return [
        _phase("queries", str(log), str(cache), str(repeats), LONG_WINDOWS, limit)
        for limit in (DUCKDB_MEMORY_LIMIT, LARGE_MEMORY_LIMIT)
    ]


def _print_tables(
    rows: dict[int, dict[str, Any]],
    fresh: dict[int, dict[str, list[float]]],
    sizes: tuple[int, int],
    fresh_repeats: int,
) -> None:
    small_events, events = sizes
    print()
    print(f"| measurement | {small_events:,} events | {events:,} events | ratio |")
    print("|---|---|---|---|")
    cells = [f"{rows[n]['cold']['first_s']:.2f} s" for n in sizes]
    print(f"| cold: compact all rotated files + first metrics (60m) | {' | '.join(cells)} | |")
    for key, label in (
        ("first", "fresh process, cache on disk: first `compute_metrics` 60m, wall"),
        ("first_cpu", "… the same, CPU time (all threads)"),
        ("command", "whole `nexus metrics --window 60m` (a new interpreter), wall"),
        ("command_cpu", "… the same, CPU time"),
    ):
        medians = [_median(fresh[n][key]) for n in sizes]
        cells = [f"{m * 1000:.0f} ms (min {low * 1000:.0f})" for m, low in medians]
        ratio = medians[1][0] / medians[0][0]
        print(f"| {label}, median of {fresh_repeats} | {' | '.join(cells)} | {ratio:.2f}× |")
    for phase, key, label in (
        ("restart", "warm_60m", "warm refresh, nothing new: compute_metrics 60m"),
        ("restart", "warm_new_lines", f"warm refresh after {NEW_EVENTS} new live lines (60m)"),
        ("restart", "warm_24h", "warm refresh, nothing new: compute_metrics 24h"),
        ("restart", "timeseries_24h", "timeseries 24h (15-min buckets)"),
        ("long", "warm_30d", "warm refresh, nothing new: compute_metrics 30d"),
    ):
        cells = [_ms(rows[n][phase][key]) for n in sizes]
        print(f"| {label} | {' | '.join(cells)} | |")
    cells = [f"{rows[n]['naive']['seconds']:.2f} s" for n in sizes]
    label = "naive: json.loads loop over every line (p95 + success rate, 60m)"
    print(f"| {label} | {' | '.join(cells)} | |")
    speedups = [rows[n]["naive"]["seconds"] / rows[n]["restart"]["warm_60m"][0] for n in sizes]
    print(f"| naive ÷ warm refresh (60m) | {' | '.join(f'{s:.0f}×' for s in speedups)} | |")
    for phase, label in (
        ("cold", "cold"),
        ("restart", "restart + warm 60m/24h"),
        ("long", "restart + warm 30d"),
        ("naive", "naive"),
    ):
        cells = [f"{rows[n][phase]['peak_rss_mb']:.0f} MB" for n in sizes]
        print(f"| peak RSS, {label} process | {' | '.join(cells)} | |")


def _print_large(large: list[dict[str, Any]], count: int) -> None:
    print()
    rows = large[0]["rows"]
    print(f"30-day window over {rows:,} events ({count:,} requested), compacted, warm, in process:")
    print()
    limits = [f"DuckDB memory limit {run['memory_limit']}" for run in large]
    print(f"| query | {' | '.join(limits)} |")
    print("|---|" + "---|" * len(large))
    keys = [k for k, v in large[0].items() if isinstance(v, list | str) and k != "memory_limit"]
    keys = [k for k in keys if all(k in run for run in large)]
    for key in keys:
        cells = [run[key] if isinstance(run[key], str) else _ms(tuple(run[key])) for run in large]
        print(f"| {key} | {' | '.join(cells)} |")
    peaks = [f"{run['peak_rss_mb']:.0f} MB" for run in large]
    print(f"| peak RSS | {' | '.join(peaks)} |")
    loads = [f"{run['load_before']:.1f} → {run['load_after']:.1f}" for run in large]
    print(f"| load average (1 min), before → after | {' | '.join(loads)} |")


def main() -> None:
    """Parse the arguments: either one measuring phase (internal) or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--small-events", type=int, default=SMALL_EVENTS)
    parser.add_argument("--large-events", type=int, default=LARGE_EVENTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--fresh-repeats", type=int, default=FRESH_REPEATS)
    parser.add_argument("--data-dir", help="keep the logs and caches here for the next run")
    parser.add_argument(
        "--large-only",
        action="store_true",
        help="only the large log's 30-day queries (the logs of --events kept in --data-dir)",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, *rest = args.phase
        if kind == "store":
            result = run_store(Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3].split(","))
        elif kind == "fresh":
            result = run_fresh(Path(rest[0]), Path(rest[1]))
        elif kind == "queries":
            result = run_queries(Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3], rest[4])
        else:
            result = run_naive(Path(rest[0]))
        print(json.dumps(result))
        return
    if args.large_only:
        with _data_root(args.data_dir) as root:
            source = _events_log(root, args.events, per_day=args.events / HISTORY.days)
            large = _large(root, (source, args.events), args.large_events, args.repeats)
        _print_large(large, args.large_events)
        return
    report(
        args.events,
        args.small_events,
        args.large_events,
        args.repeats,
        args.fresh_repeats,
        args.data_dir,
    )


if __name__ == "__main__":
    main()
