"""The workbench chart builder: a SQL cell's result frame and its chart spec in, a figure out.

Aggregation happens in Polars before plotting: y is summed, averaged, counted, or reduced to its
minimum or maximum per x (and per colour), so the figure holds one point per group. Groups keep the
order in which they first appear in the result (the query's ORDER BY decides), except that line and
area charts over numbers or times are drawn in x order. Colour splits the data into one trace per
value. A histogram bins x itself and ignores y and the aggregation.

A result with nothing to draw (no rows, or only empty values) gives the house empty state
(``charts.EmptyChart``) instead of blank axes. A y column named as a percentage (``*_pct``,
``*_percent``) gets a ``%`` axis, and any y whose values do not spread an axis from 0 (0–100 % for
a percentage) instead of Plotly's −1 to 1 around one value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import plotly.graph_objects as go
import polars as pl

from nexus_core.analytics.charts import (
    CHART_HEIGHT,
    CHART_MARGIN,
    Chart,
    EmptyChart,
    flat_range,
    has_values,
)
from nexus_core.errors import ValidationError
from nexus_core.workbench.cells import Aggregation, ChartSpec

# The Nexus palette of the dashboard charts, in the order traces take their colours.
COLORWAY: Final = (
    "#4F46E5",
    "#0891B2",
    "#059669",
    "#D97706",
    "#DC2626",
    "#7C3AED",
    "#DB2777",
    "#6B7280",
)
HISTOGRAM_OPACITY: Final = 0.6
# The aggregated values get a name no query result is likely to use, so it never clashes with x.
VALUE: Final = "__nexus_value__"
NULL_LABEL: Final = "(null)"
REDUCERS: Final[dict[Aggregation, Callable[[pl.Expr], pl.Expr]]] = {
    "sum": pl.Expr.sum,
    "mean": pl.Expr.mean,
    "min": pl.Expr.min,
    "max": pl.Expr.max,
}
PERCENT_NAME: Final = re.compile(r"(^|_)(pct|percent|percentage)$", re.IGNORECASE)
FULL_PERCENT: Final = 100.0
AGGREGATION_LABELS: Final[dict[Aggregation, str]] = {
    "sum": "sum of",
    "mean": "mean of",
    "min": "min of",
    "max": "max of",
}


def build_chart(frame: pl.DataFrame, spec: ChartSpec, title: str | None = None) -> Chart:
    """The figure ``spec`` describes for ``frame``, or why there is nothing to draw;
    ``ValidationError`` says what to change in the spec."""
    _check_columns(frame, spec)
    if spec.kind == "histogram":
        if not has_values(frame[spec.x]):
            return _nothing_to_draw(frame, spec, spec.x, title)
        figure = _histogram(frame, spec)
        y_title = "rows"
    else:
        data = _aggregated(frame, spec)
        if not has_values(data[VALUE]):
            return _nothing_to_draw(frame, spec, spec.y or spec.x, title)
        figure = go.Figure([_trace(spec, name, group) for name, group in _groups(data, spec)])
        y_title = _value_label(spec)
    figure.update_layout(
        title={"text": title or "", "font": {"size": 14}},
        height=CHART_HEIGHT,
        margin=CHART_MARGIN,
        legend={"orientation": "h", "y": -0.2},
        colorway=list(COLORWAY),
        showlegend=spec.color is not None,
        barmode="overlay" if spec.kind == "histogram" else "group",
        xaxis={"title": {"text": spec.x}},
        yaxis={"title": {"text": y_title}},
    )
    if spec.kind != "histogram":
        figure.update_yaxes(**_value_axis(data[VALUE], spec))
    return figure


def _nothing_to_draw(
    frame: pl.DataFrame, spec: ChartSpec, column: str, title: str | None
) -> EmptyChart:
    drawn = f"the {spec.kind} chart of {_value_label(spec)} by {spec.x}"
    if spec.kind == "histogram":
        drawn = f"the histogram of {spec.x}"
    if frame.is_empty():
        return EmptyChart(
            title or "", f"The query returned no rows — {drawn} appears when it returns some."
        )
    return EmptyChart(
        title or "",
        f"Every value of {column} in the result is empty (null), so there is nothing to chart — "
        f"{drawn} appears once rows have a {column}.",
    )


def _is_percent(spec: ChartSpec) -> bool:
    return spec.aggregation != "count" and bool(PERCENT_NAME.search(spec.y or ""))


def _value_axis(values: pl.Series, spec: ChartSpec) -> dict[str, object]:
    """A ``%`` axis for percentages; an axis from 0 when the values do not spread."""
    if not values.dtype.is_numeric():
        return {}
    percent = _is_percent(spec)
    axis: dict[str, object] = {"ticksuffix": " %"} if percent else {}
    stacked = spec.kind == "area" and spec.color is not None  # the top is a sum, not a value
    flat = flat_range(values.to_list(), full=FULL_PERCENT if percent else 0.0)
    if flat is not None and not stacked:
        axis["range"] = flat
    return axis


def _summable(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def _needs_y(spec: ChartSpec) -> bool:
    return spec.kind != "histogram" and spec.aggregation != "count"


def _check_columns(frame: pl.DataFrame, spec: ChartSpec) -> None:
    if not spec.x:
        raise ValidationError("Choose the column for the x axis.")
    if _needs_y(spec) and not spec.y:
        raise ValidationError(
            f"A {spec.kind} chart needs a y column; choose one, or count rows instead."
        )
    used = [spec.x, spec.y if _needs_y(spec) else None, spec.color]
    for column in (c for c in used if c):
        if column not in frame.columns:
            raise ValidationError(
                f"Column {column!r} is not in the result; columns: {', '.join(frame.columns)}"
            )
    if spec.aggregation in ("sum", "mean") and spec.y and not _summable(frame.schema[spec.y]):
        raise ValidationError(
            f"Cannot take the {spec.aggregation} of {spec.y!r} ({frame.schema[spec.y]}); "
            "choose a numeric column, or count rows instead."
        )


def _keys(spec: ChartSpec) -> list[str]:
    return list(dict.fromkeys(c for c in (spec.x, spec.color) if c))


def _aggregated(frame: pl.DataFrame, spec: ChartSpec) -> pl.DataFrame:
    """One row per x (and colour) with the value to plot in ``VALUE``; raw rows for "none"."""
    keys = _keys(spec)
    if spec.aggregation == "none":
        return frame.select(*keys, pl.col(spec.y or "").alias(VALUE))
    if spec.aggregation == "count":
        value = pl.len()
    else:
        value = REDUCERS[spec.aggregation](pl.col(spec.y or ""))
    return frame.group_by(keys, maintain_order=True).agg(value.alias(VALUE))


def _groups(data: pl.DataFrame, spec: ChartSpec) -> list[tuple[str | None, pl.DataFrame]]:
    """One frame per colour value (or the whole frame), in x order where the chart needs it."""
    if spec.color is None:
        groups: list[tuple[str | None, pl.DataFrame]] = [(None, data)]
    else:
        by_color = data.group_by(spec.color, maintain_order=True)
        groups = [(NULL_LABEL if key is None else str(key), group) for (key,), group in by_color]
    x_type = data.schema[spec.x]
    if spec.kind in ("line", "area") and (x_type.is_numeric() or x_type.is_temporal()):
        groups = [
            (name, group.sort(spec.x, nulls_last=True, maintain_order=True))
            for name, group in groups
        ]
    return groups


def _trace(spec: ChartSpec, name: str | None, group: pl.DataFrame) -> go.Scatter | go.Bar:
    x, y = group[spec.x].to_list(), group[VALUE].to_list()
    if spec.kind == "bar":
        return go.Bar(x=x, y=y, name=name)
    if spec.kind == "scatter":
        return go.Scatter(x=x, y=y, name=name, mode="markers")
    if spec.kind == "area":
        return go.Scatter(x=x, y=y, name=name, mode="lines", stackgroup="area")
    return go.Scatter(x=x, y=y, name=name, mode="lines+markers")


def _histogram(frame: pl.DataFrame, spec: ChartSpec) -> go.Figure:
    keys = _keys(spec)
    opacity = HISTOGRAM_OPACITY if spec.color else 1.0
    return go.Figure(
        [
            go.Histogram(x=group[spec.x].to_list(), name=name, opacity=opacity)
            for name, group in _groups(frame.select(keys), spec)
        ]
    )


def _value_label(spec: ChartSpec) -> str:
    if spec.aggregation == "count":
        return "rows"
    if spec.aggregation == "none":
        return spec.y or ""
    return f"{AGGREGATION_LABELS[spec.aggregation]} {spec.y}"
