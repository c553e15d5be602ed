"""Chart builders of the SLO dashboard: pure functions from analytics frames to plotly figures.

The series frames are those of ``breakdowns.timeseries`` (bucket, requests, failures, retries,
successes, p50_ms, p95_ms, success_rate); the objective lines come from ``slo``. Every title
says the window it covers and the bucket it counts in; a builder with nothing to draw returns the
house empty state (``charts.EmptyChart``) saying what would appear and how to get it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

import plotly.graph_objects as go
import polars as pl

from nexus_core.analytics.charts import (
    CHART_HEIGHT,
    CHART_MARGIN,
    Chart,
    EmptyChart,
    flat_range,
    has_nonzero,
    has_values,
)
from nexus_core.analytics.slo import LATENCY_TARGET_MS, SUCCESS_OBJECTIVE
from nexus_core.analytics.windows import bucket_width, describe_span, per_span

SLO_LINE: Final = {"color": "#DC2626", "dash": "dash", "width": 1.5}
COLORS: Final = {
    "p50": "#0891B2",
    "p95": "#4F46E5",
    "success": "#059669",
    "requests": "#4F46E5",
    "failures": "#DC2626",
    "retries": "#D97706",
    "errors": "#DC2626",
    "persona": "#0891B2",
}
HOW_TO_FILL: Final = "Chat on the Chat page, or run nexus simulate for demo traffic."
TRAFFIC_COLUMNS: Final = ("requests", "failures", "retries")


def _layout(figure: go.Figure, title: str, **extra: object) -> go.Figure:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=CHART_HEIGHT,
        margin=CHART_MARGIN,
        legend={"orientation": "h", "y": -0.2},
        **extra,
    )
    return figure


def _last(window: timedelta) -> str:
    return f"last {describe_span(window)}"


def _titled(name: str, window: timedelta, *, bucketed: bool = False) -> str:
    """``Response latency · last 7 days, per 2 hours``: what, over which window, in what buckets."""
    per = f", per {per_span(bucket_width(window))}" if bucketed else ""
    return f"{name} · {_last(window)}{per}"


def latency_figure(
    series: pl.DataFrame, window: timedelta, target_ms: float = LATENCY_TARGET_MS
) -> Chart:
    """p50 and p95 response latency per bucket, with the latency SLO target as a line."""
    title = _titled("Response latency", window, bucketed=True)
    if not has_values([*series["p50_ms"], *series["p95_ms"]]):
        return EmptyChart(
            title,
            f"No AI responses in the {_last(window)} — their p50 and p95 response times would "
            f"be drawn here against the {target_ms / 1000:g} s target. {HOW_TO_FILL}",
        )
    figure = go.Figure()
    for column, name in (("p50_ms", "p50"), ("p95_ms", "p95")):
        figure.add_trace(
            go.Scatter(
                x=series["bucket"].to_list(),
                y=series[column].to_list(),
                mode="lines+markers",
                name=name,
                connectgaps=False,
                line={"color": COLORS[name]},
                hovertemplate=f"{name} %{{y:,.0f}} ms<br>%{{x}}<extra></extra>",
            )
        )
    figure.add_hline(
        y=target_ms,
        line=SLO_LINE,
        annotation_text=f"SLO {target_ms:,.0f} ms",
        annotation_position="top left",
    )
    return _layout(figure, title, yaxis={"title": "ms", "rangemode": "tozero"})


def success_rate_figure(
    series: pl.DataFrame, window: timedelta, objective: float = SUCCESS_OBJECTIVE
) -> Chart:
    """API success rate per bucket, with the success objective as a line; 0–100 % when flat."""
    title = _titled("API success rate", window, bucketed=True)
    rates = series["success_rate"].to_list()
    if not has_values(rates):
        return EmptyChart(
            title,
            f"No API requests ended in the {_last(window)} — the share that succeeded would be "
            f"drawn here against the {objective:.1%} objective. {HOW_TO_FILL}",
        )
    figure = go.Figure(
        go.Scatter(
            x=series["bucket"].to_list(),
            y=rates,
            mode="lines+markers",
            name="success rate",
            line={"color": COLORS["success"]},
            hovertemplate="%{y:.2%}<br>%{x}<extra></extra>",
        )
    )
    figure.add_hline(
        y=objective,
        line=SLO_LINE,
        annotation_text=f"Objective {objective:.1%}",
        annotation_position="bottom left",
    )
    axis: dict[str, object] = {"tickformat": ".1%"}
    flat = flat_range(rates, full=1.0)
    if flat is not None:
        axis["range"] = flat
    return _layout(figure, title, yaxis=axis)


def traffic_figure(series: pl.DataFrame, window: timedelta) -> Chart:
    """Stacked requests, failures and retries counted per bucket."""
    per = per_span(bucket_width(window))
    title = _titled("Requests, failures and retries", window, bucketed=True)
    if not any(has_nonzero(series[column]) for column in TRAFFIC_COLUMNS):
        return EmptyChart(
            title,
            f"No requests in the {_last(window)} — requests, failures and retries per {per} "
            f"would be stacked here. {HOW_TO_FILL}",
        )
    figure = go.Figure()
    for column in TRAFFIC_COLUMNS:
        figure.add_trace(
            go.Bar(
                x=series["bucket"].to_list(),
                y=series[column].to_list(),
                name=column,
                marker={"color": COLORS[column]},
                hovertemplate=f"{column} %{{y:,}} per {per}<br>%{{x}}<extra></extra>",
            )
        )
    return _layout(figure, title, barmode="stack", yaxis={"title": f"per {per}"})


def top_errors_figure(errors: pl.DataFrame, window: timedelta) -> Chart:
    """Request failures by error type, most frequent on top."""
    title = _titled("Top error types", window)
    if not has_nonzero(errors["count"]):
        return EmptyChart(
            title,
            f"No failed requests in the {_last(window)} — error types would be listed here, "
            "most frequent first.",
        )
    ordered = errors.sort("count")
    figure = go.Figure(
        go.Bar(
            x=ordered["count"].to_list(),
            y=ordered["error_type"].to_list(),
            orientation="h",
            marker={"color": COLORS["errors"]},
            hovertemplate="%{y}: %{x:,}<extra></extra>",
        )
    )
    return _layout(figure, title, xaxis={"title": "failed requests"})


def persona_latency_figure(personas: pl.DataFrame, window: timedelta) -> Chart:
    """p95 and average response latency per persona, with the latency SLO target as a line."""
    title = _titled("Latency by persona", window)
    rows = personas.filter(pl.col("responses") > 0)
    if rows.is_empty():
        return EmptyChart(
            title,
            f"No AI responses in the {_last(window)} — each persona's p95 and average response "
            f"time would be compared here. {HOW_TO_FILL}",
        )
    figure = go.Figure()
    for column, name, opacity in (("p95_latency_ms", "p95", 1.0), ("avg_latency_ms", "avg", 0.5)):
        figure.add_trace(
            go.Bar(
                x=rows["persona"].to_list(),
                y=rows[column].to_list(),
                name=name,
                opacity=opacity,
                marker={"color": COLORS["persona"]},
                hovertemplate=f"%{{x}} {name} %{{y:,.0f}} ms<extra></extra>",
            )
        )
    figure.add_hline(y=LATENCY_TARGET_MS, line=SLO_LINE)
    return _layout(figure, title, barmode="group", yaxis={"title": "ms"})


def _no_cost(rows: list[dict[str, Any]], span: str, what: str) -> str:
    unpriced = sum(r["unpriced_replies"] for r in rows)
    if unpriced:
        return (
            f"No priced replies in the {span} ({unpriced:,} without a price) — {what} appears "
            "here once their model has a price (Usage page, or nexus prices set)."
        )
    return f"No replies in the {span} — {what} would appear here. {HOW_TO_FILL}"


def persona_cost_figure(rows: list[dict[str, Any]], window: timedelta) -> Chart:
    """What each persona's replies cost in the window (priced replies only)."""
    title = _titled("Cost by persona", window)
    if not has_nonzero(r["cost_usd"] for r in rows):
        return EmptyChart(title, _no_cost(rows, _last(window), "each persona's cost"))
    figure = go.Figure(
        go.Bar(
            x=[r["persona"] for r in rows],
            y=[r["cost_usd"] for r in rows],
            marker={"color": COLORS["persona"]},
            customdata=[r["unpriced_replies"] for r in rows],
            hovertemplate="%{x}: $%{y:,.4f} (%{customdata} unpriced replies)<extra></extra>",
        )
    )
    return _layout(figure, title, yaxis={"title": "USD"})


def cost_trend_figure(rows: list[dict[str, Any]], window: timedelta) -> Chart:
    """Cost per day (priced replies), with the day's replies on hover."""
    title = f"Cost per day · {_last(window)}"
    if not has_nonzero(r["cost_usd"] for r in rows):
        return EmptyChart(title, _no_cost(rows, _last(window), "the cost of each day"))
    ordered = sorted(rows, key=lambda r: r["day"])
    figure = go.Figure(
        go.Bar(
            x=[r["day"] for r in ordered],
            y=[r["cost_usd"] for r in ordered],
            marker={"color": COLORS["persona"]},
            customdata=[r["replies"] for r in ordered],
            hovertemplate="%{x}: $%{y:,.4f} over %{customdata} replies<extra></extra>",
        )
    )
    return _layout(figure, title, yaxis={"title": "USD"})


def feedback_categories_figure(by_category: pl.DataFrame, days: int) -> Chart:
    """Feedback items per category (summed over the periods of ``by_category``)."""
    title = f"Issues by category · last {days} days"
    if by_category.is_empty():
        return EmptyChart(
            title,
            f"No feedback in the last {days} days — reports and thumbs ratings would be counted "
            "here by category. People leave them on the Chat and Feedback pages.",
        )
    totals = by_category.group_by("category").agg(pl.col("count").sum()).sort("count")
    figure = go.Figure(
        go.Bar(
            x=totals["count"].to_list(),
            y=totals["category"].to_list(),
            orientation="h",
            marker={"color": COLORS["retries"]},
            hovertemplate="%{y}: %{x:,}<extra></extra>",
        )
    )
    return _layout(figure, title, xaxis={"title": "items"})
