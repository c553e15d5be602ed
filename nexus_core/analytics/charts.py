"""Chart builders: pure functions from data to plotly figures (no Streamlit, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from nexus_core.analytics.session import TimelineEvent

TIMELINE_COLORS = {
    "Started": "#4F46E5",
    "First Reply": "#059669",
    "Last Reply": "#0891B2",
    "Feedback": "#D97706",
}


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
