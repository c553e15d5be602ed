"""Exact percentiles outside DuckDB, and the window metrics built on them, against the
``quantile_cont`` queries they replaced (run here over the same events) to the last bit."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from nexus_core.analytics.breakdowns import by_persona, persona_frame, timeseries
from nexus_core.analytics.exact import grouped_quantiles, quantiles
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.analytics.windows import window_bounds
from nexus_core.ops.events import log_files
from tests.test_analytics_metrics import NOW, write_jobs

QS = (0.5, 0.9, 0.95, 0.99)

# The queries of before (``quantile_cont``, a grouping by request_id): the reference.
OLD_SUMMARY_SQL = """
SELECT quantile_cont(latency_ms, [0.5, 0.9, 0.95, 0.99]) FILTER (WHERE event = 'job_success')
        AS latency,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE event = 'request_success') AS api_p95,
    quantile_cont(ttft_ms, [0.5, 0.9, 0.95, 0.99]) FILTER (WHERE event = 'request_success')
        AS ttft
FROM events
WHERE ts >= $start AND ts < $end
"""
OLD_BY_MODEL_SQL = """
WITH requests AS (
    SELECT coalesce(any_value(model) FILTER (WHERE event = 'request_start'), 'unknown') AS model,
        count(*) FILTER (WHERE event = 'request_start') AS starts,
        count(*) FILTER (WHERE event = 'request_success') AS successes,
        count(*) FILTER (WHERE event = 'request_failure') AS failures,
        any_value(latency_ms) FILTER (WHERE event = 'request_success') AS api_latency_ms
    FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure')
    GROUP BY request_id
)
SELECT model, sum(starts)::BIGINT AS requests, sum(successes)::BIGINT AS successes,
    sum(failures)::BIGINT AS failures,
    sum(successes) / nullif(sum(successes) + sum(failures), 0) AS success_rate,
    quantile_cont(api_latency_ms, 0.95) AS api_p95_latency_ms
FROM requests
GROUP BY model
ORDER BY requests DESC, model
"""
OLD_BY_PERSONA_SQL = """
WITH requests AS (
    SELECT coalesce(any_value(persona) FILTER (WHERE event = 'request_start'), 'unknown')
            AS persona,
        count(*) FILTER (WHERE event = 'request_start') AS starts,
        count(*) FILTER (WHERE event = 'request_success') AS successes,
        count(*) FILTER (WHERE event = 'request_failure') AS failures
    FROM events
    WHERE ts >= $start AND ts < $end
        AND event IN ('request_start', 'request_success', 'request_failure')
    GROUP BY request_id
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
OLD_BUCKETS_SQL = """
SELECT time_bucket(INTERVAL 15 minute, ts) AS bucket,
    quantile_cont(latency_ms, 0.5) FILTER (WHERE event = 'job_success') AS p50_ms,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE event = 'job_success') AS p95_ms
FROM events
WHERE ts >= $start AND ts < $end
GROUP BY 1
"""


def duckdb_quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float] | None:
    listed = "[" + ", ".join(str(q) for q in qs) + "]"
    column = [None if np.isnan(v) else float(v) for v in values]
    with duckdb.connect() as con:
        sql = f"SELECT quantile_cont(x, {listed}) FROM unnest($v::DOUBLE[]) AS t(x)"
        return con.execute(sql, {"v": column}).fetchall()[0][0]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100, 1001])
def test_quantiles_equal_duckdb_quantile_cont_to_the_last_bit(size: int) -> None:
    rng = np.random.default_rng(size)
    values = np.round(rng.lognormal(7, 0.6, size), 3)
    values[rng.random(size) < 0.2] = values[0]  # ties
    values[rng.random(size) < 0.1] = np.nan  # NULLs, left out

    assert quantiles(values, QS) == duckdb_quantiles(values, QS)


@pytest.mark.parametrize(
    "values",
    [[1.0, np.inf], [np.inf, np.inf], [3.0, 1.0, 2.0, np.inf, np.inf], [1e308, 1e308, np.inf]],
)
def test_an_infinite_latency_gives_what_quantile_cont_gives_instead_of_failing(
    values: list[float],
) -> None:
    """A log line with ``1e999`` or ``Infinity`` reads as an infinite latency."""
    array = np.array(values)

    assert quantiles(array, QS) == duckdb_quantiles(array, QS)
    codes = np.zeros(len(array), dtype=np.int64)
    assert grouped_quantiles(codes, array, QS) == {0: duckdb_quantiles(array, QS)}


def test_quantiles_of_no_value_are_none() -> None:
    assert quantiles(np.array([]), QS) is None
    assert quantiles(np.array([np.nan, np.nan]), QS) is None


def test_grouped_quantiles_equal_quantile_cont_per_group() -> None:
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 6, 5000)
    values = np.round(rng.lognormal(7, 0.6, 5000), 3)
    values[codes == 5] = np.nan  # a group without values is absent

    found = grouped_quantiles(codes, values, QS)

    assert set(found) == {0, 1, 2, 3, 4}
    for code, result in found.items():
        assert result == duckdb_quantiles(values[codes == code], QS)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    log_path = tmp_path / "logs" / "api_events.log"
    write_jobs(log_path, random.Random(21), 400, NOW - timedelta(hours=23), timedelta(hours=23))
    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as event_store:
        yield event_store


def test_window_metrics_equal_the_quantile_cont_queries_over_parts_and_the_live_log(
    store: EventStore,
) -> None:
    snapshot = store.refresh().of_traffic("user")
    assert len(log_files(store.log_path)) > 5  # several compacted parts …
    assert snapshot.hot_rows > 0  # … and the live file
    for window in (timedelta(minutes=60), timedelta(hours=6), timedelta(hours=24)):
        start, end = window_bounds(window, NOW)
        metrics = compute_metrics(snapshot, window, NOW)
        (old,) = snapshot.records(OLD_SUMMARY_SQL, start, end)

        assert [metrics[f"p{p}_latency_ms"] for p in (50, 90, 95, 99)] == old["latency"]
        assert [metrics[f"ttft_p{p}_ms"] for p in (50, 90, 95, 99)] == old["ttft"]
        assert metrics["api_p95_latency_ms"] == old["api_p95"]
        assert metrics["by_model"] == snapshot.records(OLD_BY_MODEL_SQL, start, end)
        assert metrics["by_persona"] == _rounded_avg(
            snapshot.records(OLD_BY_PERSONA_SQL, start, end), metrics["by_persona"]
        )


def _rounded_avg(old: list[dict], new: list[dict]) -> list[dict]:
    """The old rows with the new rows' means where they agree to 1e-9 (a mean's last bit
    depends on the order DuckDB sums in, not on this change)."""
    for before, after in zip(old, new, strict=True):
        if before["avg_latency_ms"] == pytest.approx(after["avg_latency_ms"], rel=1e-9):
            before["avg_latency_ms"] = after["avg_latency_ms"]
    return old


def test_dashboard_persona_and_series_percentiles_equal_quantile_cont(store: EventStore) -> None:
    snapshot = store.refresh().of_traffic("user")
    window = timedelta(hours=24)
    start, end = window_bounds(window, NOW)

    personas = by_persona(snapshot, window, NOW).to_dicts()
    series = timeseries(snapshot, window, NOW)

    assert personas == _rounded_avg(snapshot.records(OLD_BY_PERSONA_SQL, start, end), personas)
    old = {row["bucket"]: row for row in snapshot.records(OLD_BUCKETS_SQL, start, end)}
    assert len(old) > 20
    for row in series.iter_rows(named=True):
        before = old.get(row["bucket"], {"p50_ms": None, "p95_ms": None})
        assert (row["p50_ms"], row["p95_ms"]) == (before["p50_ms"], before["p95_ms"])


def test_the_dashboards_persona_panel_from_the_metrics_equals_by_persona(
    store: EventStore,
) -> None:
    snapshot = store.refresh().of_traffic("user")
    window = timedelta(hours=24)

    from_metrics = persona_frame(compute_metrics(snapshot, window, NOW)["by_persona"])
    queried = by_persona(snapshot, window, NOW)

    assert from_metrics.schema == queried.schema
    assert from_metrics.drop("avg_latency_ms").equals(queried.drop("avg_latency_ms"))
    for a, b in zip(from_metrics["avg_latency_ms"], queried["avg_latency_ms"], strict=True):
        assert a == pytest.approx(b, rel=1e-9)
