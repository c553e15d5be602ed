"""The SLO dashboard for admins: window selector, KPI tiles against the previous window, the
30-day error budgets with what the window used of them, the burn-rate banner, the charts (in
tabs, only the open one drawn), the feedback panel and auto-refresh. What each tile says (label,
unit, window, change) is decided in ``nexus_core.analytics.dashboard_tiles``; this module draws
it.

Numbers come from the event log through the process's ``EventStore`` (``ctx.event_store``); a window
``w`` is compared with the window of the same length just before it (``compute_metrics`` at
``now − w``). The data part is a fragment that reruns every ``REFRESH_SECONDS`` when auto-refresh
is on (``widgets.follow``), so the rest of the page (and its widgets) stays put.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

import streamlit as st

from nexus_core.analytics import dashboard_charts as charts
from nexus_core.analytics import dashboard_tiles as tiles
from nexus_core.analytics.breakdowns import errors_frame, persona_frame, timeseries
from nexus_core.analytics.metrics import compute_metrics, traffic_summary, window_numbers
from nexus_core.analytics.slo import PAGE, TICKET
from nexus_core.analytics.windows import describe_span, parse_window
from nexus_core.app_context import AppContext
from nexus_core.errors import ValidationError
from nexus_core.feedback.filters import FeedbackFilters
from nexus_core.ops.events import all_log_files
from nexus_core.settings import Settings
from nexus_core.ui import links, show
from nexus_core.ui.widgets.follow import follow
from nexus_core.users import UserView

# Widget keys of the dashboard.
WINDOW_PICK: Final = "nexus_dashboard_window"
AUTO_REFRESH: Final = "nexus_dashboard_auto_refresh"

WINDOWS: Final = ("60m", "6h", "24h", "7d", "30d")
WINDOW_LABELS: Final = {"60m": "60 min", "6h": "6 h", "24h": "24 h", "7d": "7 d", "30d": "30 d"}
DEFAULT_WINDOW: Final = "60m"
TRAFFIC_PICK: Final = "nexus_dashboard_traffic"
TRAFFIC_LABELS: Final = {"user": "Users", "synthetic": "Synthetic (tests)", "all": "All"}
TRAFFIC_NOTES: Final = {
    "user": "User traffic: comparisons and test sets are left out of every number and alert "
    "below (they have their own panel at the end).",
    "synthetic": "Synthetic traffic only: comparisons and test sets, which no user waited for.",
    "all": "All traffic: user traffic and comparisons and test sets together.",
}
REFRESH_SECONDS: Final = 30
# The charts' tabs, in order; the first is open when the page opens.
CHART_TAB_PICK: Final = "nexus_dashboard_chart_tab"
CHART_TABS: Final = ("Latency and success", "Traffic and errors", "Personas")
TILES_PER_ROW: Final = 4
DELTA_COLORS: Final = {"up": "normal", "down": "inverse"}
FEEDBACK_DAYS: Final = 7
INCIDENT_PRIORITIES: Final = ("high", "critical")
INCIDENT_LIMIT: Final = 50
EMPTY_STATE: Final = (
    "Nothing has been logged yet. Start a conversation on the Chat page, or run "
    "`nexus simulate` for demo traffic, and the dashboard fills in."
)
BANNER: Final = {
    PAGE: "🚨 Page: the {slo} SLO is burning its error budget fast ({detail}). Act now.",
    TICKET: "⚠️ Ticket: the {slo} SLO is burning its error budget steadily ({detail}).",
}


def window_asked() -> str:
    """The window the address asks for (``?window=``, an alert's link), as the shortest of
    ``WINDOWS`` that covers it; the default without one."""
    asked = links.dashboard_window()
    if not asked:
        return DEFAULT_WINDOW
    try:
        span = parse_window(asked)
    except ValidationError:
        return DEFAULT_WINDOW
    fitting = [w for w in WINDOWS if parse_window(w) >= span]
    return fitting[0] if fitting else WINDOWS[-1]


def nothing_logged(settings: Settings) -> bool:
    """Whether the event log has no content at all (no file, or only empty ones, on any host)."""
    return all(path.stat().st_size == 0 for path in all_log_files(settings.event_log_path))


def dashboard(ctx: AppContext, user: UserView) -> None:
    """The whole dashboard: controls, then the data part (auto-refreshing when asked)."""
    left, middle, right = st.columns([3, 2, 1], vertical_alignment="bottom")
    window_label = left.radio(
        "Window",
        WINDOWS,
        index=WINDOWS.index(window_asked()),
        format_func=WINDOW_LABELS.__getitem__,
        horizontal=True,
        key=WINDOW_PICK,
    )
    traffic = middle.radio(
        "Traffic",
        list(TRAFFIC_LABELS),
        format_func=TRAFFIC_LABELS.__getitem__,
        horizontal=True,
        key=TRAFFIC_PICK,
    )
    auto = right.toggle(
        "Auto-refresh", value=True, key=AUTO_REFRESH, help=f"Every {REFRESH_SECONDS} s"
    )
    data = partial(_data_part, ctx, user, window_label or DEFAULT_WINDOW, traffic or "user")
    follow(ctx, data, running=auto, every_seconds=REFRESH_SECONDS)


def _data_part(ctx: AppContext, user: UserView, window_label: str, traffic: str) -> bool:
    """The numbers, charts and feedback; always worth refreshing (the log keeps growing)."""
    _numbers(ctx, user, window_label, traffic)
    return True


def _numbers(ctx: AppContext, user: UserView, window_label: str, traffic: str) -> None:
    now = datetime.now(UTC)
    st.caption(f"Last updated {now:%H:%M:%S} UTC · {TRAFFIC_NOTES[traffic]}")
    if nothing_logged(ctx.settings):
        st.info(EMPTY_STATE, icon="👋")
        feedback_panel(ctx, user, now)
        return
    window = parse_window(window_label)
    snapshot = ctx.event_store.refresh().of_traffic(traffic)
    current = compute_metrics(snapshot, window, now, traffic=traffic)
    # The window before is compared on its counts, latency and SLO only: no breakdowns.
    previous = window_numbers(snapshot, window, now - window, traffic=traffic)
    alert_banner(current["slo"]["alerts"])
    show.caption(tiles.window_caption(current, window, now))
    kpi_tiles(current, previous, window)
    cost_tiles(current["cost"])
    show.caption(tiles.budget_caption(window, now))
    budget_row(current, window)
    if current["requests"] == 0:
        show.info(
            f"No requests in the last {describe_span(window)}, so nothing to chart; "
            "try a longer window."
        )
    else:
        _charts(snapshot, window, now, current)
    if traffic == "user":
        synthetic_panel(traffic_summary(snapshot, window, now, "synthetic"), window)
    feedback_panel(ctx, user, now)


def synthetic_panel(numbers: dict[str, Any], window: timedelta) -> None:
    """Comparisons and test sets, outside the SLOs but in sight: a broken run still shows."""
    st.subheader("Synthetic traffic")
    show.caption(
        f"Comparisons and test sets in the last {describe_span(window)}: no user waited "
        "for them, so they are left out of the numbers above."
    )
    cols = st.columns(4)
    jobs = numbers["jobs_succeeded"] + numbers["jobs_failed"]
    cols[0].metric("Synthetic jobs", f"{jobs:,}")
    cols[1].metric("Failed jobs", f"{numbers['jobs_failed']:,}")
    success = numbers["success_rate"]
    cols[2].metric("Request success", "—" if success is None else f"{success * 100:.2f} %")
    cols[3].metric("Cost", f"${numbers['cost']['cost_usd']:,.4f}")


def alert_banner(alerts: dict[str, Any]) -> None:
    """An error banner when a page rule fires, a warning for a ticket rule, nothing when ok."""
    state = alerts["state"]
    if state not in BANNER:
        return
    firing = [r for r in alerts["rules"] if r["firing"] and r["severity"] == state]
    slos = sorted({r["slo"] for r in firing})
    detail = "; ".join(
        f"{r['slo']} burn {r['long_burn_rate']:.1f}× over {r['long_window']} and "
        f"{r['short_burn_rate']:.1f}× over {r['short_window']} > {r['threshold']:g}×"
        for r in firing
    )
    text = BANNER[state].format(slo=" and ".join(slos), detail=detail)
    show.alert("error" if state == PAGE else "warning", text)
    st.link_button("🕰️ Open the alert history", links.alert_history_url())


def _tile_row(row: list[tiles.Tile], columns: int = TILES_PER_ROW) -> None:
    """Tiles side by side; a neutral change is grey and has no arrow."""
    for column, tile in zip(st.columns(columns), row, strict=False):
        change = tile.change
        column.metric(
            tile.label,
            tile.value,
            None if change is None else change.text,
            delta_color="off" if change and change.neutral else DELTA_COLORS[tile.better],
            delta_arrow="off" if change and change.neutral else "auto",
            delta_description=tile.note if change else None,
            help=tile.help,
        )


def kpi_tiles(current: dict[str, Any], previous: dict[str, Any], window: timedelta) -> None:
    """The selected window's tiles, each with its change against the window before it."""
    row = tiles.window_tiles(current, previous, window)
    _tile_row(row[:TILES_PER_ROW])
    _tile_row(row[TILES_PER_ROW:])


def budget_row(current: dict[str, Any], window: timedelta) -> None:
    """Each SLO's 30-day error budget left, with what the selected window used of it."""
    _tile_row(tiles.budget_tiles(current, window))


def _charts(snapshot: Any, window: timedelta, now: datetime, current: dict[str, Any]) -> None:
    """The charts, a group to a tab: only the open tab's are computed and drawn (the first when
    the page opens), so a page opened at its address draws two charts here, not six. The persona
    tab's and the top errors come from ``current`` (the window's metrics), not queried again."""
    latency_tab, traffic_tab, persona_tab = st.tabs(
        CHART_TABS, key=CHART_TAB_PICK, on_change="rerun"
    )
    if latency_tab.open or traffic_tab.open:
        series = timeseries(snapshot, window, now)
    if latency_tab.open:
        with latency_tab:
            left, right = st.columns(2)
            with left:
                show.chart(charts.latency_figure(series, window))
            with right:
                show.chart(charts.success_rate_figure(series, window))
    if traffic_tab.open:
        with traffic_tab:
            show.chart(charts.traffic_figure(series, window))
            errors = errors_frame(current["top_errors"])  # the metrics' own, not queried again
            show.chart(charts.top_errors_figure(errors, window))
    if persona_tab.open:
        with persona_tab:
            left, right = st.columns(2)
            with left:
                personas = persona_frame(current["by_persona"])
                show.chart(charts.persona_latency_figure(personas, window))
            with right:
                show.chart(charts.persona_cost_figure(current["cost_by_persona"], window))


def cost_tiles(cost: dict[str, Any]) -> None:
    """The window's cost and cost per 1,000 replies; unpriced replies are said, not zeroed."""
    cols = st.columns(4)
    cols[0].metric("Cost of replies", f"${cost['cost_usd']:,.4f}", help="Priced replies only")
    per_1k = cost["cost_per_1k_replies"]
    cols[1].metric("Cost per 1k replies", "—" if per_1k is None else f"${per_1k:,.4f}")
    cols[2].metric(
        "Unpriced replies", f"{cost['unpriced_replies']:,}", help="Models without a price"
    )


def feedback_panel(ctx: AppContext, user: UserView, now: datetime) -> None:
    """Issues of the last seven days by category, and open high/critical feedback with links."""
    st.subheader("Feedback")
    st.caption(
        f"Issues of the last {FEEDBACK_DAYS} days and incidents open now, whatever the window "
        "above."
    )
    triage = ctx.triage
    since = (now - timedelta(days=FEEDBACK_DAYS - 1)).date()
    stats = triage.stats(FeedbackFilters(date_from=since), viewer=user)
    incidents = triage.search(
        FeedbackFilters(statuses=("open",), priorities=INCIDENT_PRIORITIES),
        viewer=user,
        sort="priority",
        limit=INCIDENT_LIMIT,
    )
    left, right = st.columns([2, 3])
    with left:
        show.chart(charts.feedback_categories_figure(stats.by_category, FEEDBACK_DAYS))
    with right:
        st.markdown(f"**Open incidents** ({len(incidents)})")
        st.caption("High or critical feedback still open, of any age.")
        if not incidents:
            st.caption("No open high or critical feedback. 🎉")
            return
        st.dataframe(
            [
                {
                    "Priority": row.priority,
                    "Category": row.category,
                    "Opened": row.created_at,
                    "Summary": row.description[:120],
                    "Link": (
                        links.chat_url(row.session_public_id)
                        if row.session_public_id
                        else links.explorer_url(row.id)
                    ),
                }
                for row in incidents
            ],
            hide_index=True,
            column_config={
                "Link": st.column_config.LinkColumn("Open", display_text="Open ↗"),
                "Opened": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            },
        )
