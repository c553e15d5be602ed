"""Window series and breakdowns as Polars frames, ready for the dashboard's charts.

All frames cover events with ``start ≤ ts < end``; time columns are naive UTC. A request's model
and persona come from its ``request_start`` (grouped by ``request_id`` within the window, so an
outcome whose start fell before the window counts as ``unknown``); a response's persona comes
from ``job_success.persona``. Missing values group as ``unknown``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.exact import grouped_quantiles, quantiles
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.windows import bucket_width, to_utc_naive, window_bounds

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

# A request pass: one row per request (``request_id``) — its model and persona from its start,
# its outcomes — summed per (model, persona), the API latencies kept as a list. DuckDB's grouping
# by request_id does not spill (its table of a few million requests overflows the store's memory
# limit), so the window's requests are split by hash into ``$parts`` passes of bounded size.
REQUESTS_SQL: Final = """
WITH requests AS (
    SELECT coalesce(any_value(model) FILTER (WHERE event = 'request_start'), 'unknown') AS model,
        coalesce(any_value(persona) FILTER (WHERE event = 'request_start'), 'unknown')
            AS persona,
        count(*) FILTER (WHERE event = 'request_start') AS starts,
        count(*) FILTER (WHERE event = 'request_success') AS successes,
        count(*) FILTER (WHERE event = 'request_failure') AS failures,
        any_value(latency_ms) FILTER (WHERE event = 'request_success') AS api_latency_ms
    FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure')
        AND hash(request_id) % $parts = $part
    GROUP BY hash(request_id)  -- 8 bytes a key instead of a 36-character UUID
)
SELECT model, persona,
    sum(starts)::BIGINT AS requests,
    sum(successes)::BIGINT AS successes,
    sum(failures)::BIGINT AS failures,
    list(api_latency_ms) FILTER (WHERE api_latency_ms IS NOT NULL) AS api_latencies
FROM requests
GROUP BY model, persona
"""
# Events a request pass groups at most (about a fifth are requests' starts); more are split.
REQUEST_PASS_ROWS: Final = 2_500_000

# What the window's replies cost (``job_success``): priced replies sum their ``cost_usd``;
# unpriced ones (a model without a price) are counted apart, never as $0.
COST_SQL: Final = """
SELECT count(*) AS replies,
    coalesce(sum(cost_usd), 0.0) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
"""
COST_BY_PERSONA_SQL: Final = """
SELECT coalesce(persona, 'unknown') AS persona,
    count(*) AS replies,
    coalesce(sum(cost_usd), 0.0) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
GROUP BY ALL
ORDER BY cost_usd DESC, replies DESC
"""
# Responses per persona; their latency percentiles come from ``RESPONSE_LATENCIES_SQL``.
RESPONSES_SQL: Final = """
SELECT coalesce(persona, 'unknown') AS persona, count(*) AS responses,
    avg(latency_ms) AS avg_latency_ms
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


def request_totals(
    source: EventStore | EventSnapshot, start: datetime, end: datetime
) -> pl.DataFrame:
    """The window's requests summed per (model, persona), with their API latencies: the request
    passes of ``REQUESTS_SQL``, as many as keep each pass's grouping within DuckDB's memory."""
    snapshot = snapshot_of(source)
    pieces = snapshot.overlapping(to_utc_naive(start), to_utc_naive(end))
    rows = sum(piece.rows for piece in pieces) + snapshot.hot_rows
    parts = max(1, math.ceil(rows / REQUEST_PASS_ROWS))
    return pl.concat(
        snapshot.query(REQUESTS_SQL, start, end, {"parts": parts, "part": part})
        for part in range(parts)
    )


def _rate(successes: int, failures: int) -> float | None:
    return successes / (successes + failures) if successes + failures else None


def model_breakdown(totals: pl.DataFrame) -> pl.DataFrame:
    """Requests, outcomes and API p95 latency per model (``request_totals``' rows summed)."""
    rows = []
    for (model,), group in totals.group_by("model"):
        successes, failures = int(group["successes"].sum()), int(group["failures"].sum())
        latencies = group["api_latencies"].explode().drop_nulls().to_numpy()
        p95 = quantiles(latencies.astype(float), (0.95,))
        rows.append(
            {
                "model": model,
                "requests": int(group["requests"].sum()),
                "successes": successes,
                "failures": failures,
                "success_rate": _rate(successes, failures),
                "api_p95_latency_ms": None if p95 is None else p95[0],
            }
        )
    frame = pl.DataFrame(rows, schema=BY_MODEL_SCHEMA)
    return frame.sort(["requests", "model"], descending=[True, False])


def persona_breakdown(
    source: EventStore | EventSnapshot, start: datetime, end: datetime, totals: pl.DataFrame
) -> pl.DataFrame:
    """Requests and outcomes (``request_totals``) and responses with their latency per persona."""
    snapshot = snapshot_of(source)
    responses = snapshot.records(RESPONSES_SQL, start, end)
    personas = [row["persona"] for row in responses]
    found: dict[int, list[float]] = {}
    if personas:
        values = snapshot.arrays(RESPONSE_LATENCIES_SQL, start, end, {"personas": personas})
        found = grouped_quantiles(values["code"], values["latency_ms"], (0.95,))
    by_requests = {
        persona: (int(g["requests"].sum()), int(g["successes"].sum()), int(g["failures"].sum()))
        for (persona,), g in totals.group_by("persona")
    }
    by_responses = {
        row["persona"]: (row["responses"], found.get(code + 1, [None])[0], row["avg_latency_ms"])
        for code, row in enumerate(responses)
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


def by_persona(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """Requests, outcomes and response latency per persona (``unknown`` when not logged)."""
    snapshot = snapshot_of(source)
    start, end = window_bounds(window, now)
    return persona_breakdown(snapshot, start, end, request_totals(snapshot, start, end))
