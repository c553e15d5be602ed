"""Chart builders: pure functions from data to plotly figures (no Streamlit, no I/O).

Also what every chart builder shares: the house size, and the one empty state. A builder with
nothing to draw — no rows, or only empty or zero values that would draw blank axes — returns an
``EmptyChart`` instead of a figure: its title and a sentence saying what would appear there and
how to get it. ``nexus_core.ui.show.chart`` draws either. A percentage axis whose values do not
spread (one value, or all the same) runs from 0 to 100 % (``flat_range``) instead of Plotly's
−1 to 1 around a single value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import plotly.graph_objects as go

from nexus_core.analytics.session import TimelineEvent

CHART_HEIGHT: Final = 300
CHART_MARGIN: Final = {"l": 10, "r": 10, "t": 40, "b": 10}
# Room above the top of a flat axis, so a marker on the top line is not cut in half.
FLAT_HEADROOM: Final = 1.05
TIMELINE_COLORS = {
    "Started": "#4F46E5",
    "First Reply": "#059669",
    "Last Reply": "#0891B2",
    "Feedback": "#D97706",
}


@dataclass(frozen=True)
class EmptyChart:
    """A chart with nothing to draw: its title, and what would appear there and how to get it."""

    title: str
    message: str


Chart = go.Figure | EmptyChart


def has_values(values: Iterable[object]) -> bool:
    """Whether any value is there to draw (not None, not NaN)."""
    return any(v is not None and v == v for v in values)  # NaN is not equal to itself


def has_nonzero(values: Iterable[float | None]) -> bool:
    """Whether any value is there and not zero (all-zero bars draw only a blank axis)."""
    return any(v for v in values if v is not None and v == v)


def flat_range(values: Iterable[float | None], full: float = 0.0) -> list[float] | None:
    """An axis from 0 when the values do not spread (one value, or all the same; none below 0):
    0–100 % for a percentage (``full=100``, or 1.0 for a fraction), else 0 to the value (0–1 when
    it is 0). None when they spread: Plotly's own range then shows the spread."""
    present = {v for v in values if v is not None and v == v}
    if len(present) > 1 or any(v < 0 for v in present):
        return None
    top = max([full, *present]) or 1.0
    return [0.0, top * FLAT_HEADROOM]


def session_timeline_figure(events: Sequence[TimelineEvent]) -> go.Figure:
    """A one-row timeline of a session's milestones."""
    figure = go.Figure()
    for label in TIMELINE_COLORS:
        points = [e for e in events if e.label == label]
        if not points:
            continue
        figure.add_trace(
            go.Scatter(
                x=[e.at for e in points],
                y=[label for _ in points],
                mode="markers",
                name=label,
                marker={"size": 14, "color": TIMELINE_COLORS[label]},
                text=[e.detail for e in points],
                hovertemplate="%{y}<br>%{x|%Y-%m-%d %H:%M:%S}<br>%{text}<extra></extra>",
            )
        )
    figure.update_layout(
        height=260,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,
        yaxis={"categoryorder": "array", "categoryarray": list(reversed(TIMELINE_COLORS))},
    )
    return figure
