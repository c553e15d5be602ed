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
    COST_SQL,
    PER_MINUTE_SQL,
    TOP_ERRORS_LIMIT,
    TOP_ERRORS_SQL,
    cost_by_persona,
    model_breakdown,
    persona_breakdown,
    request_totals,
    response_totals,
    timeseries,
)
from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.exact import quantiles
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.slo import LATENCY, slo_report
from nexus_core.analytics.windows import format_window, parse_window, window_bounds
from nexus_core.ops.events import format_ts

__all__ = [
    "LATENCIES_SQL",
    "SUMMARY_SQL",
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

# The per-minute counts with each minute as ``format_ts`` writes it, formatted by DuckDB (a
# Python loop over a 30-day window's 43,200 rows cost more than the query).
PER_MINUTE_JSON_SQL: Final = f"""
SELECT strftime(minute, '%Y-%m-%dT%H:%M:%S.%g') || 'Z' AS minute, requests, failures, retries
FROM ({PER_MINUTE_SQL})
"""

# Counts and means only: they stream. Percentiles come from ``LATENCIES_SQL`` (see ``exact``).
SUMMARY_SQL: Final = """
SELECT
    count(*) FILTER (WHERE event = 'request_start') AS requests,
    count(*) FILTER (WHERE event = 'request_success') AS successes,
    count(*) FILTER (WHERE event = 'request_failure') AS failures,
    count(*) FILTER (WHERE event = 'job_retry') AS retries,
    count(*) FILTER (WHERE event = 'job_success') AS jobs_succeeded,
    count(*) FILTER (WHERE event = 'job_failure') AS jobs_failed,
    avg(latency_ms) FILTER (WHERE event = 'job_success') AS avg_latency_ms,
    count(*) FILTER (WHERE event = 'job_success') AS replies,
    coalesce(sum(cost_usd) FILTER (WHERE event = 'job_success'), 0.0) AS cost_usd,
    count(*) FILTER (WHERE event = 'job_success' AND cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end
"""
# The values the percentiles are taken of: a filter and a projection, streamed out of DuckDB.
LATENCIES_SQL: Final = """
SELECT event = 'job_success' AS job, coalesce(latency_ms, 'NaN'::DOUBLE) AS latency_ms,
    coalesce(ttft_ms, 'NaN'::DOUBLE) AS ttft_ms
FROM events
WHERE ts >= $start AND ts < $end AND event IN ('job_success', 'request_success')
    AND (latency_ms IS NOT NULL OR ttft_ms IS NOT NULL)
"""

# ``LATENCIES_SQL``'s API half, for ``compute_metrics`` (the responses' come with ``by_persona``).
API_LATENCIES_SQL: Final = """
SELECT coalesce(latency_ms, 'NaN'::DOUBLE) AS latency_ms,
    coalesce(ttft_ms, 'NaN'::DOUBLE) AS ttft_ms
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_success'
    AND (latency_ms IS NOT NULL OR ttft_ms IS NOT NULL)
"""


def summary(source: EventStore | EventSnapshot, start: datetime, end: datetime) -> dict[str, Any]:
    """The window's counts, success rate and latency percentiles as plain numbers."""
    snapshot = snapshot_of(source)
    (row,) = snapshot.records(SUMMARY_SQL, start, end)
    values = snapshot.arrays(LATENCIES_SQL, start, end)
    job = values["job"]
    return _numbers(
        row, values["latency_ms"][job], values["latency_ms"][~job], values["ttft_ms"][~job]
    )


def _numbers(
    row: dict[str, Any], latency: np.ndarray, api_latency: np.ndarray, ttft: np.ndarray
) -> dict[str, Any]:
    """``SUMMARY_SQL``'s counts with the percentiles of the responses' latencies, the API's
    (``request_success``) latencies and times to first token."""
    response = quantiles(latency, _QUANTILES)
    api = quantiles(api_latency, [0.95])
    first_token = quantiles(ttft, _QUANTILES)
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
    numbers = summary(snapshot, start, end)
    return {
        "traffic": traffic,
        "requests": numbers["requests"],
        "failures": numbers["failures"],
        "success_rate": numbers["success_rate"],
        "jobs_succeeded": numbers["jobs_succeeded"],
        "jobs_failed": numbers["jobs_failed"],
        "cost": _cost(snapshot.records(COST_SQL, start, end)[0]),
    }


def _cost(row: dict[str, Any]) -> dict[str, Any]:
    """The window's cost, and per 1,000 priced replies (None without one)."""
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
    (row,) = snapshot.records(SUMMARY_SQL, start, end)
    requests = request_totals(snapshot, start, end)
    responses = response_totals(snapshot, start, end)
    api = snapshot.arrays(API_LATENCIES_SQL, start, end)
    numbers = _numbers(row, responses.latency_ms, api["latency_ms"], api["ttft_ms"])
    slo = slo_report(snapshot, start, end, now)
    slo[LATENCY]["p95_latency_ms"] = numbers["p95_latency_ms"]
    contract: dict[str, Any] = {
        "window": format_window(window),
        "now": format_ts(end),
        **{key: numbers.pop(key) for key in _CONTRACT_NUMBERS},
        "top_errors": snapshot.records(TOP_ERRORS_SQL, start, end, {"limit": TOP_ERRORS_LIMIT}),
        "per_minute": snapshot.records(PER_MINUTE_JSON_SQL, start, end),
        "skipped_lines": snapshot.skipped_lines,
        "slo": slo,
    }
    extras = {
        "traffic": traffic,
        "start": format_ts(start),
        **numbers,
        "by_model": model_breakdown(requests).to_dicts(),
        "by_persona": persona_breakdown(requests, responses).to_dicts(),
        "cost": _cost({key: row[key] for key in ("replies", "cost_usd", "unpriced_replies")}),
        "cost_by_persona": cost_by_persona(responses),
    }
    return contract | extras
