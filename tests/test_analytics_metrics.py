"""Window metrics against values computed independently with numpy from ``read_events``."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nexus_core.analytics.breakdowns import by_persona, errors_frame
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import (
    compute_metrics,
    parse_window,
    timeseries,
    window_numbers,
)
from nexus_core.errors import ValidationError
from nexus_core.ops.events import (
    DEFAULT_BACKUPS,
    ApiEventLogger,
    format_ts,
    log_files,
    read_events,
)

NOW = datetime(2026, 11, 27, 12, 0, 30, 250_000)
CONTRACT_KEYS = [
    "window",
    "now",
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
    "skipped_lines",
    "slo",
]
MODELS = ("flash", "pro", None)
PERSONAS = ("Analyst", "Coder", None)
ERRORS = ("http_503", "timeout", "http_429", None)


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
    with EventStore(log_path, tmp_path / "cache", segment_rows=64) as event_store:
        yield event_store


def write_jobs(
    path: Path,
    rng: random.Random,
    jobs: int,
    start: datetime,
    span: timedelta,
    max_bytes: int = 6_000,
    backups: int = DEFAULT_BACKUPS,
) -> None:
    """Random AI jobs (retries, failures, models, personas) and some garbage, rotated often
    (rotated files past ``backups`` are dropped, as the app's logger does)."""
    clock = SetClock()
    moments = sorted(start + span * rng.random() for _ in range(jobs))
    with ApiEventLogger(path, max_bytes=max_bytes, backups=backups, clock=clock) as logger:
        for index, at in enumerate(moments):
            clock.now = at
            job, persona, model = f"j{index}", rng.choice(PERSONAS), rng.choice(MODELS)
            logger.emit("job_enqueued", job_id=job)
            for attempt in range(1, 4):
                clock.now += timedelta(milliseconds=rng.randint(1, 900))
                request = f"{job}-{attempt}"
                logger.emit(
                    "request_start",
                    request_id=request,
                    attempt=attempt,
                    model=model,
                    provider="gemini",
                    **({"persona": persona} if persona else {}),
                )
                latency = round(rng.lognormvariate(7, 0.6), 3)
                if rng.random() < 0.75:
                    ttft = round(latency / 3, 3) if rng.random() < 0.8 else None
                    logger.emit(
                        "request_success",
                        request_id=request,
                        attempt=attempt,
                        latency_ms=latency,
                        status_code=200,
                        ttft_ms=ttft,
                    )
                    logger.emit(
                        "job_success",
                        job_id=job,
                        latency_ms=latency + 20,
                        attempts=attempt,
                        **({"persona": persona} if persona else {}),
                    )
                    break
                error = rng.choice(ERRORS)
                logger.emit(
                    "request_failure",
                    request_id=request,
                    attempt=attempt,
                    latency_ms=latency,
                    status_code=503,
                    error_type=error,
                    retryable=True,
                )
                logger.emit(
                    "job_retry", job_id=job, attempt=attempt, delay_ms=1000.0, error_type=error
                )
            if rng.random() < 0.03:
                with path.open("ab") as fh:
                    fh.write(b"this is not json\n")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def events_in(path: Path, start: datetime, end: datetime) -> list[dict[str, Any]]:
    events, _ = read_events(path)
    return [e for e in events if start <= parse_ts(e["ts"]) < end]


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.array(values), q)) if values else None


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def expected_metrics(path: Path, window: timedelta, now: datetime) -> dict[str, Any]:
    """The contract's numbers, computed with plain Python and numpy."""
    window_events = events_in(path, now - window, now)
    latencies = [e["latency_ms"] for e in named(window_events, "job_success")]
    api = [e["latency_ms"] for e in named(window_events, "request_success")]
    ttft = [e["ttft_ms"] for e in named(window_events, "request_success") if e.get("ttft_ms")]
    successes = len(named(window_events, "request_success"))
    failures = len(named(window_events, "request_failure"))
    errors = Counter(
        e.get("error_type") or "unknown" for e in named(window_events, "request_failure")
    )
    return {
        "requests": len(named(window_events, "request_start")),
        "successes": successes,
        "failures": failures,
        "retries": len(named(window_events, "job_retry")),
        "success_rate": successes / (successes + failures) if successes + failures else None,
        "p95_latency_ms": pct(latencies, 95),
        "avg_latency_ms": float(np.mean(latencies)) if latencies else None,
        "api_p95_latency_ms": pct(api, 95),
        "p50_latency_ms": pct(latencies, 50),
        "p90_latency_ms": pct(latencies, 90),
        "p99_latency_ms": pct(latencies, 99),
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p95_ms": pct(ttft, 95),
        "top_errors": [
            {"error_type": k, "count": v}
            for k, v in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        ],
        "skipped_lines": read_events(path)[1],
    }


def expected_minutes(path: Path, window: timedelta, now: datetime) -> list[dict[str, Any]]:
    start = now - window
    minute = start.replace(second=0, microsecond=0)
    counts: dict[datetime, Counter[str]] = {}
    while minute < now:
        counts[minute] = Counter()
        minute += timedelta(minutes=1)
    for event in events_in(path, start, now):
        counts[parse_ts(event["ts"]).replace(second=0, microsecond=0)][event["event"]] += 1
    return [
        {
            "minute": format_ts(m),
            "requests": c["request_start"],
            "failures": c["request_failure"],
            "retries": c["job_retry"],
        }
        for m, c in counts.items()
    ]


def assert_matches(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if isinstance(value, float):
            assert actual[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert actual[key] == value, key


@pytest.mark.parametrize("window", ["60m", "24h", "7d"])
def test_metrics_match_numpy_on_a_rotated_log_with_garbage(
    log_path: Path, store: EventStore, window: str
) -> None:
    write_jobs(log_path, random.Random(7), 400, NOW - timedelta(days=2), timedelta(days=2))
    assert len(log_files(log_path)) > 5

    metrics = compute_metrics(store, window, NOW)

    assert_matches(metrics, expected_metrics(log_path, parse_window(window), NOW))
    if window == "60m":
        assert metrics["per_minute"] == expected_minutes(log_path, parse_window(window), NOW)


def test_the_window_before_is_compared_on_the_same_numbers_and_slo_as_compute_metrics(
    log_path: Path, store: EventStore
) -> None:
    write_jobs(log_path, random.Random(11), 300, NOW - timedelta(days=2), timedelta(days=2))
    before = NOW - timedelta(hours=6)

    numbers = window_numbers(store, "6h", before)
    full = compute_metrics(store, "6h", before)

    assert numbers["requests"] > 0 and numbers["slo"]
    assert numbers == {key: full[key] for key in numbers}
    expected = expected_metrics(log_path, timedelta(hours=6), before)
    assert_matches(numbers, {key: expected[key] for key in expected if key in numbers})


def test_metrics_json_has_the_contract_keys_first_and_serialises(
    log_path: Path, store: EventStore
) -> None:
    write_jobs(log_path, random.Random(1), 50, NOW - timedelta(minutes=50), timedelta(minutes=50))

    metrics = compute_metrics(store, parse_window("60m"), NOW)

    assert list(metrics)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    assert metrics["window"] == "60m"
    assert metrics["now"] == "2026-11-27T12:00:30.250Z"
    assert set(metrics["slo"]) >= {"latency", "success", "alerts"}
    assert {"p50_latency_ms", "ttft_p95_ms", "by_model", "by_persona"} <= set(metrics)
    json.loads(json.dumps(metrics))


def test_window_counts_an_event_at_its_start_and_not_one_at_now(
    log_path: Path, store: EventStore
) -> None:
    clock = SetClock()
    with ApiEventLogger(log_path, clock=clock) as logger:
        for at, latency in ((NOW - timedelta(hours=1), 100.0), (NOW, 99_999.0)):
            clock.now = at
            logger.emit("request_start", request_id=f"r{latency}", attempt=1, model="m")
            logger.emit("job_success", job_id=f"j{latency}", latency_ms=latency, attempts=1)

    metrics = compute_metrics(store, "60m", NOW)

    assert metrics["requests"] == 1
    assert metrics["p95_latency_ms"] == 100.0
    assert metrics["per_minute"][0]["requests"] == 1


@pytest.mark.parametrize("create_file", [False, True])
def test_an_empty_log_gives_zero_counts_and_null_rates(
    log_path: Path, store: EventStore, create_file: bool
) -> None:
    if create_file:
        log_path.parent.mkdir(parents=True)
        log_path.touch()

    metrics = compute_metrics(store, "60m", NOW)

    assert (metrics["requests"], metrics["failures"], metrics["skipped_lines"]) == (0, 0, 0)
    assert metrics["success_rate"] is None
    assert metrics["p95_latency_ms"] is None
    assert metrics["top_errors"] == []
    assert len(metrics["per_minute"]) == 61  # 11:00:30 … 12:00:30 touches 61 minutes
    assert all(m["requests"] == 0 for m in metrics["per_minute"])
    assert metrics["slo"]["latency"]["attainment"] is None
    assert metrics["slo"]["alerts"]["state"] == "ok"


def test_a_window_spanning_compacted_and_live_events_counts_both(
    log_path: Path, store: EventStore
) -> None:
    rng = random.Random(3)
    write_jobs(log_path, rng, 60, NOW - timedelta(minutes=50), timedelta(minutes=25))
    compute_metrics(store, "60m", NOW)  # compacts the rotated files, reads the live one
    write_jobs(log_path, rng, 60, NOW - timedelta(minutes=25), timedelta(minutes=25))

    metrics = compute_metrics(store, "60m", NOW)

    assert_matches(metrics, expected_metrics(log_path, timedelta(hours=1), NOW))
    assert store.refresh().pieces, "some of the window must come from compacted files"


def test_by_model_joins_outcomes_to_their_request_start(log_path: Path, store: EventStore) -> None:
    write_jobs(log_path, random.Random(5), 120, NOW - timedelta(minutes=50), timedelta(minutes=50))
    events = events_in(log_path, NOW - timedelta(hours=1), NOW)
    model_of = {
        e["request_id"]: e.get("model") or "unknown" for e in named(events, "request_start")
    }

    metrics = compute_metrics(store, "60m", NOW)

    rows = {row["model"]: row for row in metrics["by_model"]}
    for model in {"flash", "pro", "unknown"}:
        starts = [e for e in named(events, "request_start") if model_of[e["request_id"]] == model]
        ok = [e for e in named(events, "request_success") if model_of[e["request_id"]] == model]
        failed = [e for e in named(events, "request_failure") if model_of[e["request_id"]] == model]
        assert rows[model]["requests"] == len(starts)
        assert rows[model]["successes"] == len(ok)
        assert rows[model]["failures"] == len(failed)
        assert rows[model]["api_p95_latency_ms"] == pytest.approx(
            pct([e["latency_ms"] for e in ok], 95)
        )


def test_by_persona_groups_responses_without_a_persona_as_unknown(
    log_path: Path, store: EventStore
) -> None:
    write_jobs(log_path, random.Random(11), 120, NOW - timedelta(minutes=50), timedelta(minutes=50))
    responses = named(events_in(log_path, NOW - timedelta(hours=1), NOW), "job_success")

    frame = by_persona(store, timedelta(hours=1), NOW)

    rows = {row["persona"]: row for row in frame.to_dicts()}
    assert set(rows) == {"Analyst", "Coder", "unknown"}
    for persona, row in rows.items():
        mine = [e["latency_ms"] for e in responses if (e.get("persona") or "unknown") == persona]
        assert row["responses"] == len(mine)
        assert row["p95_latency_ms"] == pytest.approx(pct(mine, 95))


def test_timeseries_buckets_are_sized_to_the_window_and_match_numpy(
    log_path: Path, store: EventStore
) -> None:
    write_jobs(log_path, random.Random(9), 300, NOW - timedelta(hours=23), timedelta(hours=23))

    frame = timeseries(store, timedelta(hours=24), NOW)

    assert frame.columns == [
        "bucket",
        "requests",
        "failures",
        "retries",
        "successes",
        "p50_ms",
        "p95_ms",
        "success_rate",
    ]
    assert frame.height == 97  # 15-minute buckets; the first is cut by the window's start
    events = events_in(log_path, NOW - timedelta(hours=24), NOW)
    for row in frame.iter_rows(named=True):
        inside = [
            e
            for e in events
            if row["bucket"] <= parse_ts(e["ts"]) < row["bucket"] + timedelta(minutes=15)
        ]
        latencies = [e["latency_ms"] for e in named(inside, "job_success")]
        assert row["requests"] == len(named(inside, "request_start"))
        assert row["failures"] == len(named(inside, "request_failure"))
        assert row["p95_ms"] == pytest.approx(pct(latencies, 95))


def test_the_dashboards_top_errors_frame_matches_the_metrics(
    log_path: Path, store: EventStore
) -> None:
    write_jobs(log_path, random.Random(2), 80, NOW - timedelta(minutes=50), timedelta(minutes=50))
    expected = expected_metrics(log_path, timedelta(hours=1), NOW)

    errors = errors_frame(compute_metrics(store, timedelta(hours=1), NOW)["top_errors"])

    assert errors.to_dicts() == expected["top_errors"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60m", timedelta(hours=1)),
        ("24h", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_parse_window_reads_minutes_hours_and_days(text: str, expected: timedelta) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "60", "1w", "-5m", "0h", "400d", "1.5h", "sixty minutes"])
def test_parse_window_rejects_anything_else_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValidationError, match=r"60m, 24h, 7d or 30d|at most 366 days"):
        parse_window(text)


@pytest.mark.parametrize("text", ["99999999999d", "9999999d", "0m", "7w", "-5d"])
def test_a_window_too_long_or_malformed_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValidationError, match="Window"):
        parse_window(text)
