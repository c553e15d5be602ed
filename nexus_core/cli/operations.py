"""`nexus health`, `nexus metrics` and `nexus simulate`: running Nexus."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Final

from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.cli.parser import parse_now
from nexus_core.ops.health import HealthReport, check_worker_here, run_health
from nexus_core.simulation import simulate

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext

PROGRESS_WIDTH: Final = 30


def cmd_health(ctx: AppContext, args: argparse.Namespace) -> int:
    if args.worker:
        report = HealthReport.from_results([check_worker_here(ctx.settings)])
    else:
        report = run_health(ctx.settings)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for name, check in report.to_dict()["checks"].items():
            mark = "ok  " if check["ok"] else "FAIL"
            print(f"{mark} {name:<9} {check['latency_ms']:8.1f} ms  {check['detail']}")
        print(f"status: {report.status}")
    return 0 if report.ok else 1


def cmd_metrics(ctx: AppContext, args: argparse.Namespace) -> int:
    now = parse_now(args.now)
    with EventStore.from_settings(ctx.settings) as store:
        numbers = compute_metrics(store, args.window, now, traffic=args.traffic)
    if args.json:
        print(json.dumps(numbers))
        return 0
    print(metrics_text(numbers))
    return 0


def metrics_text(numbers: dict[str, Any]) -> str:
    """The metrics for a terminal: rates in percent, times in whole milliseconds."""
    slo = numbers["slo"]
    return "\n".join(
        (
            f"window {numbers['window']} ending {numbers['now']}",
            f"requests {numbers['requests']}  failures {numbers['failures']}  "
            f"retries {numbers['retries']}  success rate {_percent(numbers['success_rate'])}",
            f"p95 response {_ms(numbers['p95_latency_ms'])}  "
            f"avg {_ms(numbers['avg_latency_ms'])}  "
            f"API p95 {_ms(numbers['api_p95_latency_ms'])}  "
            f"skipped lines {numbers['skipped_lines']}",
            f"alerts: {slo['alerts']['state']}",
        )
    )


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.2f} %"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def cmd_simulate(ctx: AppContext, args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        filled = PROGRESS_WIDTH * done // total
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        print(f"\r[{bar}] {done}/{total} sessions", end="", file=sys.stderr, flush=True)

    report = simulate(
        ctx,
        users=args.users,
        sessions=args.sessions,
        days=args.days,
        failure_rate=args.failure_rate,
        seed=args.seed,
        progress=progress,
    )
    print(file=sys.stderr)
    print(
        f"Simulated {report.sessions} sessions for {report.users} demo users and the demo "
        f"analyst over the last {args.days:g} days (Simulated model (offline)):"
    )
    counts = {
        "replies": report.replies,
        "failed replies": report.failures,
        "thumbs": report.ratings,
        "feedback reports": report.reports,
        "triage steps": report.triage_steps,
        "blind comparisons": report.comparisons,
        "votes": report.votes,
        "test-set runs": report.test_set_runs,
        "evaluations": report.eval_runs,
    }
    print(", ".join(f"{name} {count}" for name, count in counts.items()))
    return 0
