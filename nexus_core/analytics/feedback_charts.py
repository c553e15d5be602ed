"""Chart builders for the feedback explorer: pure functions from Polars frames to plotly figures.

The frames come from ``TriageService.stats`` (see ``nexus_core.feedback.tables.FeedbackStats``).
With nothing to draw a builder returns the house empty state (``charts.EmptyChart``).
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from nexus_core.analytics.charts import Chart, EmptyChart
from nexus_core.db.models import FEEDBACK_CATEGORIES

CATEGORY_COLORS = {
    "bug": "#DC2626",
    "performance": "#D97706",
    "ux": "#7C3AED",
    "content": "#0891B2",
    "suggestion": "#059669",
    "other": "#6B7280",
}
OPENED_COLOR = "#4F46E5"
RESOLVED_COLOR = "#059669"
BACKLOG_COLOR = "#DC2626"
CHART_HEIGHT = 320
# Bars on a date axis are as wide as we say (in ms); without this one period is a hairline.
PERIOD_MS = {"day": 86_400_000, "week": 7 * 86_400_000}
BAR_SHARE = 0.8
# Up to this many periods, tick every period; beyond it plotly's own ticks read better.
TICK_EVERY_PERIOD_UP_TO = 14
FIRST_MONDAY = "2000-01-03"
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
EMPTY_TEXT = "No feedback matches these filters"
WIDEN = "Widen the filters or the dates to see some."


def _layout(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(
        title=title, height=CHART_HEIGHT, margin=MARGIN, legend={"orientation": "h", "y": -0.2}
    )
    return figure


def _time_axis(figure: go.Figure, bucket: str, periods: int) -> None:
    every: dict[str, object] = {}
    if periods <= TICK_EVERY_PERIOD_UP_TO:
        every["dtick"] = PERIOD_MS[bucket]
    if every and bucket == "week":
        every["tick0"] = FIRST_MONDAY  # weeks start on Mondays, as the frames count them
    figure.update_xaxes(type="date", tickformat="%Y-%m-%d", title=bucket, **every)


def _empty(title: str, what: str) -> EmptyChart:
    return EmptyChart(title, f"{EMPTY_TEXT} — {what} would appear here. {WIDEN}")


def category_figure(by_category: pl.DataFrame, bucket: str) -> Chart:
    """Stacked bars: how many items of each category arrived per day or week."""
    title = f"Feedback by category per {bucket}"
    if by_category.is_empty():
        return _empty(title, f"the items of each category per {bucket}")
    figure = go.Figure()
    for category in FEEDBACK_CATEGORIES:
        part = by_category.filter(pl.col("category") == category)
        if part.is_empty():
            continue
        figure.add_trace(
            go.Bar(
                x=part["period"].to_list(),
                y=part["count"].to_list(),
                name=category,
                marker_color=CATEGORY_COLORS[category],
                width=PERIOD_MS[bucket] * BAR_SHARE,
            )
        )
    # The legend names the colours even when only one category is there.
    figure.update_layout(barmode="stack", yaxis_title="items", showlegend=True)
    _time_axis(figure, bucket, by_category["period"].n_unique())
    return _layout(figure, title)


def persona_figure(by_persona: pl.DataFrame) -> Chart:
    """Horizontal bars: how many items are about each persona, most first."""
    title = "Feedback by persona"
    if by_persona.is_empty():
        return _empty(title, "the items about each persona")
    ordered = by_persona.reverse()  # plotly draws the first bar at the bottom
    figure = go.Figure(
        go.Bar(
            x=ordered["count"].to_list(),
            y=ordered["persona"].to_list(),
            orientation="h",
            marker_color=OPENED_COLOR,
        )
    )
    figure.update_layout(xaxis_title="items")
    return _layout(figure, title)


def backlog_figure(backlog: pl.DataFrame, bucket: str) -> Chart:
    """Opened and resolved per period as bars, and what was still open after it as a line."""
    title = f"Open vs resolved per {bucket}"
    if backlog.is_empty():
        return _empty(title, f"the items opened and resolved per {bucket}, and those still open,")
    periods = backlog["period"].to_list()
    half = PERIOD_MS[bucket] * BAR_SHARE / 2  # two bars side by side in each period
    figure = go.Figure()
    for column, name, color, offset in (
        ("opened", "opened", OPENED_COLOR, -half),
        ("resolved", "resolved or closed", RESOLVED_COLOR, 0),
    ):
        figure.add_trace(
            go.Bar(
                x=periods,
                y=backlog[column].to_list(),
                name=name,
                marker_color=color,
                width=half,
                offset=offset,
            )
        )
    figure.add_trace(
        go.Scatter(
            x=periods,
            y=backlog["open_at_end"].to_list(),
            name="still open",
            mode="lines+markers",
            line={"color": BACKLOG_COLOR},
        )
    )
    figure.update_layout(barmode="overlay", yaxis_title="items")
    _time_axis(figure, bucket, len(periods))
    return _layout(figure, title)
