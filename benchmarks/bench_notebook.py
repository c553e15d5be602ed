"""`nexus notebooks run` over a large event log: three chained cells, once the log is compacted.

Run: ``python benchmarks/bench_notebook.py [--events N] [--repeats N]``.
Writes about ``--events`` realistic events over 30 days (``bench_metrics``'s jobs) into a fresh
data directory with an initialised SQLite database, imports ``NOTEBOOK`` (a date-range parameter
and three cells, each reading the one before by name) with ``nexus notebooks import``, then runs
the real command line, ``nexus notebooks run ID --param period=… --json``, in a new process each
time: first (the run compacts every rotated file to Parquet), then warm (the usual case). Also
times process start and imports alone (``nexus notebooks run --help``).

Prints the machine and a markdown table; timings are medians (and minimums) of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_metrics import EVENTS, HISTORY, NOW, generate  # noqa: E402
from bench_usage import nexus  # noqa: E402

REPEATS = 5
PERIOD = f"{(NOW - HISTORY).date().isoformat()}..{NOW.date().isoformat()}"
NOTEBOOK = """# Persona latency, day by day

```params
period: date_range = last 30 days
```

Every reply of the period, then per persona and day, then per persona.

```sql replies
SELECT persona, date_trunc('day', ts) AS day, latency_ms
FROM events
WHERE event = 'job_success' AND ts >= $period_start AND ts < $period_end
```

```sql daily
SELECT persona, day, count(*) AS replies, quantile_cont(latency_ms, 0.95) AS p95_ms
FROM replies
GROUP BY ALL
```

```sql
-- chart: bar x=persona y=worst_p95_ms
SELECT persona, round(avg(replies)) AS replies_per_day, round(max(p95_ms)) AS worst_p95_ms
FROM daily
GROUP BY persona
ORDER BY persona
```
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        nexus(data, "init")
        log = generate(data / "logs", args.events, args.events / HISTORY.days)
        size = sum(p.stat().st_size for p in log.parent.glob(log.name + "*"))
        source = Path(tmp) / "notebook.md"
        source.write_text(NOTEBOOK, encoding="utf-8")
        _, imported = nexus(data, "notebooks", "import", str(source), "--owner", "admin")
        notebook_id = imported.strip().splitlines()[-1]
        command = ("notebooks", "run", notebook_id, "--param", f"period={PERIOD}", "--json")
        cold, output = nexus(data, *command)
        cells = json.loads(output.strip().splitlines()[-1])["cells"]
        errors = [cell["error"] for cell in cells if cell["error"]]
        if errors:
            raise SystemExit(f"a cell failed: {errors[0]}")
        warm = [nexus(data, *command)[0] for _ in range(args.repeats)]
        start_up = [nexus(data, "notebooks", "run", "--help")[0] for _ in range(args.repeats)]
    rows = [cell["rows"] for cell in cells if cell["kind"] == "sql"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"events: ~{args.events:,} in {size / 1e6:,.0f} MB; rows of the three cells: {rows}")
    print("| measure | median | min |\n|---|---|---|")
    print(f"| `nexus notebooks run` first run (compacts the log) | {cold:.2f} s | — |")
    print(
        f"| `nexus notebooks run` once compacted (whole command) | "
        f"{statistics.median(warm):.2f} s | {min(warm):.2f} s |"
    )
    print(
        f"| process start and imports (`--help`) | {statistics.median(start_up):.2f} s "
        f"| {min(start_up):.2f} s |"
    )


if __name__ == "__main__":
    main()
