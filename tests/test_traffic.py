"""SLOs measure what users feel: synthetic traffic (comparisons, test sets, evaluations) is left
out of the dashboard's numbers, SLOs and alerts by default, on generated logs with and without it
— including history old enough to be compacted and read through per-minute rollups."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.app_context import AppContext
from nexus_core.errors import ValidationError
from nexus_core.ops.events import ApiEventLogger, EventName
from nexus_core.workbench.sandbox import Workbench

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
MAX_BYTES = 40_000  # small files: most of the history is rotated and compacted


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime:
        return self.at


def user_job(log: ApiEventLogger, rng: random.Random, *, fail: bool = False) -> None:
    request = str(uuid.uuid4())
    log.emit(EventName.REQUEST_START, request_id=request, attempt=1, persona="P", model="m")
    if fail:
        log.emit(EventName.REQUEST_FAILURE, request_id=request, attempt=1, error_type="http_503")
        log.emit(EventName.JOB_FAILURE, job_id=request, attempts=1, error_type="http_503")
        return
    latency = rng.uniform(500, 2500)
    log.emit(EventName.REQUEST_SUCCESS, request_id=request, attempt=1, latency_ms=latency - 50)
    log.emit(EventName.JOB_SUCCESS, job_id=request, latency_ms=latency, persona="P", channel="chat")


def synthetic_job(log: ApiEventLogger, channel: str) -> None:
    """A failing comparison or test-set job: slow, failed and retried, marked by its run."""
    run = {"run_id": f"run-{channel}"}
    request = str(uuid.uuid4())
    log.emit(EventName.REQUEST_START, request_id=request, attempt=1, persona="T", **run)
    log.emit(EventName.REQUEST_FAILURE, request_id=request, attempt=1, error_type="http_500", **run)
    log.emit(EventName.JOB_RETRY, job_id=request, attempt=1, delay_ms=10, **run)
    log.emit(EventName.JOB_FAILURE, job_id=request, attempts=4, error_type="http_500", **run)
    log.emit(EventName.JOB_SUCCESS, job_id=request, latency_ms=60_000, channel=channel, **run)


def write_log(
    path: Path, *, synthetic: bool, user_failures_now: bool = False, seed: int = 5
) -> None:
    """Three days of user traffic (one job every 5 minutes, some failures), with or without a
    failing synthetic job beside every user job; ``user_failures_now``: users fail in the last
    10 minutes."""
    rng, clock = random.Random(seed), Clock()
    with ApiEventLogger(path, max_bytes=MAX_BYTES, backups=1000, clock=clock) as log:
        for step in range(3 * 24 * 12, 0, -1):
            clock.at = NOW - timedelta(minutes=5 * step) + timedelta(seconds=1)
            recent = step <= 2
            user_job(log, rng, fail=(rng.random() < 0.002) or (user_failures_now and recent))
            if synthetic:
                clock.at += timedelta(seconds=30)
                synthetic_job(log, "test_set" if step % 2 else "compare")
        if user_failures_now:
            for second in range(0, 240, 4):
                clock.at = NOW - timedelta(seconds=second + 1)
                user_job(log, rng, fail=True)
        if synthetic:
            for second in range(0, 240, 2):  # a broken test-set run right now
                clock.at = NOW - timedelta(seconds=second + 1)
                synthetic_job(log, "test_set")


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, EventStore]]:
    made = {}
    for name, synthetic in (("plain", False), ("mixed", True)):
        path = tmp_path / name / "logs" / "api_events.log"
        path.parent.mkdir(parents=True)
        write_log(path, synthetic=synthetic)
        made[name] = EventStore(path, tmp_path / name / "cache")
    yield made
    for store in made.values():
        store.close()


CONTRACT_NUMBERS = (
    "requests",
    "successes",
    "failures",
    "retries",
    "success_rate",
    "p95_latency_ms",
    "avg_latency_ms",
    "api_p95_latency_ms",
    "top_errors",
    "per_minute",
)


def same(a: object, b: object) -> bool:
    """Equal, floats to the last few bits (a sum's order may differ between the two logs)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12)
    return a == b


@pytest.mark.parametrize("window", ["60m", "24h", "7d"])
def test_user_numbers_of_a_mixed_log_equal_those_of_the_log_without_synthetic_events(
    stores: dict[str, EventStore], window: str
) -> None:
    plain = compute_metrics(stores["plain"], window, NOW)
    mixed = compute_metrics(stores["mixed"], window, NOW)  # user traffic by default
    assert mixed["traffic"] == "user"
    assert plain["requests"] > 0
    for key in CONTRACT_NUMBERS:
        assert same(mixed[key], plain[key]), key
    for slo in ("latency", "success"):
        for key in ("valid", "good", "attainment", "error_budget_remaining", "burn_rate"):
            assert same(mixed["slo"][slo][key], plain["slo"][slo][key]), (slo, key)
    assert mixed["slo"]["alerts"] == plain["slo"]["alerts"]


def test_all_counts_every_event_and_synthetic_only_the_runs(stores: dict[str, EventStore]) -> None:
    user = compute_metrics(stores["mixed"], "24h", NOW, traffic="user")
    every = compute_metrics(stores["mixed"], "24h", NOW, traffic="all")
    synthetic = compute_metrics(stores["mixed"], "24h", NOW, traffic="synthetic")
    assert synthetic["requests"] > 0 and synthetic["successes"] == 0
    assert every["requests"] == user["requests"] + synthetic["requests"]
    assert every["failures"] == user["failures"] + synthetic["failures"]
    assert every["retries"] == synthetic["retries"] and user["retries"] == 0
    assert every["success_rate"] < user["success_rate"]


def test_a_failing_test_set_run_fires_no_alert_but_failing_users_do(
    tmp_path: Path, stores: dict[str, EventStore]
) -> None:
    assert compute_metrics(stores["mixed"], "60m", NOW)["slo"]["alerts"]["state"] == "ok"
    assert (
        compute_metrics(stores["mixed"], "60m", NOW, traffic="all")["slo"]["alerts"]["state"]
        == "page"
    )
    path = tmp_path / "users-fail" / "logs" / "api_events.log"
    path.parent.mkdir(parents=True)
    write_log(path, synthetic=True, user_failures_now=True)
    with EventStore(path, tmp_path / "users-fail" / "cache") as store:
        assert compute_metrics(store, "60m", NOW)["slo"]["alerts"]["state"] == "page"


def test_an_unknown_traffic_kind_is_refused(stores: dict[str, EventStore]) -> None:
    with pytest.raises(ValidationError, match="user, synthetic, all"):
        compute_metrics(stores["plain"], "60m", NOW, traffic="bots")


def test_the_workbench_events_view_marks_each_event_user_or_synthetic(ctx: AppContext) -> None:
    ctx.init()
    with ApiEventLogger(ctx.settings.event_log_path) as log:
        user_job(log, random.Random(1))
        synthetic_job(log, "compare")
    with Workbench(ctx.settings, ctx.db) as workbench:
        result = workbench.run(
            "SELECT traffic, count(*) AS n FROM events GROUP BY traffic ORDER BY traffic",
            include_message_content=False,
        )
    assert result.frame.rows() == [("synthetic", 5), ("user", 3)]
