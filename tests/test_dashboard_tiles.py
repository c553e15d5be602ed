"""The dashboard's tiles as data: units that fit the window, neutral unchanged numbers, and every
number saying the window it covers (the 30-day error budget beside what the window used of it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nexus_core.analytics.dashboard_tiles import (
    NO_CHANGE,
    Change,
    Tile,
    budget_caption,
    budget_tiles,
    change,
    rate,
    rate_unit,
    window_caption,
    window_tiles,
)
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.analytics.windows import describe_span, parse_window, per_span
from nexus_core.ops.events import ApiEventLogger

NOW = datetime(2026, 11, 27, 12, 0, 0)
REQUESTS = 60
FAILED = 2


class SetClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    """A demo week: 60 requests over the six days before ``NOW`` (none in the last hour), the
    first two failed."""
    path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    with ApiEventLogger(path, clock=clock) as log:
        for n in range(REQUESTS):
            clock.now = NOW - timedelta(hours=2 + 2.3 * n)
            log.emit("request_start", request_id=f"r{n}", attempt=1)
            if n < FAILED:
                log.emit("request_failure", request_id=f"r{n}", attempt=1, error_type="http_503")
                continue
            log.emit("request_success", request_id=f"r{n}", attempt=1, latency_ms=700.0)
            log.emit("job_success", job_id=f"j{n}", latency_ms=800.0, attempts=1)
    with EventStore(path, tmp_path / "cache") as event_store:
        yield event_store


def tiles_of(store: EventStore, label: str) -> dict[str, Tile]:
    window = parse_window(label)
    current = compute_metrics(store, window, NOW)
    previous = compute_metrics(store, window, NOW - window)
    shown = window_tiles(current, previous, window) + budget_tiles(current, window)
    return {tile.label: tile for tile in shown}


@pytest.mark.parametrize(
    ("label", "unit"),
    [("60m", "minute"), ("6h", "hour"), ("24h", "hour"), ("7d", "day"), ("30d", "day")],
)
def test_rates_count_per_minute_hour_or_day_as_the_window_fits(label: str, unit: str) -> None:
    assert per_span(rate_unit(parse_window(label))) == unit


def test_sixty_requests_in_a_week_read_per_day_not_zero_per_minute(store: EventStore) -> None:
    tiles = tiles_of(store, "7d")
    assert tiles["Requests per day"].value == "8.57"
    assert tiles["Failures per day"].value == "0.29"
    assert tiles["Failures per day"].change == Change("+0.29")
    assert tiles["Failures per day"].better == "down"
    assert tiles["Requests per day"].note == "vs the 7 days before"
    assert rate(REQUESTS, timedelta(days=7), timedelta(days=1)) == pytest.approx(60 / 7)


@pytest.mark.parametrize(
    ("now", "before", "fmt", "shown"),
    [
        (0.0, 0.0, "{:+,.2f}", Change(NO_CHANGE, neutral=True)),
        (0.291, 0.288, "{:+,.2f}", Change(NO_CHANGE, neutral=True)),  # rounds to +0.00
        (99.5, 99.5, "{:+.2f} pp", Change(NO_CHANGE, neutral=True)),
        (1.0, 1.004, "{:+.2f}×", Change(NO_CHANGE, neutral=True)),  # -0.00×
        (0.29, 0.0, "{:+,.2f}", Change("+0.29")),
        (900.0, 1000.0, "{:+,.0f} ms", Change("-100 ms")),
        (None, 1.0, "{:+,.2f}", None),
    ],
)
def test_a_change_that_rounds_to_nothing_is_neutral(
    now: float | None, before: float | None, fmt: str, shown: Change | None
) -> None:
    assert change(now, before, fmt) == shown


def test_unchanged_tiles_are_neutral(store: EventStore) -> None:
    tiles = tiles_of(store, "30d")
    assert tiles["Retries per day"].value == "0.00"
    assert tiles["Retries per day"].change == Change(NO_CHANGE, neutral=True)


def test_the_budget_is_the_thirty_day_one_and_says_what_the_window_used(
    store: EventStore,
) -> None:
    allowed = 0.005 * REQUESTS  # failed requests the 30 days may have
    week = tiles_of(store, "7d")["Success error budget left (30 days)"]
    assert week.value == f"{100 * (1 - FAILED / allowed):.1f} %"  # -566.7 %
    assert week.change == Change(f"{-100 * FAILED / allowed:+.1f} pp")  # the week used it all
    assert week.note == "used in the last 7 days"
    hour = tiles_of(store, "60m")
    # A clean (empty) hour beside an overspent budget: the hour used none of it.
    assert hour["Success rate (objective 99.5%)"].value == "—"
    assert hour["Success error budget left (30 days)"].value == week.value
    assert hour["Success error budget left (30 days)"].change == Change("none", neutral=True)
    assert hour["Success error budget left (30 days)"].note == "used in the last 60 min"
    assert hour["Latency error budget left (30 days)"].value == "100.0 %"


def test_the_captions_name_the_windows_their_times_and_totals(store: EventStore) -> None:
    window = parse_window("7d")
    current: dict[str, Any] = compute_metrics(store, window, NOW)
    assert window_caption(current, window, NOW) == (
        "Last 7 days (20 Nov 12:00 – 27 Nov 12:00 UTC), against the 7 days before: "
        "60 requests, 2 failures, 0 retries. Rates per day."
    )
    hour = parse_window("60m")
    assert window_caption(compute_metrics(store, hour, NOW), hour, NOW).startswith(
        "Last 60 min (27 Nov 11:00–12:00 UTC), against the 60 min before: 0 requests"
    )
    assert budget_caption(hour, NOW).startswith(
        "Error budgets of the last 30 days (28 Oct 12:00 – 27 Nov 12:00 UTC), whatever the "
        "window above."
    )
    assert budget_caption(hour, NOW).endswith("Under each: what the last 60 min used of it.")


@pytest.mark.parametrize(
    ("span", "words", "per"),
    [
        (timedelta(minutes=1), "1 min", "minute"),
        (timedelta(minutes=15), "15 min", "15 min"),
        (timedelta(minutes=60), "60 min", "hour"),
        (timedelta(hours=2), "2 hours", "2 hours"),
        (timedelta(hours=24), "24 hours", "day"),
        (timedelta(days=7), "7 days", "week"),
        (timedelta(days=30), "30 days", "30 days"),
    ],
)
def test_spans_read_as_words(span: timedelta, words: str, per: str) -> None:
    assert (describe_span(span), per_span(span)) == (words, per)
