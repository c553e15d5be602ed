"""Window metrics added up from per-part tallies: the same numbers as plain Python over the raw
lines and as the ``quantile_cont`` queries of before, requests whose start and outcome lie in
different parts joined, each part's tally stored once per traffic kind and reused by a new
process, and exact percentiles over sorted runs."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from nexus_core.analytics.breakdowns import timeseries
from nexus_core.analytics.exact import SAMPLE_STEP, quantiles, runs_quantiles
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.analytics.windows import bucket_width, parse_window, window_bounds
from nexus_core.ops.events import ApiEventLogger, log_files
from tests.test_analytics_metrics import (
    NOW,
    SetClock,
    assert_matches,
    expected_metrics,
    expected_minutes,
    write_jobs,
)
from tests.test_exact_percentiles import (
    OLD_BY_MODEL_SQL,
    OLD_BY_PERSONA_SQL,
    OLD_SUMMARY_SQL,
    _rounded_avg,
    duckdb_quantiles,
)

QS = (0.0, 0.001, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def split_sorted(values: np.ndarray, runs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``values`` cut at random places into ``runs`` runs (some empty), each sorted."""
    cuts = np.sort(rng.integers(0, len(values) + 1, runs - 1))
    return [np.sort(part) for part in np.split(rng.permutation(values), cuts)]


@pytest.mark.parametrize(
    ("size", "runs"), [(1, 1), (2, 2), (63, 3), (64, 2), (65, 9), (1_000, 40), (20_000, 200)]
)
def test_percentiles_over_sorted_runs_equal_those_of_all_values_together(
    size: int, runs: int
) -> None:
    rng = np.random.default_rng(size * 1000 + runs)
    values = np.round(rng.lognormal(7, 0.6, size), 1)  # one decimal: many ties
    parts = split_sorted(values, runs, rng)

    assert runs_quantiles(parts, QS) == quantiles(values, QS)
    assert runs_quantiles(parts, QS[2:6]) == duckdb_quantiles(values, QS[2:6])


@pytest.mark.parametrize(
    "values",
    [
        [5.0] * 3_000 + [1.0, 9.0],  # ties across every bracket
        [1.0] * 1_000 + [np.inf] * 50,
        [-np.inf, -3.5, 0.0, 0.0, 2.0, np.inf] * 300,
        list(range(SAMPLE_STEP * 5)),
    ],
)
def test_percentiles_over_runs_hold_with_ties_infinities_and_negatives(values: list[float]) -> None:
    array = np.array(values, dtype=float)
    parts = split_sorted(array, 7, np.random.default_rng(len(values)))

    assert runs_quantiles(parts, QS) == quantiles(array, QS)


def test_percentiles_of_runs_without_values_are_none() -> None:
    assert runs_quantiles([], QS) is None
    assert runs_quantiles([np.zeros(0), np.zeros(0)], QS) is None


def tally_files(cache: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.glob("tally-*")}


def write_month_log(tmp_path: Path, jobs: int) -> Path:
    """Three weeks of jobs rotated into many compacted parts (every one kept), and a live file."""
    log_path = tmp_path / "logs" / "api_events.log"
    start, span = NOW - timedelta(days=21), timedelta(days=21)
    write_jobs(log_path, random.Random(5), jobs, start, span, max_bytes=20_000, backups=1_000)
    return log_path


@pytest.fixture
def month_log(tmp_path: Path) -> Path:
    return write_month_log(tmp_path, jobs=900)


@pytest.mark.parametrize("window", ["30d", "8d", "37h", "90m"])
def test_window_metrics_from_stored_tallies_equal_the_raw_lines_and_the_queries_of_before(
    month_log: Path, tmp_path: Path, window: str
) -> None:
    span = parse_window(window)
    start, end = window_bounds(span, NOW)
    with EventStore(month_log, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh().of_traffic("user")
        metrics = compute_metrics(snapshot, window, NOW)
        (old,) = snapshot.records(OLD_SUMMARY_SQL, start, end)
        by_model = snapshot.records(OLD_BY_MODEL_SQL, start, end)
        by_persona = snapshot.records(OLD_BY_PERSONA_SQL, start, end)
        whole = [p for p in snapshot.pieces if p.parquet and start <= p.min_ts and p.max_ts < end]

    assert len(log_files(month_log)) > 20
    if span > timedelta(hours=2):
        assert len(whole) >= 2
        assert len(tally_files(tmp_path / "cache")) == 2 * len(whole)  # index + values
    assert_matches(metrics, expected_metrics(month_log, span, NOW))
    assert metrics["per_minute"] == expected_minutes(month_log, span, NOW)
    assert [metrics[f"p{p}_latency_ms"] for p in (50, 90, 95, 99)] == old["latency"]
    assert [metrics[f"ttft_p{p}_ms"] for p in (50, 90, 95, 99)] == old["ttft"]
    assert metrics["api_p95_latency_ms"] == old["api_p95"]
    assert metrics["by_model"] == by_model
    assert metrics["by_persona"] == _rounded_avg(by_persona, metrics["by_persona"])


def test_a_request_whose_start_and_outcome_lie_in_different_parts_counts_under_its_start(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    clock.now = NOW - timedelta(hours=5)
    with ApiEventLogger(log_path, max_bytes=2_000, clock=clock) as logger:
        for name, model in (("across", "rare-model"), ("failed-across", "rare-model")):
            logger.emit("request_start", request_id=name, model=model, persona="Rare")
        for index in range(60):  # other traffic: several rotations
            clock.now += timedelta(seconds=20)
            logger.emit("request_start", request_id=f"r{index}", model="common", persona="Usual")
            logger.emit("request_success", request_id=f"r{index}", latency_ms=100.0 + index)
        clock.now += timedelta(minutes=1)
        logger.emit("request_success", request_id="across", latency_ms=4321.0)
        logger.emit("request_failure", request_id="failed-across", latency_ms=10.0)
        # An outcome whose start lies before the window: ``unknown``, as in one query.
        clock.now = NOW - timedelta(minutes=30)
        logger.emit("request_start", request_id="early", model="rare-model", persona="Rare")
        for index in range(40):
            clock.now += timedelta(seconds=20)
            logger.emit("job_retry", job_id=f"j{index}", attempt=1, delay_ms=1.0)
        logger.emit("request_success", request_id="early", latency_ms=7.0)

    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        metrics = compute_metrics(snapshot, "6h", NOW)
        late = compute_metrics(snapshot, "20m", NOW)

    assert len(log_files(log_path)) > 4
    assert tally_files(tmp_path / "cache")  # whole parts were read from their tallies
    rows = {row["model"]: row for row in metrics["by_model"]}
    assert rows["rare-model"]["requests"] == 3  # "early" started inside the 6 hours
    assert (rows["rare-model"]["successes"], rows["rare-model"]["failures"]) == (2, 1)
    assert rows["rare-model"]["api_p95_latency_ms"] == pytest.approx(np.percentile([4321, 7], 95))
    assert "unknown" not in rows
    assert {row["model"]: row["successes"] for row in late["by_model"]} == {"unknown": 1}
    assert metrics["successes"] == 62 and metrics["failures"] == 1


def test_a_new_process_reads_the_stored_tallies_and_writes_none_again(
    month_log: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with EventStore(month_log, cache, segment_rows=64) as store:
        first = compute_metrics(store, "30d", NOW)
    stored = tally_files(cache)
    assert stored

    with EventStore(month_log, cache, segment_rows=64) as fresh:
        again = compute_metrics(fresh, "30d", NOW)

    assert again == first
    assert tally_files(cache) == stored


def test_a_half_written_tally_is_written_again_and_the_numbers_stay_right(
    month_log: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with EventStore(month_log, cache, segment_rows=64) as store:
        first = compute_metrics(store, "30d", NOW)
    index = sorted(cache.glob("tally-*.json"))[0]
    index.write_text(index.read_text()[:40])  # a process died mid-write without the rename
    values = sorted(cache.glob("tally-*.npy"))[1]
    values.write_bytes(b"not numpy")

    with EventStore(month_log, cache, segment_rows=64) as fresh:
        again = compute_metrics(fresh, "30d", NOW)

    assert again == first
    assert len(tally_files(cache)) == 2 * len(list(cache.glob("tally-*.json")))


def test_each_traffic_kind_has_its_own_tallies_and_those_of_deleted_parts_go(
    month_log: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with EventStore(month_log, cache, segment_rows=64, orphan_grace_seconds=0) as store:
        user = compute_metrics(store, "30d", NOW, traffic="user")
        per_kind = len(tally_files(cache))
        rotated = sorted(month_log.parent.glob("api_events.log.*"))
        rotated[-1].unlink()  # the oldest: its compacted part is deleted at once
        snapshot = store.refresh()
        compute_metrics(snapshot, "30d", NOW, traffic="all")  # writes new tallies, and sweeps

    assert user["requests"] > 0
    parts = {Path(p.source).stem for p in snapshot.pieces if p.parquet}
    stems = {p.name.removeprefix("tally-").rpartition("-")[0] for p in cache.glob("tally-*")}
    assert stems == parts
    assert len(tally_files(cache)) > per_kind  # the user tallies stay beside the new ones


BUCKETS_REFERENCE_SQL = """
WITH buckets AS (
    SELECT unnest(generate_series(
        time_bucket($width, $start::TIMESTAMP), $end::TIMESTAMP - INTERVAL 1 microsecond, $width
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
SELECT b.bucket, coalesce(g.requests, 0) AS requests, coalesce(g.failures, 0) AS failures,
    coalesce(g.retries, 0) AS retries, coalesce(g.successes, 0) AS successes, g.p50_ms, g.p95_ms,
    g.successes / nullif(g.successes + g.failures, 0) AS success_rate
FROM buckets AS b LEFT JOIN grouped AS g USING (bucket)
ORDER BY b.bucket
"""


@pytest.mark.parametrize(
    ("window", "now"),
    [("30d", NOW), ("7d", NOW - timedelta(hours=50, minutes=13)), ("3d", NOW)],
)
def test_chart_buckets_of_whole_hours_from_tallies_equal_one_query_over_the_events(
    month_log: Path, tmp_path: Path, window: str, now: datetime
) -> None:
    span = parse_window(window)
    width = bucket_width(span)
    start, end = window_bounds(span, now)
    with EventStore(month_log, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh().of_traffic("user")
        series = timeseries(snapshot, span, now)
        reference = snapshot.query(BUCKETS_REFERENCE_SQL, start, end, {"width": width})

    assert width >= timedelta(hours=1) and tally_files(tmp_path / "cache")
    assert series.schema == reference.schema
    assert series.to_dicts() == reference.to_dicts()
    assert series["requests"].sum() > 100


def test_personas_and_models_named_like_a_tallys_own_keys_are_counted_apart(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    clock.now = NOW - timedelta(hours=5)
    rng = random.Random(3)
    with ApiEventLogger(log_path, max_bytes=3_000, backups=1_000, clock=clock) as logger:
        for index in range(150):
            clock.now += timedelta(seconds=90)
            model, persona = rng.choice(["*", "None", "m"]), rng.choice(["*", "None", "", "P"])
            request, latency = f"r{index}", round(rng.lognormvariate(7, 0.5), 3)
            logger.emit("request_start", request_id=request, model=model, persona=persona)
            logger.emit("request_success", request_id=request, latency_ms=latency)
            logger.emit("job_success", job_id=f"j{index}", persona=persona, latency_ms=latency)
    start, end = window_bounds(timedelta(hours=6), NOW)

    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        metrics = compute_metrics(snapshot, "6h", NOW)
        (old,) = snapshot.records(OLD_SUMMARY_SQL, start, end)
        by_model = snapshot.records(OLD_BY_MODEL_SQL, start, end)
        by_persona = snapshot.records(OLD_BY_PERSONA_SQL, start, end)

    assert tally_files(tmp_path / "cache")
    assert [metrics[f"p{p}_latency_ms"] for p in (50, 90, 95, 99)] == old["latency"]
    assert metrics["by_model"] == by_model
    assert metrics["by_persona"] == _rounded_avg(by_persona, metrics["by_persona"])
    assert {row["persona"] for row in metrics["by_persona"]} == {"*", "None", "", "P"}


def test_a_tally_in_an_older_format_is_deleted_when_its_part_gets_a_new_one(
    month_log: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with EventStore(month_log, cache, segment_rows=64) as store:
        compute_metrics(store, "30d", NOW)
    current = tally_files(cache)
    index = sorted(cache.glob("tally-*.json"))[0]
    stale = index.with_name(index.name.rpartition("-")[0] + "-0123456789abcdef01234567.json")
    stale.write_text('{"version": 1}')
    stale.with_suffix(".npy").write_bytes(b"old runs")
    index.unlink()  # this part's tally is written again, in the current format

    with EventStore(month_log, cache, segment_rows=64) as fresh:
        compute_metrics(fresh, "30d", NOW)

    assert not stale.exists() and not stale.with_suffix(".npy").exists()
    assert set(tally_files(cache)) == set(current)
