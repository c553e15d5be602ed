"""Window series and breakdowns as Polars frames, ready for the dashboard's charts.

All frames cover events with ``start ≤ ts < end``; time columns are naive UTC. A request's model
and persona come from its ``request_start`` (joined by ``request_id`` within the window, so an
outcome whose start fell before the window counts as ``unknown``); a response's persona comes
from ``job_success.persona``. Missing values group as ``unknown``. Latency percentiles are exact
(``exact``): no query keeps a month of values in DuckDB's memory.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import polars as pl

from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.exact import grouped_quantiles, runs_quantiles
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.tallies import API, RESPONSE, Tally, minute_grid, window_tally
from nexus_core.analytics.windows import bucket_width, to_utc_naive, window_bounds

TOP_ERRORS_LIMIT: Final = 10

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

# What the window's replies cost (``job_success``): priced replies sum their ``cost_usd``;
# unpriced ones (a model without a price) are counted apart, never as $0.
COST_SQL: Final = """
SELECT count(*) AS replies,
    coalesce(sum(cost_usd), 0.0) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
"""
BUCKET_LATENCIES_SQL: Final = """
SELECT epoch_us(time_bucket($width, ts)) AS bucket, latency_ms
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success' AND latency_ms IS NOT NULL
"""
BUCKETS_SCHEMA: Final = {
    "bucket": pl.Datetime("us"),
    "requests": pl.Int64,
    "failures": pl.Int64,
    "retries": pl.Int64,
    "successes": pl.Int64,
    "p50_ms": pl.Float64,
    "p95_ms": pl.Float64,
    "success_rate": pl.Float64,
}
HOUR: Final = timedelta(hours=1)
MICROSECOND: Final = timedelta(microseconds=1)
EPOCH: Final = datetime(1970, 1, 1)
BUCKET_ORIGIN: Final = datetime(2000, 1, 3)  # ``time_bucket``'s origin for widths under a month
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


def bucket_series(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime, width: timedelta
) -> pl.DataFrame:
    """Counts, latency percentiles and success rate per ``width`` bucket, empty buckets too.
    Buckets of whole hours (7 and 30 days' windows) are added up from the window's tallies and
    their hourly latency runs (a month of events in well under a second); shorter ones by SQL."""
    snapshot = snapshot_of(source)
    start, end = window_bounds(window, now)
    if width >= HOUR and width % HOUR == timedelta(0):
        tally = window_tally(snapshot, start, end, detail=False)
        return _hourly_buckets(tally, to_utc_naive(start), to_utc_naive(end), width)
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


def _hourly_buckets(tally: Tally, start: datetime, end: datetime, width: timedelta) -> pl.DataFrame:
    """``bucket_series``' frame from a tally: buckets placed as ``time_bucket`` places them."""
    step = width // MICROSECOND
    origin = _micros(BUCKET_ORIGIN)
    first = origin + (_micros(start) - origin) // step * step
    buckets = np.arange(first, _micros(end), step, dtype=np.int64)
    minutes, counts = minute_grid(tally, start, end)
    slots = (minutes - first) // step
    totals = {}
    for name in ("requests", "failures", "retries", "successes"):
        totals[name] = np.zeros(len(buckets), dtype=np.int64)
        np.add.at(totals[name], slots, counts[name])
    hours: dict[int, list[np.ndarray]] = {}
    for hour, runs in tally.hourly_runs().items():
        hours.setdefault((hour - first) // step, []).extend(runs)
    found = [runs_quantiles(hours.get(slot, []), (0.5, 0.95)) for slot in range(len(buckets))]
    outcomes = totals["successes"] + totals["failures"]
    rates = [s / n if n else None for s, n in zip(totals["successes"], outcomes, strict=True)]
    return pl.DataFrame(
        {
            "bucket": buckets.astype("datetime64[us]"),
            **totals,
            "p50_ms": [None if q is None else q[0] for q in found],
            "p95_ms": [None if q is None else q[1] for q in found],
            "success_rate": rates,
        },
        schema=BUCKETS_SCHEMA,
    )


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def timeseries(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """The window's series in buckets sized to it (1 min for 60m, 15 min for 24h, …).

    Columns: bucket, requests, failures, retries, successes, p50_ms, p95_ms, success_rate.
    """
    return bucket_series(source, window, now, bucket_width(window))


def cost_by_persona(tally: Tally) -> list[dict[str, Any]]:
    """Replies, cost and unpriced replies per persona, the costliest first."""
    rows = [
        {
            "persona": persona,
            "replies": int(responses),
            "cost_usd": float(cost),
            "unpriced_replies": int(unpriced),
        }
        for persona, (responses, _, _, cost, unpriced) in tally.responses.items()
    ]
    return sorted(rows, key=lambda row: (-row["cost_usd"], -row["replies"], row["persona"]))


def _rate(successes: int, failures: int) -> float | None:
    return successes / (successes + failures) if successes + failures else None


def _by(tally: Tally, index: int) -> tuple[Counter[str], dict[str, list[int]]]:
    """Requests and [successes, failures] per model (``index`` 0) or persona (1)."""
    requests: Counter[str] = Counter()
    for key, count in tally.starts.items():
        requests[key[index]] += count
    outcomes: dict[str, list[int]] = {}
    for (*key, success), count in tally.outcomes.items():
        outcomes.setdefault(key[index], [0, 0])[0 if success else 1] += count
    return requests, outcomes


def _p95(tally: Tally, series: str, group: str) -> float | None:
    found = runs_quantiles(tally.runs_of(series, group), (0.95,))
    return None if found is None else found[0]


def model_breakdown(tally: Tally) -> pl.DataFrame:
    """Requests, outcomes and API p95 latency (``request_success``) per model."""
    requests, outcomes = _by(tally, 0)
    rows = []
    for model in requests.keys() | outcomes.keys():
        successes, failures = outcomes.get(model, (0, 0))
        if requests[model] or successes or failures:
            rows.append(
                {
                    "model": model,
                    "requests": requests[model],
                    "successes": successes,
                    "failures": failures,
                    "success_rate": _rate(successes, failures),
                    "api_p95_latency_ms": _p95(tally, API, model),
                }
            )
    frame = pl.DataFrame(rows, schema=BY_MODEL_SCHEMA)
    return frame.sort(["requests", "model"], descending=[True, False])


def persona_breakdown(tally: Tally) -> pl.DataFrame:
    """Requests and outcomes (by their start's persona) and responses with their latency per
    persona."""
    requests, outcomes = _by(tally, 1)
    rows = []
    for persona in requests.keys() | outcomes.keys() | tally.responses.keys():
        successes, failures = outcomes.get(persona, (0, 0))
        asked = bool(requests[persona] or successes or failures)
        count, latency_sum, latency_count, _, _ = tally.responses.get(persona, (0, 0, 0, 0, 0))
        rows.append(
            {
                "persona": persona,
                "requests": requests[persona],
                "successes": successes,
                "failures": failures,
                "success_rate": _rate(successes, failures) if asked else None,
                "responses": int(count),
                "p95_latency_ms": _p95(tally, RESPONSE, persona),
                "avg_latency_ms": latency_sum / latency_count if latency_count else None,
            }
        )
    frame = pl.DataFrame(rows, schema=BY_PERSONA_SCHEMA)
    order = (frame["responses"] + frame["requests"]).alias("_order")
    return (
        frame.with_columns(order)
        .sort(["_order", "persona"], descending=[True, False])
        .drop("_order")
    )


def errors_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``compute_metrics``' ``top_errors`` rows as a frame: ``error_type``, ``count``."""
    return pl.DataFrame(rows, schema={"error_type": pl.String, "count": pl.Int64})


def persona_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``compute_metrics``' ``by_persona`` rows as ``by_persona``'s frame."""
    return pl.DataFrame(rows, schema=BY_PERSONA_SCHEMA)


def by_persona(
    source: EventStore | EventSnapshot, window: timedelta, now: datetime
) -> pl.DataFrame:
    """Requests, outcomes and response latency per persona (``unknown`` when not logged)."""
    start, end = window_bounds(window, now)
    return persona_breakdown(window_tally(snapshot_of(source), start, end))
