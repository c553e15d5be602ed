"""Window series and breakdowns as Polars frames, ready for the dashboard's charts.

All frames cover events with ``start ≤ ts < end``; time columns are naive UTC. A request's model
and persona come from its ``request_start`` (joined by ``request_id`` within the window, so an
outcome whose start fell before the window counts as ``unknown``); a response's persona comes
from ``job_success.persona``. Missing values group as ``unknown``. Latency percentiles are exact
(``exact``): no query keeps a month of values in DuckDB's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import polars as pl

from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.exact import grouped_quantiles
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.windows import bucket_width, window_bounds

UNKNOWN: Final = "unknown"
TOP_ERRORS_LIMIT: Final = 10

TOP_ERRORS_SQL: Final = """
SELECT coalesce(error_type, 'unknown') AS error_type, count(*) AS count
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_failure'
GROUP BY 1
ORDER BY count DESC, error_type
LIMIT $limit
"""

# Every bucket of the window, empty ones included; the first may be cut by the window's start.
# Its latency percentiles come from ``BUCKET_LATENCIES_SQL`` (see ``exact``).
BUCKETS_SQL: Final = """
WITH buckets AS (
    SELECT unnest(generate_series(
        time_bucket($width, $start::TIMESTAMP),
        $end::TIMESTAMP - INTERVAL 1 microsecond,
        $width
    )) AS bucket
), grouped AS (
    SELECT time_bucket($width, ts) AS bucket,
        count(*) FILTER (WHERE event = 'request_start') AS requests,
        count(*) FILTER (WHERE event = 'request_success') AS successes,
        count(*) FILTER (WHERE event = 'request_failure') AS failures,
        count(*) FILTER (WHERE event = 'job_retry') AS retries
    FROM events
    WHERE ts >= $start AND ts < $end
    GROUP BY 1
)
SELECT b.bucket,
    coalesce(g.requests, 0) AS requests,
    coalesce(g.failures, 0) AS failures,
    coalesce(g.retries, 0) AS retries,
    coalesce(g.successes, 0) AS successes,
    g.successes / nullif(g.successes + g.failures, 0) AS success_rate
FROM buckets AS b
LEFT JOIN grouped AS g USING (bucket)
ORDER BY b.bucket
"""

PER_MINUTE_SQL: Final = """
WITH minutes AS (
    SELECT unnest(generate_series(
        date_trunc('minute', $start::TIMESTAMP),
        $end::TIMESTAMP - INTERVAL 1 microsecond,
        INTERVAL 1 minute
    )) AS minute
), grouped AS (
    SELECT date_trunc('minute', ts) AS minute,
        count(*) FILTER (WHERE event = 'request_start') AS requests,
        count(*) FILTER (WHERE event = 'request_failure') AS failures,
        count(*) FILTER (WHERE event = 'job_retry') AS retries
    FROM events
    WHERE ts >= $start AND ts < $end
    GROUP BY 1
)
SELECT m.minute,
    coalesce(g.requests, 0) AS requests,
    coalesce(g.failures, 0) AS failures,
    coalesce(g.retries, 0) AS retries
FROM minutes AS m
LEFT JOIN grouped AS g USING (minute)
ORDER BY m.minute
"""

# A request's model and persona are its ``request_start``'s; its outcome is joined to that start
# by ``request_id`` within the window (no start there: ``unknown``). A join, not a grouping by
# request_id: DuckDB's hash join spills to disk, its grouping of a month's millions of requests
# does not (it overflowed the store's memory limit). A request_id names one HTTP call (a UUID);
# should a log repeat one, its outcome counts once per start of that id in the window. Codes
# index ``$models`` / ``$personas`` (``unknown`` is 0), so the outcomes stream out as numbers.
REQUEST_STARTS_SQL: Final = """
SELECT coalesce(model, 'unknown') AS model, coalesce(persona, 'unknown') AS persona,
    count(*) AS requests
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_start'
GROUP BY ALL
"""
REQUEST_OUTCOMES_SQL: Final = """
WITH starts AS (
    SELECT hash(request_id) AS request,
        list_position($models, coalesce(model, 'unknown'))::INTEGER - 1 AS model,
        list_position($personas, coalesce(persona, 'unknown'))::INTEGER - 1 AS persona
    FROM events
    WHERE ts >= $start AND ts < $end AND event = 'request_start' AND request_id IS NOT NULL
)
SELECT coalesce(s.model, 0) AS model, coalesce(s.persona, 0) AS persona,
    o.event = 'request_success' AS success, coalesce(o.latency_ms, 'NaN'::DOUBLE) AS latency_ms
FROM events AS o
LEFT JOIN starts AS s ON s.request = hash(o.request_id)
WHERE o.ts >= $start AND o.ts < $end AND o.event IN ('request_success', 'request_failure')
"""

# What the window's replies cost (``job_success``): priced replies sum their ``cost_usd``;
# unpriced ones (a model without a price) are counted apart, never as $0.
COST_SQL: Final = """
SELECT count(*) AS replies,
    coalesce(sum(cost_usd), 0.0) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
"""
# Responses (replies) per persona, with what they cost; their latency percentiles come from
# ``RESPONSE_LATENCIES_SQL``.
RESPONSES_SQL: Final = """
SELECT coalesce(persona, 'unknown') AS persona, count(*) AS responses,
    avg(latency_ms) AS avg_latency_ms,
    coalesce(sum(cost_usd), 0.0) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
GROUP BY 1
"""
RESPONSE_LATENCIES_SQL: Final = """
SELECT list_position($personas, coalesce(persona, 'unknown'))::INTEGER AS code, latency_ms
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success' AND latency_ms IS NOT NULL
"""
BUCKET_LATENCIES_SQL: Final = """
SELECT epoch_us(time_bucket($width, ts)) AS bucket, latency_ms
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success' AND latency_ms IS NOT NULL
"""
BY_MODEL_SCHEMA: Final = {
    "model": pl.String,
    "requests": pl.Int64,
    "successes": pl.Int64,
    "failures": pl.Int64,
    "success_rate": pl.Float64,
    "api_p95_latency_ms": pl.Float64,
}
BY_PERSONA_SCHEMA: Final = {
    "persona": pl.String,
    "requests": pl.Int64,
    "successes": pl.Int64,
    "failures": pl.Int64,
    "success_rate": pl.Float64,
    "responses": pl.Int64,
    "p95_latency_ms": pl.Float64,
    "avg_latency_ms": pl.Float64,
}


def top_errors(
    source: EventStore | EventSnapshot,
    window: timedelta,
    now: datetime,
    limit: int = TOP_ERRORS_LIMIT,
) -> pl.DataFrame:
    """``error_type``, ``count`` of request failures in the window, most frequent first."""
    start, end = window_bounds(window, now)
    return snapshot_of(source).query(TOP_ERRORS_SQL, start, end, {"limit": limit})


def bucket_series(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime, width: timedelta
) -> pl.DataFrame:
    """Counts, latency percentiles and success rate per ``width`` bucket, empty buckets too."""
    snapshot = snapshot_of(source)
    start, end = window_bounds(window, now)
    frame = snapshot.query(BUCKETS_SQL, start, end, {"width": width})
    values = snapshot.arrays(BUCKET_LATENCIES_SQL, start, end, {"width": width})
    found = grouped_quantiles(values["bucket"], values["latency_ms"], (0.5, 0.95))
    micros = frame["bucket"].dt.epoch("us").to_list()
    p50 = [found[m][0] if m in found else None for m in micros]
    p95 = [found[m][1] if m in found else None for m in micros]
    return frame.with_columns(
        pl.Series("p50_ms", p50, dtype=pl.Float64), pl.Series("p95_ms", p95, dtype=pl.Float64)
    ).select(
        "bucket",
        "requests",
        "failures",
        "retries",
        "successes",
        "p50_ms",
        "p95_ms",
        "success_rate",
    )


def timeseries(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """The window's series in buckets sized to it (1 min for 60m, 15 min for 24h, …).

    Columns: bucket, requests, failures, retries, successes, p50_ms, p95_ms, success_rate.
    """
    return bucket_series(source, window, now, bucket_width(window))


@dataclass(frozen=True)
class RequestTotals:
    """The window's requests and outcomes by their start's model and persona (codes index the
    name tuples; ``unknown`` is 0): the requests counted per (model, persona), and one entry per
    outcome."""

    models: tuple[str, ...]
    personas: tuple[str, ...]
    starts: list[dict[str, Any]]  # model, persona, requests
    model: np.ndarray  # each outcome's model code
    persona: np.ndarray  # … and persona code
    success: np.ndarray  # whether it is a request_success
    latency_ms: np.ndarray  # its latency (NaN: none)


def request_totals(
    source: EventStore | EventSnapshot, start: datetime, end: datetime
) -> RequestTotals:
    """The window's requests by model and persona (``REQUEST_STARTS_SQL``) and their outcomes
    joined to them (``REQUEST_OUTCOMES_SQL``)."""
    snapshot = snapshot_of(source)
    starts = snapshot.records(REQUEST_STARTS_SQL, start, end)
    models = (UNKNOWN, *sorted({row["model"] for row in starts} - {UNKNOWN}))
    personas = (UNKNOWN, *sorted({row["persona"] for row in starts} - {UNKNOWN}))
    params = {"models": list(models), "personas": list(personas)}
    outcomes = snapshot.arrays(REQUEST_OUTCOMES_SQL, start, end, params)
    return RequestTotals(
        models,
        personas,
        starts,
        outcomes["model"],
        outcomes["persona"],
        outcomes["success"].astype(bool),
        outcomes["latency_ms"],
    )


@dataclass(frozen=True)
class ResponseTotals:
    """The window's responses (``job_success``) per persona (``RESPONSES_SQL`` rows) and each
    response's latency with its persona's 1-based index in those rows."""

    rows: list[dict[str, Any]]
    code: np.ndarray
    latency_ms: np.ndarray


def response_totals(
    source: EventStore | EventSnapshot, start: datetime, end: datetime
) -> ResponseTotals:
    """The window's responses per persona and their latencies."""
    snapshot = snapshot_of(source)
    rows = snapshot.records(RESPONSES_SQL, start, end)
    personas = [row["persona"] for row in rows]
    if not personas:
        return ResponseTotals(rows, np.zeros(0, dtype=np.int32), np.zeros(0))
    values = snapshot.arrays(RESPONSE_LATENCIES_SQL, start, end, {"personas": personas})
    return ResponseTotals(rows, values["code"], values["latency_ms"])


def cost_by_persona(responses: ResponseTotals) -> list[dict[str, Any]]:
    """Replies, cost and unpriced replies per persona, the costliest first."""
    rows = [
        {
            "persona": row["persona"],
            "replies": row["responses"],
            "cost_usd": row["cost_usd"],
            "unpriced_replies": row["unpriced_replies"],
        }
        for row in responses.rows
    ]
    return sorted(rows, key=lambda row: (-row["cost_usd"], -row["replies"]))


def _rate(successes: int, failures: int) -> float | None:
    return successes / (successes + failures) if successes + failures else None


def _outcome_counts(codes: np.ndarray, success: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Per code, (successes, failures)."""
    ok = np.bincount(codes[success], minlength=size)
    failed = np.bincount(codes[~success], minlength=size)
    return [(int(a), int(b)) for a, b in zip(ok, failed, strict=True)]


def model_breakdown(totals: RequestTotals) -> pl.DataFrame:
    """Requests, outcomes and API p95 latency (``request_success``) per model."""
    requests = dict.fromkeys(totals.models, 0)
    for row in totals.starts:
        requests[row["model"]] += row["requests"]
    outcomes = _outcome_counts(totals.model, totals.success, len(totals.models))
    p95 = grouped_quantiles(
        totals.model[totals.success], totals.latency_ms[totals.success], (0.95,)
    )
    rows = [
        {
            "model": model,
            "requests": requests[model],
            "successes": successes,
            "failures": failures,
            "success_rate": _rate(successes, failures),
            "api_p95_latency_ms": p95.get(code, [None])[0],
        }
        for code, (model, (successes, failures)) in enumerate(
            zip(totals.models, outcomes, strict=True)
        )
        if requests[model] or successes or failures
    ]
    frame = pl.DataFrame(rows, schema=BY_MODEL_SCHEMA)
    return frame.sort(["requests", "model"], descending=[True, False])


def persona_breakdown(totals: RequestTotals, responses: ResponseTotals) -> pl.DataFrame:
    """Requests and outcomes (``request_totals``) and responses with their latency
    (``response_totals``) per persona."""
    found = grouped_quantiles(responses.code, responses.latency_ms, (0.95,))
    requests = dict.fromkeys(totals.personas, 0)
    for row in totals.starts:
        requests[row["persona"]] += row["requests"]
    outcomes = _outcome_counts(totals.persona, totals.success, len(totals.personas))
    by_requests = {
        persona: (requests[persona], successes, failures)
        for persona, (successes, failures) in zip(totals.personas, outcomes, strict=True)
        if requests[persona] or successes or failures
    }
    by_responses = {
        row["persona"]: (row["responses"], found.get(code + 1, [None])[0], row["avg_latency_ms"])
        for code, row in enumerate(responses.rows)
    }
    rows = []
    for persona in by_requests.keys() | by_responses.keys():
        requests, successes, failures = by_requests.get(persona, (0, 0, 0))
        count, p95, avg = by_responses.get(persona, (0, None, None))
        rows.append(
            {
                "persona": persona,
                "requests": requests,
                "successes": successes,
                "failures": failures,
                "success_rate": _rate(successes, failures) if persona in by_requests else None,
                "responses": count,
                "p95_latency_ms": p95,
                "avg_latency_ms": avg,
            }
        )
    frame = pl.DataFrame(rows, schema=BY_PERSONA_SCHEMA)
    order = (frame["responses"] + frame["requests"]).alias("_order")
    return (
        frame.with_columns(order)
        .sort(["_order", "persona"], descending=[True, False])
        .drop("_order")
    )


def persona_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``compute_metrics``' ``by_persona`` rows as ``by_persona``'s frame."""
    return pl.DataFrame(rows, schema=BY_PERSONA_SCHEMA)


def by_persona(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """Requests, outcomes and response latency per persona (``unknown`` when not logged)."""
    snapshot = snapshot_of(source)
    start, end = window_bounds(window, now)
    requests = request_totals(snapshot, start, end)
    return persona_breakdown(requests, response_totals(snapshot, start, end))
