"""`nexus usage` over a large event log: how long the command takes once the log is compacted.

Run: ``python benchmarks/bench_usage.py [--events N] [--repeats N]``.
Writes about ``--events`` realistic events over 30 days (the jobs of ``bench_metrics``, with the
cost fields every ``job_success`` now carries: channel, token counts, ``cost_usd``, some
unpriced) into a fresh data directory with an initialised SQLite database, then runs the real
command line, ``nexus usage --window 30d --by user,model --json``, in a new process each time:

- cold: the first run compacts every rotated file to Parquet and freezes the live file's events
  into Parquet stretches;
- warm: later runs (the usual case) read the compacted store and adopt the stretches; timed whole
  (process start, imports, the query, JSON out), process start and imports alone
  (``nexus usage --help``), and, in-process, ``usage_report`` alone.

Prints the machine and a markdown table; timings are medians (and minimums) of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_metrics import EVENTS, HISTORY, NOW, generate  # noqa: E402

from nexus_core.analytics.log_store import EventStore  # noqa: E402
from nexus_core.cost.usage import usage_report  # noqa: E402

REPEATS = 7
CHANNELS = (("chat", 0.8), ("compare", 0.1), ("test_set", 0.05), ("cli", 0.05))
PRICES = {"gemini-flash-latest": (0.3, 0.075, 2.5), "gemini-pro-latest": (1.25, 0.31, 10.0)}
MODELS = (*PRICES, "gpt-4o-mini")  # the last one has no price: its replies are unpriced


def add_costs(log: Path, seed: int = 7) -> None:
    """Give every job_success the fields the pipeline logs (gpt-4o-mini stays unpriced)."""
    rng = random.Random(seed)
    for path in sorted(log.parent.glob(log.name + "*")):
        out = path.with_suffix(".tmp")
        with path.open() as src, out.open("w") as dst:
            for line in src:
                if '"job_success"' in line:
                    record = json.loads(line)
                    model = rng.choice(MODELS)
                    inp, outp = rng.randint(50, 4000), rng.randint(20, 1500)
                    cached = rng.randint(0, inp // 2)
                    reasoning = rng.randint(0, 800)
                    price = PRICES.get(model)
                    cost = None
                    if price:
                        cost = (
                            (inp - cached) * price[0]
                            + cached * price[1]
                            + (outp + reasoning) * price[2]
                        ) / 1e6
                    record |= {
                        "model": model,
                        "channel": rng.choices(*zip(*CHANNELS, strict=True))[0],
                        "input_tokens": inp,
                        "cached_input_tokens": cached,
                        "output_tokens": outp,
                        "reasoning_tokens": reasoning,
                        "cost_usd": cost,
                    }
                    line = json.dumps(record, separators=(",", ":")) + "\n"
                dst.write(line)
        out.replace(path)


def nexus(data_dir: Path, *args: str) -> tuple[float, str]:
    env = {**os.environ, "NEXUS_DATA_DIR": str(data_dir), "NEXUS_ENV": "test"}
    env.pop("DATABASE_URL", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nexus_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        nexus(data, "init")
        log = generate(data / "logs", args.events, args.events / HISTORY.days)
        add_costs(log)
        size = sum(p.stat().st_size for p in log.parent.glob(log.name + "*"))
        now = NOW.isoformat()
        command = ("usage", "--window", "30d", "--by", "user,model", "--now", now, "--json")
        cold, output = nexus(data, *command)
        report = json.loads(output)
        warm = [nexus(data, *command)[0] for _ in range(args.repeats)]
        start_up = [nexus(data, "usage", "--help")[0] for _ in range(args.repeats)]
        from nexus_core.settings import load_settings

        os.environ["NEXUS_DATA_DIR"] = str(data)
        with EventStore.from_settings(load_settings()) as store:
            usage_report(store, "30d", NOW, ["user", "model"])
            inner = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                usage_report(store, "30d", NOW, ["user", "model"])
                inner.append(time.perf_counter() - started)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"events: ~{args.events:,} in {size / 1e6:,.0f} MB; job_success replies counted: "
        f"{report['total']['replies']:,}; rows (user × model): {len(report['rows']):,}"
    )
    print("| measure | median | min |\n|---|---|---|")
    print(f"| `nexus usage` first run (compacts the log) | {cold:.2f} s | — |")
    print(
        f"| `nexus usage` once compacted (whole command) | {statistics.median(warm):.2f} s "
        f"| {min(warm):.2f} s |"
    )
    print(
        f"| process start and imports (`nexus usage --help`) | "
        f"{statistics.median(start_up):.2f} s | {min(start_up):.2f} s |"
    )
    print(
        f"| `usage_report` alone, in process | {statistics.median(inner) * 1000:.0f} ms "
        f"| {min(inner) * 1000:.0f} ms |"
    )


if __name__ == "__main__":
    main()
