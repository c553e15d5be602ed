"""The dashboard's chart builders on real log windows: titles that name the window and bucket,
the one empty state instead of blank axes, and percentage axes that stay 0–100 % when flat."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import pytest

from nexus_core.analytics import dashboard_charts as charts
from nexus_core.analytics.breakdowns import by_persona, errors_frame, timeseries
from nexus_core.analytics.charts import EmptyChart, flat_range
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.metrics import compute_metrics
from nexus_core.ops.events import ApiEventLogger

NOW = datetime(2026, 11, 27, 12, 0, 0)
HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
NO_FEEDBACK = pl.DataFrame(schema={"period": pl.Date, "category": pl.String, "count": pl.UInt32})


class SetClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    """A clean hour: a request a minute, every one answered, none failed, none priced."""
    path = tmp_path / "logs" / "api_events.log"
    clock = SetClock()
    with ApiEventLogger(path, clock=clock) as log:
        for n in range(59):
            clock.now = NOW - timedelta(minutes=59 - n)
            log.emit("request_start", request_id=f"r{n}", attempt=1, persona="Coder")
            log.emit("request_success", request_id=f"r{n}", attempt=1, latency_ms=700.0)
            log.emit("job_success", job_id=f"j{n}", latency_ms=800.0, persona="Coder")
    with EventStore(path, tmp_path / "cache") as event_store:
        yield event_store


def test_a_window_without_failures_lists_no_error_types_but_says_why(store: EventStore) -> None:
    chart = charts.top_errors_figure(
        errors_frame(compute_metrics(store, HOUR, NOW)["top_errors"]), HOUR
    )
    assert chart == EmptyChart(
        "Top error types · last 60 min",
        "No failed requests in the last 60 min — error types would be listed here, most "
        "frequent first.",
    )


def test_unpriced_replies_say_how_to_get_a_cost_chart(store: EventStore) -> None:
    rows = compute_metrics(store, HOUR, NOW)["cost_by_persona"]
    chart = charts.persona_cost_figure(rows, HOUR)
    assert isinstance(chart, EmptyChart)
    assert chart.message.startswith("No priced replies in the last 60 min (59 without a price)")
    assert "nexus prices set" in chart.message
    assert isinstance(charts.cost_trend_figure([], WEEK), EmptyChart)


def test_an_empty_window_gives_every_chart_its_empty_state(store: EventStore) -> None:
    before = NOW - 2 * WEEK  # nothing logged in the week that ended then
    series = timeseries(store, WEEK, before)
    empties = [
        charts.latency_figure(series, WEEK),
        charts.success_rate_figure(series, WEEK),
        charts.traffic_figure(series, WEEK),
        charts.persona_latency_figure(by_persona(store, WEEK, before), WEEK),
        charts.feedback_categories_figure(NO_FEEDBACK, 7),
    ]
    assert all(isinstance(chart, EmptyChart) for chart in empties)
    messages = [chart.message for chart in empties if isinstance(chart, EmptyChart)]
    assert all(" — " in m and "would" in m for m in messages)  # what would appear there
    assert messages[2].startswith("No requests in the last 7 days — requests, failures and")
    assert messages[2].endswith("Chat on the Chat page, or run nexus simulate for demo traffic.")


def test_titles_name_the_window_and_the_bucket(store: EventStore) -> None:
    series = timeseries(store, HOUR, NOW)
    traffic = charts.traffic_figure(series, HOUR)
    assert isinstance(traffic, go.Figure)
    assert traffic.layout.title.text == "Requests, failures and retries · last 60 min, per minute"
    assert sum(traffic.data[0].y) == 59  # counts per bucket, not rates
    week = charts.latency_figure(timeseries(store, WEEK, NOW), WEEK)
    assert isinstance(week, go.Figure)
    assert week.layout.title.text == "Response latency · last 7 days, per 2 hours"


def test_a_success_rate_at_100_percent_everywhere_is_drawn_on_0_to_100(store: EventStore) -> None:
    chart = charts.success_rate_figure(timeseries(store, HOUR, NOW), HOUR)
    assert isinstance(chart, go.Figure)
    assert {y for y in chart.data[0].y if y is not None} == {1.0}
    assert list(chart.layout.yaxis.range) == [0.0, pytest.approx(1.05)]


@pytest.mark.parametrize(
    ("values", "full", "shown"),
    [
        ([0.0, 0.0, None], 100.0, [0.0, 105.0]),  # all zero: 0–100 %, not −1 to 1
        ([42.0], 100.0, [0.0, 105.0]),  # one value
        ([1.0, 1.0], 1.0, [0.0, 1.05]),  # a fraction at 100 %
        ([0.0], 0.0, [0.0, 1.05]),  # a plain count of zero
        ([7.0, 7.0], 0.0, [0.0, 7.0 * 1.05]),
        ([40.0, 60.0], 100.0, None),  # a spread is left to Plotly
        ([-3.0], 100.0, None),
    ],
)
def test_a_flat_axis_starts_at_zero_and_a_flat_percentage_spans_0_to_100(
    values: list[float | None], full: float, shown: list[float] | None
) -> None:
    found = flat_range(values, full=full)
    assert found == (None if shown is None else [pytest.approx(v) for v in shown])
