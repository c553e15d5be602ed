"""The workbench chart builder: each chart kind draws the right traces, aggregation matches sums
worked out by hand, a spec that does not fit the result is refused with a clear message, and a
result with nothing to draw gives the empty state (a flat percentage a 0–100 % axis)."""

from __future__ import annotations

from datetime import date

import plotly.graph_objects as go
import polars as pl
import pytest

from nexus_core.analytics.charts import EmptyChart
from nexus_core.errors import ValidationError
from nexus_core.workbench.cells import ChartSpec
from nexus_core.workbench.charts import build_chart
from nexus_core.workbench.starters import STARTERS_BY_KEY

RESULT = pl.DataFrame(
    {
        "day": [date(2026, 3, 2), date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 1)],
        "persona": ["Coder", "Writer", "Coder", "Coder"],
        "latency_ms": [120.0, 300.0, 180.0, 90.0],
        "tokens": [10, 40, 30, 20],
    }
)


def _points(figure: go.Figure) -> list[tuple[str | None, list[object], list[object]]]:
    return [(t.name, list(t.x), list(t.y)) for t in figure.data]


def test_a_bar_chart_of_raw_rows_keeps_the_query_order() -> None:
    figure = build_chart(RESULT, ChartSpec(kind="bar", x="persona", y="tokens"), title="Tokens")
    (trace,) = figure.data
    assert isinstance(trace, go.Bar)
    assert (list(trace.x), list(trace.y)) == (RESULT["persona"].to_list(), [10, 40, 30, 20])
    assert figure.layout.title.text == "Tokens"
    assert figure.layout.yaxis.title.text == "tokens"


def test_sum_adds_y_per_x_like_a_hand_count() -> None:
    spec = ChartSpec(kind="bar", x="persona", y="tokens", aggregation="sum")
    figure = build_chart(RESULT, spec)
    # Coder: 10 + 30 + 20; Writer: 40 — in the order the personas first appear.
    assert _points(figure) == [(None, ["Coder", "Writer"], [60, 40])]
    assert figure.layout.yaxis.title.text == "sum of tokens"


def test_sum_by_colour_gives_one_trace_per_colour_value() -> None:
    spec = ChartSpec(kind="bar", x="day", y="tokens", color="persona", aggregation="sum")
    figure = build_chart(RESULT, spec)
    assert _points(figure) == [
        ("Coder", [date(2026, 3, 2), date(2026, 3, 1)], [40, 20]),
        ("Writer", [date(2026, 3, 1)], [40]),
    ]
    assert figure.layout.showlegend is True


@pytest.mark.parametrize(
    ("aggregation", "coder", "writer"),
    [("mean", 130.0, 300.0), ("min", 90.0, 300.0), ("max", 180.0, 300.0)],
)
def test_mean_min_and_max_reduce_y_per_x(aggregation: str, coder: float, writer: float) -> None:
    spec = ChartSpec.from_json(
        {"kind": "bar", "x": "persona", "y": "latency_ms", "aggregation": aggregation}
    )
    assert _points(build_chart(RESULT, spec)) == [(None, ["Coder", "Writer"], [coder, writer])]


def test_count_needs_no_y_and_counts_rows_per_x() -> None:
    figure = build_chart(RESULT, ChartSpec(kind="bar", x="persona", aggregation="count"))
    assert _points(figure) == [(None, ["Coder", "Writer"], [3, 1])]
    assert figure.layout.yaxis.title.text == "rows"


def test_a_line_chart_over_dates_is_drawn_in_date_order() -> None:
    spec = ChartSpec(kind="line", x="day", y="latency_ms", aggregation="mean")
    (trace,) = build_chart(RESULT, spec).data
    assert isinstance(trace, go.Scatter)
    assert "lines" in trace.mode
    # 2026-03-01: (300 + 90) / 2; 2026-03-02: (120 + 180) / 2.
    assert (list(trace.x), list(trace.y)) == ([date(2026, 3, 1), date(2026, 3, 2)], [195.0, 150.0])


def test_an_area_chart_stacks_its_colour_traces() -> None:
    spec = ChartSpec(kind="area", x="day", y="tokens", color="persona", aggregation="sum")
    figure = build_chart(RESULT, spec)
    assert [type(t) for t in figure.data] == [go.Scatter, go.Scatter]
    assert {t.stackgroup for t in figure.data} == {"area"}
    assert _points(figure)[0] == ("Coder", [date(2026, 3, 1), date(2026, 3, 2)], [20, 40])


def test_a_scatter_chart_draws_markers_for_every_row() -> None:
    spec = ChartSpec(kind="scatter", x="tokens", y="latency_ms")
    (trace,) = build_chart(RESULT, spec).data
    assert isinstance(trace, go.Scatter)
    assert trace.mode == "markers"
    assert (list(trace.x), list(trace.y)) == ([10, 40, 30, 20], [120.0, 300.0, 180.0, 90.0])


def test_a_histogram_bins_x_per_colour_without_y() -> None:
    figure = build_chart(RESULT, ChartSpec(kind="histogram", x="latency_ms", color="persona"))
    assert [type(t) for t in figure.data] == [go.Histogram, go.Histogram]
    assert [(t.name, list(t.x)) for t in figure.data] == [
        ("Coder", [120.0, 180.0, 90.0]),
        ("Writer", [300.0]),
    ]
    assert figure.layout.barmode == "overlay"


def test_a_column_missing_from_the_result_is_named_with_the_columns_there_are() -> None:
    with pytest.raises(ValidationError) as missing:
        build_chart(RESULT, ChartSpec(kind="bar", x="model", y="tokens"))
    assert str(missing.value) == (
        "Column 'model' is not in the result; columns: day, persona, latency_ms, tokens"
    )
    with pytest.raises(ValidationError, match="Column 'team' is not in the result"):
        build_chart(RESULT, ChartSpec(kind="bar", x="day", y="tokens", color="team"))


@pytest.mark.parametrize("kind", ["line", "bar", "area", "scatter"])
def test_charts_that_plot_y_refuse_a_spec_without_y(kind: str) -> None:
    spec = ChartSpec.from_json({"kind": kind, "x": "day", "aggregation": "sum"})
    with pytest.raises(ValidationError, match=f"A {kind} chart needs a y column"):
        build_chart(RESULT, spec)


def test_a_spec_without_x_is_refused() -> None:
    with pytest.raises(ValidationError, match="x axis"):
        build_chart(RESULT, ChartSpec(kind="histogram"))


def test_summing_text_is_refused_with_a_hint_to_count() -> None:
    spec = ChartSpec(kind="bar", x="day", y="persona", aggregation="sum")
    with pytest.raises(ValidationError, match="count rows instead"):
        build_chart(RESULT, spec)


def starter_spec(key: str, y: str) -> ChartSpec:
    """The chart of the starter notebook ``key`` that plots ``y``."""
    (spec,) = [
        c.chart for c in STARTERS_BY_KEY[key].cells if c.chart is not None and c.chart.y == y
    ]
    return spec


def test_a_percentage_that_does_not_spread_is_drawn_from_0_to_100_percent() -> None:
    # Persona comparison on a fresh install: no reply has failed, every failure_pct is 0.
    spec = starter_spec("persona-comparison", "failure_pct")
    result = pl.DataFrame({"persona": ["Coder", "Writer"], "failure_pct": [0.0, 0.0]})
    figure = build_chart(result, spec)
    assert isinstance(figure, go.Figure)
    assert list(figure.layout.yaxis.range) == [0.0, pytest.approx(105.0)]
    assert figure.layout.yaxis.ticksuffix == " %"
    # One day of SLO history: a single point, still on 0–100 %.
    daily = build_chart(
        pl.DataFrame({"day": [date(2026, 3, 1)], "fast_pct": [97.5]}),
        starter_spec("slo", "fast_pct"),
    )
    assert isinstance(daily, go.Figure)
    assert list(daily.layout.yaxis.range) == [0.0, pytest.approx(105.0)]


def test_a_percentage_that_spreads_keeps_plotlys_range() -> None:
    spec = starter_spec("persona-comparison", "failure_pct")
    figure = build_chart(
        pl.DataFrame({"persona": ["Coder", "Writer"], "failure_pct": [2.5, 10.0]}), spec
    )
    assert isinstance(figure, go.Figure)
    assert figure.layout.yaxis.range is None and figure.layout.yaxis.ticksuffix == " %"


def test_only_empty_values_give_the_empty_state_instead_of_blank_axes() -> None:
    # Thumbs per persona before anyone rated a reply: thumbs_up_pct is null in every row.
    spec = starter_spec("persona-comparison", "thumbs_up_pct")
    result = pl.DataFrame(
        {"persona": ["Coder"], "thumbs_up": [0], "thumbs_down": [0], "thumbs_up_pct": [None]},
        schema_overrides={"thumbs_up_pct": pl.Float64},
    )
    chart = build_chart(result, spec, title="Thumbs")
    assert chart == EmptyChart(
        "Thumbs",
        "Every value of thumbs_up_pct in the result is empty (null), so there is nothing to "
        "chart — the bar chart of thumbs_up_pct by persona appears once rows have a "
        "thumbs_up_pct.",
    )


def test_no_rows_give_the_empty_state_that_says_what_would_be_drawn() -> None:
    chart = build_chart(RESULT.clear(), ChartSpec(kind="line", x="day", y="tokens"))
    assert chart == EmptyChart(
        "",
        "The query returned no rows — the line chart of tokens by day appears when it "
        "returns some.",
    )
    histogram = build_chart(RESULT.clear(), ChartSpec(kind="histogram", x="latency_ms"))
    assert isinstance(histogram, EmptyChart)
    assert "the histogram of latency_ms" in histogram.message
