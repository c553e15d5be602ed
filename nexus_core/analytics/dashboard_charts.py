"""Chart builders of the SLO dashboard: pure functions from analytics frames to plotly figures.

The series frames are those of ``breakdowns.timeseries`` (bucket, requests, failures, retries,
successes, p50_ms, p95_ms, success_rate); the objective lines come from ``slo``.
"""

from __future__ import annotations

from typing import Any, Final

import plotly.graph_objects as go
import polars as pl

from nexus_core.analytics.slo import LATENCY_TARGET_MS, SUCCESS_OBJECTIVE

CHART_HEIGHT: Final = 300
CHART_MARGIN: Final = {"l": 10, "r": 10, "t": 40, "b": 10}
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


def _layout(figure: go.Figure, title: str, **extra: object) -> go.Figure:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=CHART_HEIGHT,
        margin=CHART_MARGIN,
        legend={"orientation": "h", "y": -0.2},
        **extra,
    )
    return figure


def latency_figure(series: pl.DataFrame, target_ms: float = LATENCY_TARGET_MS) -> go.Figure:
    """p50 and p95 response latency per bucket, with the latency SLO target as a line."""
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
    return _layout(figure, "Response latency", yaxis={"title": "ms", "rangemode": "tozero"})


def success_rate_figure(series: pl.DataFrame, objective: float = SUCCESS_OBJECTIVE) -> go.Figure:
    """API success rate per bucket, with the success objective as a line."""
    figure = go.Figure(
        go.Scatter(
            x=series["bucket"].to_list(),
            y=series["success_rate"].to_list(),
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
    return _layout(figure, "API success rate", yaxis={"tickformat": ".1%"})


def traffic_figure(series: pl.DataFrame, minutes_per_bucket: float = 1.0) -> go.Figure:
    """Stacked requests, failures and retries per minute in each bucket."""
    figure = go.Figure()
    for column in ("requests", "failures", "retries"):
        figure.add_trace(
            go.Bar(
                x=series["bucket"].to_list(),
                y=[v / minutes_per_bucket for v in series[column].to_list()],
                name=column,
                marker={"color": COLORS[column]},
                hovertemplate=f"{column} %{{y:,.2f}}/min<br>%{{x}}<extra></extra>",
            )
        )
    return _layout(figure, "Traffic per minute", barmode="stack", yaxis={"title": "per minute"})


def top_errors_figure(errors: pl.DataFrame) -> go.Figure:
    """Request failures by error type, most frequent on top."""
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
    return _layout(figure, "Top error types", xaxis={"title": "failures"})


def persona_latency_figure(personas: pl.DataFrame) -> go.Figure:
    """p95 and average response latency per persona, with the latency SLO target as a line."""
    rows = personas.filter(pl.col("responses") > 0)
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
    return _layout(figure, "Latency by persona", barmode="group", yaxis={"title": "ms"})


def persona_cost_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """What each persona's replies cost in the window (priced replies only)."""
    figure = go.Figure(
        go.Bar(
            x=[r["persona"] for r in rows],
            y=[r["cost_usd"] for r in rows],
            marker={"color": COLORS["persona"]},
            customdata=[r["unpriced_replies"] for r in rows],
            hovertemplate="%{x}: $%{y:,.4f} (%{customdata} unpriced replies)<extra></extra>",
        )
    )
    return _layout(figure, "Cost by persona", yaxis={"title": "USD"})


def cost_trend_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Cost per day (priced replies), with the day's replies on hover."""
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
    return _layout(figure, "Cost per day", yaxis={"title": "USD"})


def feedback_categories_figure(by_category: pl.DataFrame) -> go.Figure:
    """Feedback items per category (summed over the periods of ``by_category``)."""
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
    return _layout(figure, "Issues by category (7 days)", xaxis={"title": "items"})
