"""Adversarial cases for the window tallies: what one query over the window's raw events gives
must be what the tallies add up to, whatever the names, ids, values and window bounds."""

from __future__ import annotations

import os
import random
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from nexus_core.analytics.breakdowns import bucket_series
from nexus_core.analytics.exact import quantiles, runs_quantiles
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics, summary
from nexus_core.analytics.windows import parse_window, window_bounds
from nexus_core.ops.events import ApiEventLogger, log_files
from tests.test_analytics_metrics import NOW, SetClock
from tests.test_exact_percentiles import OLD_BY_MODEL_SQL, OLD_SUMMARY_SQL
from tests.test_tallies import BUCKETS_REFERENCE_SQL, write_month_log

COUNTS_SQL = """
SELECT count(*) FILTER (WHERE event = 'request_start') AS requests,
    count(*) FILTER (WHERE event = 'request_success') AS successes,
    count(*) FILTER (WHERE event = 'request_failure') AS failures,
    count(*) FILTER (WHERE event = 'job_retry') AS retries,
    count(*) FILTER (WHERE event = 'job_success') AS jobs_succeeded,
    avg(latency_ms) FILTER (WHERE event = 'job_success') AS avg_latency_ms
FROM events
WHERE ts >= $start AND ts < $end
"""


def write_personas(log_path: Path, personas: list[str], jobs: int = 120) -> None:
    """Jobs of the given personas (and models of the same names) over five hours, rotated
    often so most lie in whole compacted parts."""
    clock = SetClock()
    clock.now = NOW - timedelta(hours=5)
    rng = random.Random(11)
    with ApiEventLogger(log_path, max_bytes=3_000, backups=1_000, clock=clock) as logger:
        for index in range(jobs):
            clock.now += timedelta(seconds=137)
            name = personas[index % len(personas)]
            logger.emit("request_start", request_id=f"r{index}", model=name, persona=name)
            latency = round(rng.lognormvariate(6, 0.5), 1)
            logger.emit("request_success", request_id=f"r{index}", latency_ms=latency)
            logger.emit("job_success", job_id=f"j{index}", persona=name, latency_ms=latency + 5)


def test_a_persona_and_a_model_named_star_are_not_counted_twice_in_the_windows_percentiles(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    write_personas(log_path, ["*", "Usual"])
    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        for window in ("6h", "60m"):  # stored tallies, and one tally by SQL alone
            start, end = window_bounds(parse_window(window), NOW)
            metrics = compute_metrics(snapshot, window, NOW, traffic="all")
            (old,) = snapshot.records(OLD_SUMMARY_SQL, start, end)

            assert [metrics[f"p{p}_latency_ms"] for p in (50, 90, 95, 99)] == old["latency"]
            assert metrics["api_p95_latency_ms"] == old["api_p95"]
    assert len(log_files(log_path)) > 4


def test_a_request_id_logged_twice_counts_its_outcome_once_as_one_query_does(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    clock.now = NOW - timedelta(minutes=30)
    with ApiEventLogger(log_path, clock=clock) as logger:
        for _ in range(2):  # e.g. a log line replayed, or two hosts' ids alike
            logger.emit("request_start", request_id="twice", model="m", persona="P")
        clock.now += timedelta(seconds=1)
        logger.emit("request_success", request_id="twice", latency_ms=10.0)
    with EventStore(log_path, tmp_path / "cache") as store:
        snapshot = store.refresh()
        metrics = compute_metrics(snapshot, "60m", NOW, traffic="all")
        start, end = window_bounds(timedelta(hours=1), NOW)
        old = snapshot.records(OLD_BY_MODEL_SQL, start, end)

    assert metrics["successes"] == 1
    assert sum(row["successes"] for row in metrics["by_model"]) == metrics["successes"]
    assert metrics["by_model"] == old


def test_a_request_id_started_in_two_parts_counts_its_later_outcome_once(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    clock.now = NOW - timedelta(hours=3)
    with ApiEventLogger(log_path, max_bytes=2_000, backups=1_000, clock=clock) as logger:
        for stretch in range(3):
            if stretch < 2:
                logger.emit("request_start", request_id="dup", model="m", persona="P")
            else:
                logger.emit("request_success", request_id="dup", latency_ms=42.0)
            for index in range(30):  # other traffic: a rotation or more between them
                clock.now += timedelta(seconds=30)
                logger.emit("job_retry", job_id=f"j{stretch}-{index}", attempt=1, delay_ms=1.0)
    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        metrics = compute_metrics(snapshot, "6h", NOW, traffic="all")
        start, end = window_bounds(timedelta(hours=6), NOW)
        old = snapshot.records(OLD_BY_MODEL_SQL, start, end)

    assert len(log_files(log_path)) > 3
    assert metrics["successes"] == 1
    assert metrics["by_model"] == old
    assert [(r["model"], r["requests"], r["successes"]) for r in old] == [("m", 2, 1)]


@pytest.mark.xfail(
    strict=True,
    reason="found, not fixed: the tallies take NaN for a missing value; DuckDB sorts it last",
)
def test_a_nan_latency_in_a_log_line_counts_as_one_query_counts_it(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    clock.now = NOW - timedelta(minutes=30)
    with ApiEventLogger(log_path, clock=clock) as logger:
        for index, latency in enumerate([10.0, 20.0, float("nan"), 30.0]):
            clock.now += timedelta(seconds=1)
            logger.emit("job_success", job_id=f"j{index}", persona="P", latency_ms=latency)
    assert "NaN" in log_path.read_text()  # what json.dumps writes, and DuckDB reads as NaN
    with EventStore(log_path, tmp_path / "cache") as store:
        snapshot = store.refresh()
        start, end = window_bounds(timedelta(hours=1), NOW)
        metrics = compute_metrics(snapshot, "60m", NOW, traffic="all")
        (old,) = snapshot.records(OLD_SUMMARY_SQL, start, end)
        (counts,) = snapshot.records(COUNTS_SQL, start, end)

    got = [metrics[f"p{p}_latency_ms"] for p in (50, 90, 95, 99)]
    assert np.array_equal(got, old["latency"], equal_nan=True)
    assert np.array_equal([metrics["avg_latency_ms"]], [counts["avg_latency_ms"]], equal_nan=True)


@pytest.fixture
def month_log(tmp_path: Path) -> Path:
    return write_month_log(tmp_path, jobs=600)


@pytest.mark.parametrize(
    ("window", "width_hours", "now"),
    [
        ("7d", 2, NOW - timedelta(hours=50, minutes=13)),
        ("21d", 6, NOW),
        ("20d", 12, NOW - timedelta(minutes=7, seconds=3)),
        ("25d", 24, NOW),
        ("30d", 168, NOW),
        ("30d", 168, NOW - timedelta(days=3, hours=5)),
    ],
)
def test_buckets_of_several_hours_days_and_weeks_sit_where_time_bucket_puts_them(
    month_log: Path, tmp_path: Path, window: str, width_hours: int, now: datetime
) -> None:
    span, width = parse_window(window), timedelta(hours=width_hours)
    start, end = window_bounds(span, now)
    with EventStore(month_log, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        series = bucket_series(snapshot, span, now, width)
        reference = snapshot.query(BUCKETS_REFERENCE_SQL, start, end, {"width": width})

    assert series.to_dicts() == reference.to_dicts()


def test_windows_bounded_exactly_by_a_parts_first_and_last_event_count_every_event_once(
    month_log: Path, tmp_path: Path
) -> None:
    micro = timedelta(microseconds=1)
    with EventStore(month_log, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh().of_traffic("user")
        parts = [p for p in snapshot.pieces if p.parquet][:6]
        for part in parts:
            for start, end in [
                (part.min_ts, part.max_ts + micro),  # exactly the part: whole
                (part.min_ts, part.max_ts),  # its last event left out: cut
                (part.min_ts + micro, part.max_ts + micro),
                (part.min_ts - micro, part.max_ts + 2 * micro),
            ]:
                numbers = summary(snapshot, start, end)
                (old,) = snapshot.records(OLD_SUMMARY_SQL, start, end)
                (counts,) = snapshot.records(COUNTS_SQL, start, end)
                for key in ("requests", "successes", "failures", "retries", "jobs_succeeded"):
                    assert numbers[key] == counts[key], (key, start, end)
                latency = [numbers[f"p{p}_latency_ms"] for p in (50, 90, 95, 99)]
                assert latency == (old["latency"] or [None] * 4)
                assert numbers["avg_latency_ms"] == pytest.approx(counts["avg_latency_ms"])
    assert len(parts) == 6


def open_tally_files() -> int:
    """How many of the process's file descriptors are open on a tally's values."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        found += Path(target).name.startswith("tally-")
    return found


def test_stored_tallies_kept_for_the_next_refresh_hold_no_file_descriptor_per_part(
    month_log: Path, tmp_path: Path
) -> None:
    with EventStore(month_log, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        for traffic in ("user", "synthetic", "all"):
            compute_metrics(snapshot, "30d", NOW, traffic=traffic)
        held = open_tally_files()
        parts = sum(1 for p in snapshot.pieces if p.parquet)

    assert parts > 20
    assert held < parts, held  # not one per part and traffic kind, as long as the part lives


@pytest.mark.xfail(
    strict=True,
    reason="found, not fixed: a start matched in its part is not kept for a second outcome later",
)
def test_a_second_outcome_of_a_request_in_a_later_part_counts_under_its_start(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    clock.now = NOW - timedelta(hours=3)
    with ApiEventLogger(log_path, max_bytes=2_000, backups=1_000, clock=clock) as logger:
        logger.emit("request_start", request_id="again", model="m", persona="P")
        logger.emit("request_failure", request_id="again", error_type="timeout")
        for index in range(40):  # a rotation or more
            clock.now += timedelta(seconds=30)
            logger.emit("job_retry", job_id=f"j{index}", attempt=1, delay_ms=1.0)
        logger.emit("request_success", request_id="again", latency_ms=42.0)
    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as store:
        snapshot = store.refresh()
        metrics = compute_metrics(snapshot, "6h", NOW, traffic="all")
        start, end = window_bounds(timedelta(hours=6), NOW)
        old = snapshot.records(OLD_BY_MODEL_SQL, start, end)

    assert len(log_files(log_path)) > 2
    assert metrics["by_model"] == old


def test_percentiles_of_runs_where_most_values_tie_select_among_few_values() -> None:
    rng = np.random.default_rng(3)
    runs = []
    for _ in range(12):  # most latencies 0 (say, answers from a cache): one long tie
        values = np.round(rng.lognormal(7, 0.6, 100_000))
        runs.append(np.sort(np.where(rng.random(100_000) < 0.7, 0.0, values)))
    qs = (0.0, 0.5, 0.69, 0.7, 0.9, 0.95, 0.99, 1.0)
    expected = quantiles(np.concatenate(runs), qs)

    tracemalloc.start()
    try:
        found = runs_quantiles(runs, qs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert found == expected
    assert peak < sum(run.nbytes for run in runs) / 20  # not the tied values copied together
