"""Window series and breakdowns as Polars frames, ready for the dashboard's charts.

All frames cover events with ``start ≤ ts < end``; time columns are naive UTC. A request's model
and persona come from its ``request_start`` (joined by ``request_id`` within the window, so an
outcome whose start fell before the window counts as ``unknown``); a response's persona comes
from ``job_success.persona``. Missing values group as ``unknown``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import polars as pl

from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.windows import bucket_width, window_bounds

UNKNOWN: Final = "unknown"
TOP_ERRORS_LIMIT: Final = 10
PER_MINUTE: Final = timedelta(minutes=1)

TOP_ERRORS_SQL: Final = """
SELECT coalesce(error_type, 'unknown') AS error_type, count(*) AS count
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_failure'
GROUP BY 1
ORDER BY count DESC, error_type
LIMIT $limit
"""

# Every bucket of the window, empty ones included; the first may be cut by the window's start.
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
        count(*) FILTER (WHERE event = 'job_retry') AS retries,
        quantile_cont(latency_ms, 0.5) FILTER (WHERE event = 'job_success') AS p50_ms,
        quantile_cont(latency_ms, 0.95) FILTER (WHERE event = 'job_success') AS p95_ms
    FROM events
    WHERE ts >= $start AND ts < $end
    GROUP BY 1
)
SELECT b.bucket,
    coalesce(g.requests, 0) AS requests,
    coalesce(g.failures, 0) AS failures,
    coalesce(g.retries, 0) AS retries,
    coalesce(g.successes, 0) AS successes,
    g.p50_ms,
    g.p95_ms,
    g.successes / nullif(g.successes + g.failures, 0) AS success_rate
FROM buckets AS b
LEFT JOIN grouped AS g USING (bucket)
ORDER BY b.bucket
"""

BY_MODEL_SQL: Final = """
WITH w AS (
    SELECT event, request_id, model, latency_ms FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure')
), starts AS (
    SELECT request_id, any_value(coalesce(model, 'unknown')) AS model
    FROM w WHERE event = 'request_start' AND request_id IS NOT NULL
    GROUP BY request_id
), tagged AS (
    SELECT w.event, w.latency_ms,
        CASE WHEN w.event = 'request_start' THEN coalesce(w.model, 'unknown')
             ELSE coalesce(s.model, 'unknown') END AS model
    FROM w LEFT JOIN starts AS s
        ON w.event <> 'request_start' AND s.request_id = w.request_id
)
SELECT model,
    count(*) FILTER (WHERE event = 'request_start') AS requests,
    count(*) FILTER (WHERE event = 'request_success') AS successes,
    count(*) FILTER (WHERE event = 'request_failure') AS failures,
    count(*) FILTER (WHERE event = 'request_success')
        / nullif(count(*) FILTER (WHERE event <> 'request_start'), 0) AS success_rate,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE event = 'request_success')
        AS api_p95_latency_ms
FROM tagged
GROUP BY model
ORDER BY requests DESC, model
"""

BY_PERSONA_SQL: Final = """
WITH w AS (
    SELECT event, request_id, persona, latency_ms FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure', 'job_success')
), starts AS (
    SELECT request_id, any_value(coalesce(persona, 'unknown')) AS persona
    FROM w WHERE event = 'request_start' AND request_id IS NOT NULL
    GROUP BY request_id
), tagged AS (
    SELECT w.event, w.latency_ms,
        CASE WHEN w.event IN ('request_start', 'job_success')
             THEN coalesce(w.persona, 'unknown')
             ELSE coalesce(s.persona, 'unknown') END AS persona
    FROM w LEFT JOIN starts AS s
        ON w.event IN ('request_success', 'request_failure') AND s.request_id = w.request_id
)
SELECT persona,
    count(*) FILTER (WHERE event = 'request_start') AS requests,
    count(*) FILTER (WHERE event = 'request_success') AS successes,
    count(*) FILTER (WHERE event = 'request_failure') AS failures,
    count(*) FILTER (WHERE event = 'request_success')
        / nullif(count(*) FILTER (WHERE event IN ('request_success', 'request_failure')), 0)
        AS success_rate,
    count(*) FILTER (WHERE event = 'job_success') AS responses,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE event = 'job_success') AS p95_latency_ms,
    avg(latency_ms) FILTER (WHERE event = 'job_success') AS avg_latency_ms
FROM tagged
GROUP BY persona
ORDER BY responses + requests DESC, persona
"""


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
    start, end = window_bounds(window, now)
    return snapshot_of(source).query(BUCKETS_SQL, start, end, {"width": width})


def timeseries(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """The window's series in buckets sized to it (1 min for 60m, 15 min for 24h, …).

    Columns: bucket, requests, failures, retries, successes, p50_ms, p95_ms, success_rate.
    """
    return bucket_series(source, window, now, bucket_width(window))


def per_minute(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """``minute``, ``requests``, ``failures``, ``retries`` for every minute of the window."""
    series = bucket_series(source, window, now, PER_MINUTE)
    return series.select(pl.col("bucket").alias("minute"), "requests", "failures", "retries")


def by_model(source: EventStore | EventSnapshot, window: timedelta, now: datetime) -> pl.DataFrame:
    """Requests, outcomes, success rate and API p95 latency per model."""
    start, end = window_bounds(window, now)
    return snapshot_of(source).query(BY_MODEL_SQL, start, end)


def by_persona(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """Requests, outcomes and response latency per persona (``unknown`` when not logged)."""
    start, end = window_bounds(window, now)
    return snapshot_of(source).query(BY_PERSONA_SQL, start, end)
