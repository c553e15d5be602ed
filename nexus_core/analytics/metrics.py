"""Window metrics of the event log: the numbers of ``nexus metrics --json`` and the dashboard.

Over the events with ``now − window ≤ ts < now`` (see ``docs/contract.md``, "Metrics"):
``requests`` counts ``request_start``; ``successes`` / ``failures`` count ``request_success`` /
``request_failure``; ``retries`` counts ``job_retry``; ``success_rate`` is successes over
outcomes (None without outcomes). Response latency (``p95_latency_ms``, ``avg_latency_ms``, p50,
p90, p99) is ``job_success.latency_ms``, what the user waits for; ``api_p95_latency_ms`` is
``request_success.latency_ms``; time to first token is ``request_success.ttft_ms``. Percentiles
interpolate linearly (DuckDB ``quantile_cont``, numpy's default), computed from the values
streamed out of DuckDB (``exact``), so a month of events never exhausts DuckDB's memory.
``skipped_lines`` counts the lines of the current log files that were not events: they carry no
time, so no window applies.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np

from nexus_core.analytics.breakdowns import (
    TOP_ERRORS_LIMIT,
    cost_by_persona,
    model_breakdown,
    persona_breakdown,
    timeseries,
)
from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.exact import runs_quantiles
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.slo import LATENCY, slo_report
from nexus_core.analytics.tallies import (
    API,
    RESPONSE,
    TTFT,
    Tally,
    minute_grid,
    window_tally,
)
from nexus_core.analytics.windows import format_window, parse_window, window_bounds
from nexus_core.ops.events import format_ts

__all__ = [
    "compute_metrics",
    "parse_window",
    "summary",
    "timeseries",
    "traffic_summary",
    "window_numbers",
]

PERCENTILES: Final = (50, 90, 95, 99)
_QUANTILES: Final = tuple(p / 100 for p in PERCENTILES)

_CONTRACT_NUMBERS: Final = (
    "requests",
    "successes",
    "failures",
    "retries",
    "success_rate",
    "p95_latency_ms",
    "avg_latency_ms",
    "api_p95_latency_ms",
)


def summary(source: EventStore | EventSnapshot, start: datetime, end: datetime) -> dict[str, Any]:
    """The window's counts, success rate and latency percentiles as plain numbers."""
    return _numbers(window_tally(snapshot_of(source), start, end, detail=False))


def _numbers(tally: Tally) -> dict[str, Any]:
    """The tally's counts (``_tally_counts``) with the percentiles (``_QUANTILES``) of the
    responses' latencies, the API's (``request_success``) p95 latency and times to first token."""
    row = _tally_counts(tally)
    response = runs_quantiles(tally.runs_of(RESPONSE), _QUANTILES)
    api = runs_quantiles(tally.runs_of(API), [0.95])
    first_token = runs_quantiles(tally.runs_of(TTFT), _QUANTILES)
    outcomes = row["successes"] + row["failures"]
    result: dict[str, Any] = {
        "requests": row["requests"],
        "successes": row["successes"],
        "failures": row["failures"],
        "retries": row["retries"],
        "success_rate": row["successes"] / outcomes if outcomes else None,
        "p95_latency_ms": _percentile(response, 95),
        "avg_latency_ms": row["avg_latency_ms"],
        "api_p95_latency_ms": None if api is None else api[0],
        "jobs_succeeded": row["jobs_succeeded"],
        "jobs_failed": row["jobs_failed"],
    }
    for p in PERCENTILES:
        if p != 95:
            result[f"p{p}_latency_ms"] = _percentile(response, p)
    for p in PERCENTILES:
        result[f"ttft_p{p}_ms"] = _percentile(first_token, p)
    return result


def traffic_summary(
    source: EventStore | EventSnapshot, window: timedelta | str, now: datetime, traffic: str
) -> dict[str, Any]:
    """One kind of traffic's volume, failures and cost over the window (no SLO maths): the
    dashboard's small panel for the traffic it does not show."""
    if isinstance(window, str):
        window = parse_window(window)
    snapshot = snapshot_of(source).of_traffic(traffic)
    start, end = window_bounds(window, now)
    tally = window_tally(snapshot, start, end, detail=False)
    numbers = _numbers(tally)
    return {
        "traffic": traffic,
        "requests": numbers["requests"],
        "failures": numbers["failures"],
        "success_rate": numbers["success_rate"],
        "jobs_succeeded": numbers["jobs_succeeded"],
        "jobs_failed": numbers["jobs_failed"],
        "cost": _cost(tally),
    }


def _cost(tally: Tally) -> dict[str, Any]:
    """The window's replies, their cost and unpriced replies, and the cost per 1,000 priced
    replies (None without one)."""
    counts = _tally_counts(tally)
    row = {key: counts[key] for key in ("replies", "cost_usd", "unpriced_replies")}
    priced = row["replies"] - row["unpriced_replies"]
    per_1k = row["cost_usd"] / priced * 1000 if priced else None
    return {**row, "cost_per_1k_replies": per_1k}


def _percentile(values: list[float] | None, p: int) -> float | None:
    return None if values is None else values[PERCENTILES.index(p)]


def window_numbers(
    source: EventStore | EventSnapshot,
    window: timedelta | str,
    now: datetime,
    traffic: str = "user",
) -> dict[str, Any]:
    """``summary``'s numbers of the window ending at ``now`` and its ``slo``: what a window is
    compared on (the dashboard's window before), without ``compute_metrics``'s breakdowns."""
    if isinstance(window, str):
        window = parse_window(window)
    snapshot = snapshot_of(source).of_traffic(traffic)
    start, end = window_bounds(window, now)
    numbers = summary(snapshot, start, end)
    slo = slo_report(snapshot, start, end, now)
    slo[LATENCY]["p95_latency_ms"] = numbers["p95_latency_ms"]
    return numbers | {"slo": slo}


def compute_metrics(
    source: EventStore | EventSnapshot,
    window: timedelta | str,
    now: datetime,
    traffic: str = "user",
) -> dict[str, Any]:
    """The contract's metrics JSON for the window ending at ``now``, plus breakdowns.

    Contract keys first (window, now, requests, successes, failures, retries, success_rate,
    p95_latency_ms, avg_latency_ms, api_p95_latency_ms, top_errors, per_minute, skipped_lines,
    slo), then extras: start, p50/p90/p99 and time-to-first-token percentiles, job counts,
    traffic (which events were counted: ``user`` by default — jobs no user waits for, marked
    by ``run_id`` or a synthetic ``channel``, are left out — ``synthetic`` or ``all``), by_model,
    by_persona, cost (the window's replies, cost, unpriced replies, cost per 1,000
    priced replies) and cost_by_persona.
    """
    if isinstance(window, str):
        window = parse_window(window)
    snapshot = snapshot_of(source).of_traffic(traffic)
    start, end = window_bounds(window, now)
    tally = window_tally(snapshot, start, end)
    numbers = _numbers(tally)
    slo = slo_report(snapshot, start, end, now)
    slo[LATENCY]["p95_latency_ms"] = numbers["p95_latency_ms"]
    contract: dict[str, Any] = {
        "window": format_window(window),
        "now": format_ts(end),
        **{key: numbers.pop(key) for key in _CONTRACT_NUMBERS},
        "top_errors": _top_errors(tally),
        "per_minute": _per_minute(tally, start, end),
        "skipped_lines": snapshot.skipped_lines,
        "slo": slo,
    }
    extras = {
        "traffic": traffic,
        "start": format_ts(start),
        **numbers,
        "by_model": model_breakdown(tally).to_dicts(),
        "by_persona": persona_breakdown(tally).to_dicts(),
        "cost": _cost(tally),
        "cost_by_persona": cost_by_persona(tally),
    }
    return contract | extras


def _tally_counts(tally: Tally) -> dict[str, Any]:
    """The tally's counts: requests, outcomes, retries, jobs, the responses' mean latency and
    what the replies cost."""
    totals = tally.minute_totals()
    # Summed in the personas' order, whatever order the tallies listed them in: the same bits.
    per_persona = [tally.responses[persona] for persona in sorted(tally.responses)]
    responses = [sum(column) for column in zip(*per_persona, strict=True)]
    replies, latency_sum, latency_count, cost, unpriced = responses or (0, 0.0, 0, 0.0, 0)
    return {
        "requests": totals["requests"],
        "successes": totals["successes"],
        "failures": totals["failures"],
        "retries": totals["retries"],
        "jobs_succeeded": int(replies),
        "jobs_failed": totals["jobs_failed"],
        "avg_latency_ms": latency_sum / latency_count if latency_count else None,
        "replies": int(replies),
        "cost_usd": float(cost),
        "unpriced_replies": int(unpriced),
    }


def _top_errors(tally: Tally) -> list[dict[str, Any]]:
    """Request failures per error type, the most frequent first (``TOP_ERRORS_LIMIT`` of them)."""
    ranked = sorted(tally.errors.items(), key=lambda item: (-item[1], item[0]))
    return [{"error_type": kind, "count": n} for kind, n in ranked[:TOP_ERRORS_LIMIT]]


def _per_minute(tally: Tally, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every minute of the window with its requests, failures and retries, the minute written as
    ``format_ts`` writes it (NumPy formats the 43,200 minutes of 30 days at once)."""
    minutes, counts = minute_grid(tally, start, end)
    stamps = np.datetime_as_string(minutes.astype("datetime64[us]"), unit="ms")
    columns = [counts[name].tolist() for name in ("requests", "failures", "retries")]
    return [
        {"minute": f"{stamp}Z", "requests": r, "failures": f, "retries": t}
        for stamp, r, f, t in zip(stamps.tolist(), *columns, strict=True)
    ]
