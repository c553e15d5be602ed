"""Window series and breakdowns as Polars frames, ready for the dashboard's charts.

All frames cover events with ``start ≤ ts < end``; time columns are naive UTC. A request's model
and persona come from its ``request_start`` (grouped by ``request_id`` within the window, so an
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

# One row per request (``request_id``): its model/persona from its start, and its outcome.
BY_MODEL_SQL: Final = """
WITH requests AS (
    SELECT coalesce(any_value(model) FILTER (WHERE event = 'request_start'), 'unknown') AS model,
        count(*) FILTER (WHERE event = 'request_start') AS starts,
        count(*) FILTER (WHERE event = 'request_success') AS successes,
        count(*) FILTER (WHERE event = 'request_failure') AS failures,
        any_value(latency_ms) FILTER (WHERE event = 'request_success') AS api_latency_ms
    FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure')
    GROUP BY hash(request_id)  -- 8 bytes a key instead of a 36-character UUID
)
SELECT model,
    sum(starts)::BIGINT AS requests,
    sum(successes)::BIGINT AS successes,
    sum(failures)::BIGINT AS failures,
    sum(successes) / nullif(sum(successes) + sum(failures), 0) AS success_rate,
    quantile_cont(api_latency_ms, 0.95) AS api_p95_latency_ms
FROM requests
GROUP BY model
ORDER BY requests DESC, model
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
BY_PERSONA_SQL: Final = """
WITH requests AS (
    SELECT coalesce(any_value(persona) FILTER (WHERE event = 'request_start'), 'unknown')
            AS persona,
        count(*) FILTER (WHERE event = 'request_start') AS starts,
        count(*) FILTER (WHERE event = 'request_success') AS successes,
        count(*) FILTER (WHERE event = 'request_failure') AS failures
    FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure')
    GROUP BY hash(request_id)  -- 8 bytes a key instead of a 36-character UUID
), by_requests AS (
    SELECT persona, sum(starts)::BIGINT AS requests, sum(successes)::BIGINT AS successes,
        sum(failures)::BIGINT AS failures
    FROM requests
    GROUP BY persona
), by_responses AS (
    SELECT coalesce(persona, 'unknown') AS persona, count(*) AS responses,
        quantile_cont(latency_ms, 0.95) AS p95_latency_ms, avg(latency_ms) AS avg_latency_ms
    FROM events
    WHERE ts >= $start AND ts < $end AND event = 'job_success'
    GROUP BY 1
)
SELECT persona,
    coalesce(r.requests, 0) AS requests,
    coalesce(r.successes, 0) AS successes,
    coalesce(r.failures, 0) AS failures,
    r.successes / nullif(r.successes + r.failures, 0) AS success_rate,
    coalesce(j.responses, 0) AS responses,
    j.p95_latency_ms,
    j.avg_latency_ms
FROM by_requests AS r
FULL OUTER JOIN by_responses AS j USING (persona)
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


def by_persona(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """Requests, outcomes and response latency per persona (``unknown`` when not logged)."""
    start, end = window_bounds(window, now)
    return snapshot_of(source).query(BY_PERSONA_SQL, start, end)
