"""SLO attainment, error budgets and multiwindow burn-rate alerts on constructed scenarios."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.analytics.rollups import window_sums
from nexus_core.analytics.slo import (
    LATENCY_TARGET_MS,
    SLO_COUNTS_SQL,
    SloCounts,
    burn_rate_alerts,
    slo_counts,
)
from nexus_core.ops.events import ApiEventLogger, read_events

NOW = datetime(2026, 11, 27, 12, 0, 0)
HEALTHY_MS = 800.0
SLOW_MS = 5_000.0


class SetClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "api_events.log"


@pytest.fixture
def store(log_path: Path, tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(log_path, tmp_path / "cache", segment_rows=512) as event_store:
        yield event_store


def write_traffic(
    path: Path,
    history: timedelta,
    *,
    per_minute: int = 2,
    fails: Callable[[int, datetime], bool] = lambda n, at: False,
    latency: Callable[[int, datetime], float] = lambda n, at: HEALTHY_MS,
) -> None:
    """Requests (and their responses) evenly spread over ``history`` before ``NOW``."""
    clock = SetClock()
    step = timedelta(minutes=1) / per_minute
    total = int(history / step)
    with ApiEventLogger(path, max_bytes=400_000, clock=clock) as logger:
        for n in range(total):
            at = NOW - history + n * step
            clock.now = at
            logger.emit("request_start", request_id=f"r{n}", attempt=1, model="m")
            if fails(n, at):
                logger.emit(
                    "request_failure",
                    request_id=f"r{n}",
                    attempt=1,
                    latency_ms=50.0,
                    status_code=503,
                    error_type="http_503",
                    retryable=True,
                )
            else:
                logger.emit("request_success", request_id=f"r{n}", attempt=1, latency_ms=300.0)
                logger.emit("job_success", job_id=f"j{n}", latency_ms=latency(n, at), attempts=1)


def rule(alerts: dict[str, Any], slo: str, long_window: str) -> dict[str, Any]:
    return next(r for r in alerts["rules"] if r["slo"] == slo and r["long_window"] == long_window)


def test_healthy_traffic_is_ok_with_zero_burn(log_path: Path, store: EventStore) -> None:
    write_traffic(log_path, timedelta(hours=6))

    alerts = burn_rate_alerts(store, NOW)

    assert alerts["state"] == "ok"
    assert not any(r["firing"] for r in alerts["rules"])
    assert rule(alerts, "success", "60m")["long_burn_rate"] == 0.0


def test_no_events_is_ok_with_no_rates(store: EventStore) -> None:
    alerts = burn_rate_alerts(store, NOW)

    assert alerts["state"] == "ok"
    assert all(r["long_burn_rate"] is None and not r["firing"] for r in alerts["rules"])


def test_a_sharp_total_outage_for_ten_minutes_pages(log_path: Path, store: EventStore) -> None:
    outage_from = NOW - timedelta(minutes=10)
    write_traffic(log_path, timedelta(hours=3), fails=lambda n, at: at >= outage_from)

    alerts = burn_rate_alerts(store, NOW)

    assert alerts["state"] == "page"
    assert alerts["by_slo"] == {"latency": "ok", "success": "page"}
    fast = rule(alerts, "success", "60m")
    assert fast["firing"]
    assert fast["short_burn_rate"] == pytest.approx(1 / 0.005)
    assert fast["long_burn_rate"] == pytest.approx(20 / 120 / 0.005)


def test_a_slow_one_percent_error_rate_over_three_days_opens_a_ticket_not_a_page(
    log_path: Path, store: EventStore
) -> None:
    write_traffic(log_path, timedelta(days=3, hours=1), fails=lambda n, at: n % 100 == 99)

    alerts = burn_rate_alerts(store, NOW)

    assert alerts["state"] == "ticket"
    slow = rule(alerts, "success", "3d")
    assert slow["firing"]
    assert slow["long_burn_rate"] == pytest.approx(2.0, rel=0.02)
    assert not rule(alerts, "success", "60m")["firing"]
    assert not rule(alerts, "success", "6h")["firing"]


def test_an_outage_that_ended_stops_paging_once_the_short_window_is_clean(
    log_path: Path, store: EventStore
) -> None:
    def fails(n: int, at: datetime) -> bool:
        return NOW - timedelta(minutes=30) <= at < NOW - timedelta(minutes=20)

    write_traffic(log_path, timedelta(hours=6), fails=fails)

    alerts = burn_rate_alerts(store, NOW)

    fast = rule(alerts, "success", "60m")
    assert fast["long_burn_rate"] > 14.4 and fast["short_burn_rate"] == 0.0
    assert alerts["by_slo"]["success"] != "page"


def test_a_one_minute_spike_does_not_page(log_path: Path, store: EventStore) -> None:
    def fails(n: int, at: datetime) -> bool:
        return NOW - timedelta(minutes=31) <= at < NOW - timedelta(minutes=30)

    write_traffic(log_path, timedelta(hours=6), fails=fails)

    assert burn_rate_alerts(store, NOW)["state"] == "ok"


def test_slow_responses_for_most_of_an_hour_page_on_latency(
    log_path: Path, store: EventStore
) -> None:
    slow_from = NOW - timedelta(minutes=50)
    write_traffic(
        log_path,
        timedelta(hours=3),
        latency=lambda n, at: SLOW_MS if at >= slow_from else HEALTHY_MS,
    )

    alerts = burn_rate_alerts(store, NOW)

    assert alerts["by_slo"] == {"latency": "page", "success": "ok"}
    assert rule(alerts, "latency", "60m")["long_burn_rate"] == pytest.approx(100 / 120 / 0.05)


def test_slo_counts_burn_and_budget_follow_their_definitions() -> None:
    counts = SloCounts(valid=1000, bad=2)

    assert counts.good == 998
    assert counts.attainment() == pytest.approx(0.998)
    assert counts.burn_rate(0.995) == pytest.approx(0.4)
    assert counts.budget_remaining(0.995) == pytest.approx(0.6)
    assert SloCounts(valid=100, bad=10).budget_remaining(0.995) == pytest.approx(-19.0)
    assert SloCounts(valid=0, bad=0).burn_rate(0.995) is None


def test_slo_section_matches_numpy_over_the_window_and_the_thirty_day_period(
    log_path: Path, store: EventStore
) -> None:
    rng = random.Random(4)
    write_traffic(
        log_path,
        timedelta(days=2),
        per_minute=1,
        fails=lambda n, at: rng.random() < 0.01,
        latency=lambda n, at: rng.lognormvariate(7.3, 0.5),
    )
    events, _ = read_events(log_path)

    slo = compute_metrics(store, "24h", NOW)["slo"]

    def numbers(since: datetime) -> tuple[np.ndarray, np.ndarray]:
        chosen = [e for e in events if e["ts"] >= since.isoformat(timespec="milliseconds")]
        latencies = np.array([e["latency_ms"] for e in chosen if e["event"] == "job_success"])
        outcomes = np.array(
            [
                e["event"] == "request_failure"
                for e in chosen
                if e["event"].startswith("request_") and e["event"] != "request_start"
            ]
        )
        return latencies, outcomes

    latencies, failed = numbers(NOW - timedelta(hours=24))
    all_latencies, all_failed = numbers(NOW - timedelta(days=30))
    slow = latencies >= LATENCY_TARGET_MS
    assert slo["latency"]["attainment"] == pytest.approx(1 - slow.mean())
    assert slo["latency"]["burn_rate"] == pytest.approx(slow.mean() / 0.05)
    assert slo["latency"]["met"] == (1 - slow.mean() >= 0.95)
    assert slo["latency"]["error_budget_remaining"] == pytest.approx(
        1 - (all_latencies >= LATENCY_TARGET_MS).sum() / (0.05 * all_latencies.size)
    )
    assert slo["success"]["attainment"] == pytest.approx(1 - failed.mean())
    assert slo["success"]["error_budget_remaining"] == pytest.approx(
        1 - all_failed.sum() / (0.005 * all_failed.size)
    )
    # What the 24 h used of the 30-day budget: its own bad events over the period's allowance.
    assert slo["latency"]["error_budget_spent_in_window"] == pytest.approx(
        slow.sum() / (0.05 * all_latencies.size)
    )
    assert slo["success"]["error_budget_spent_in_window"] == pytest.approx(
        failed.sum() / (0.005 * all_failed.size)
    )


def test_a_clean_hour_beside_an_overspent_budget_used_none_of_it(
    log_path: Path, store: EventStore
) -> None:
    write_traffic(
        log_path,
        timedelta(days=2),
        per_minute=1,
        fails=lambda n, at: at < NOW - timedelta(hours=3) and n % 50 == 0,
    )
    hour = compute_metrics(store, "60m", NOW)["slo"]["success"]
    assert hour["burn_rate"] == 0 and hour["error_budget_remaining"] < 0
    assert hour["error_budget_spent_in_window"] == 0
    period = compute_metrics(store, "30d", NOW)["slo"]["success"]
    assert period["error_budget_spent_in_window"] == pytest.approx(
        1 - period["error_budget_remaining"]
    )


def test_window_sums_are_exact_at_any_boundary_across_pieces(
    log_path: Path, store: EventStore
) -> None:
    rng = random.Random(8)
    write_traffic(log_path, timedelta(hours=10), per_minute=7, fails=lambda n, at: n % 13 == 0)
    events, _ = read_events(log_path)
    stamps = [e["ts"] for e in events if e["event"] == "request_failure"]
    snapshot = store.refresh()
    assert len(snapshot.pieces) > 3
    starts = [
        NOW - timedelta(seconds=rng.randint(1, 36_000), milliseconds=rng.randint(0, 999))
        for _ in range(6)
    ]
    starts += [
        NOW - timedelta(hours=2),
        datetime.fromisoformat(stamps[40][:-1]),
    ]  # aligned; on an event
    end = NOW - timedelta(minutes=3, milliseconds=1)

    sums = window_sums(snapshot, SLO_COUNTS_SQL, starts, end, {"latency_target_ms": 3000})

    for start, got in zip(starts, sums, strict=True):
        since, until = (m.isoformat(timespec="milliseconds") for m in (start, end))
        assert got["success_bad"] == sum(since <= ts < until for ts in stamps), start
    assert slo_counts(snapshot, starts[0], end)["success"].bad == sums[0]["success_bad"]


def rollup_files_on_disk(cache: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.glob("rollup-*")}


def test_a_new_store_sums_from_the_stored_per_minute_totals_without_scanning_again(
    log_path: Path, store: EventStore, tmp_path: Path
) -> None:
    write_traffic(log_path, timedelta(hours=10), per_minute=7, fails=lambda n, at: n % 13 == 0)
    stamps = [e["ts"] for e in read_events(log_path)[0] if e["event"] == "request_failure"]
    starts = [NOW - timedelta(hours=9, seconds=17), NOW - timedelta(hours=2)]
    end = NOW - timedelta(seconds=5)
    params = {"latency_target_ms": 3000}
    first = window_sums(store.refresh(), SLO_COUNTS_SQL, starts, end, params)
    stored = rollup_files_on_disk(tmp_path / "cache")
    assert len(stored) == len(store.refresh().pieces)

    with EventStore(log_path, tmp_path / "cache", segment_rows=512) as fresh:
        again = window_sums(fresh.refresh(), SLO_COUNTS_SQL, starts, end, params)

    assert again == first
    assert rollup_files_on_disk(tmp_path / "cache") == stored  # read, not written again
    for start, got in zip(starts, again, strict=True):
        since, until = (m.isoformat(timespec="milliseconds") for m in (start, end))
        assert got["success_bad"] == sum(since <= ts < until for ts in stamps)


def test_stored_totals_of_deleted_pieces_go_when_new_totals_are_written(
    log_path: Path, tmp_path: Path
) -> None:
    write_traffic(log_path, timedelta(hours=10), per_minute=7)
    cache = tmp_path / "cache"
    with EventStore(log_path, cache, segment_rows=512, orphan_grace_seconds=0) as store:
        slo_counts(store, NOW - timedelta(days=1), NOW)
        rotated = sorted(log_path.parent.glob("api_events.log.*"))
        rotated[-1].unlink()  # the oldest
        snapshot = store.refresh()  # its compacted part is deleted at once (no grace)

        window_sums(
            snapshot, SLO_COUNTS_SQL, [NOW - timedelta(days=1)], NOW, {"latency_target_ms": 1000}
        )

    pieces = {Path(p.source).stem for p in snapshot.pieces}
    stems = {p.name.removeprefix("rollup-").rpartition("-")[0] for p in cache.glob("rollup-*")}
    assert stems == pieces
