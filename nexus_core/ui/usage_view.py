"""The Usage page: everyone's own usage and budgets; for analysts and admins the organisation's
cost and tokens by user, persona, model and channel (its cost per day in a tab of its own); for
admins the price table and budgets, each in an expander.

The cost-per-day tab and the admin expanders are lazy: what they hold is computed and drawn only
while they are open, so a page opened at its address neither loads the chart code nor reads the
log for the per-day rows, nor builds the admin forms."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import polars as pl
import streamlit as st

from nexus_core.analytics.dashboard_charts import cost_trend_figure
from nexus_core.analytics.windows import parse_window
from nexus_core.app_context import AppContext
from nexus_core.cost.budgets import BudgetView
from nexus_core.cost.prices import SIMULATED_NOTE
from nexus_core.cost.usage import USAGE_KEYS, cache_share, per_reply, per_session, usage_reports
from nexus_core.ui import notices, show
from nexus_core.users import UserView

T = TypeVar("T")
WINDOWS: Final = {"Last 24 hours": "24h", "Last 7 days": "7d", "Last 30 days": "30d"}
NOTICE_KEY: Final = "usage_notice"
KEY_LABELS: Final = {"user": "User", "persona": "Persona", "model": "Model", "channel": "Channel"}
# The organisation's tabs, in order; the first is open when the page opens.
ORG_TAB_PICK: Final = "usage_org_tab"
ORG_TABS: Final = ("Breakdown", "Cost per day")
PRICES_LABEL: Final = "Prices (USD per million tokens)"
BUDGETS_LABEL: Final = "Budgets"
PRICES_OPEN: Final = "usage_prices_open"
BUDGETS_OPEN: Final = "usage_budgets_open"


def _reports(
    ctx: AppContext, window: str, breakdowns: list[list[str]], user_id: int | None = None
) -> list[dict[str, Any]]:
    """The usage of ``window`` broken down each way of ``breakdowns``, in one pass."""
    names = {u.id: u.username for u in ctx.users.list()}
    return usage_reports(
        ctx.event_store,
        window,
        datetime.now(UTC),
        breakdowns,
        user_names=names.get,
        user_id=user_id,
    )


def _table(rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        show.caption("No replies in this window.")
        return
    frame = pl.DataFrame(
        [
            {KEY_LABELS.get(k, k.title()): row[k] for k in keys}
            | {
                "Cost (USD)": row["cost_usd"],
                "Replies": row["replies"],
                "Unpriced replies": row["unpriced_replies"],
                "Input tokens": row["input_tokens"],
                "Cached input": row["cached_input_tokens"],
                "Output tokens": row["output_tokens"],
                "Reasoning tokens": row["reasoning_tokens"],
                "Cost per reply": per_reply(row),
                "Cost per session": per_session(row),
                "Cache hits": cache_share(row),
            }
            for row in rows
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "Cost (USD)": st.column_config.NumberColumn(format="$%.4f"),
            "Cost per reply": st.column_config.NumberColumn(format="$%.5f"),
            "Cost per session": st.column_config.NumberColumn(format="$%.4f"),
            "Cache hits": st.column_config.NumberColumn(format="percent"),
        },
    )


def _tiles(total: dict[str, Any]) -> None:
    cols = st.columns(4)
    cols[0].metric("Cost", f"${total['cost_usd']:,.4f}")
    cols[1].metric("Replies", f"{total['replies']:,}")
    cols[2].metric("Tokens in / out", f"{total['input_tokens']:,} / {total['output_tokens']:,}")
    cols[3].metric("Unpriced replies", f"{total['unpriced_replies']:,}")
    if total["unpriced_replies"]:
        show.warning(
            f"{total['unpriced_replies']} replies used a model without a price: their tokens are "
            "counted, their cost is not. An admin can add the price below."
        )


def _budget_lines(budgets: list[BudgetView]) -> None:
    for budget in budgets:
        what = "stops new messages" if budget.hard else "warns"
        show.text(f"{budget.owner.capitalize()} budget ({what}): {budget.summary()}.")
        st.progress(min(budget.percent / 100, 1.0))


def my_usage(ctx: AppContext, user: UserView) -> None:
    """The signed-in person's own tokens and cost, by persona and day, and their budgets."""
    show.subheader("My usage")
    label = st.segmented_control("Window", list(WINDOWS), default="Last 30 days", key="my_window")
    window = WINDOWS[label or "Last 30 days"]
    (report,) = _reports(ctx, window, [["persona", "day"]], user_id=user.id)
    _tiles(report["total"])
    _table(report["rows"], ["persona", "day"])
    mine = [b for b in ctx.budgets.list_budgets() if b.scope == "user" and b.target_id == user.id]
    _budget_lines(mine)


def organisation_usage(ctx: AppContext) -> None:
    """Cost and tokens of everyone, broken down by one or two of user, persona, model, channel."""
    show.subheader("Organisation")
    label = st.segmented_control("Window", list(WINDOWS), default="Last 30 days", key="org_window")
    by = st.multiselect(
        "Break down by (one or two)",
        list(USAGE_KEYS),
        default=["user"],
        max_selections=2,
        format_func=KEY_LABELS.get,
        key="usage_by",
    )
    window = WINDOWS[label or "Last 30 days"]
    keys = by or ["user"]
    # Only the open tab's rows are read: the per-day ones (and the chart) once it is opened.
    breakdown_tab, per_day_tab = st.tabs(ORG_TABS, key=ORG_TAB_PICK, on_change="rerun")
    report, *per_day = _reports(ctx, window, [keys, ["day"]] if per_day_tab.open else [keys])
    _tiles(report["total"])
    if breakdown_tab.open:
        with breakdown_tab:
            _table(report["rows"], keys)
    if per_day_tab.open:
        with per_day_tab:
            show.chart(cost_trend_figure(per_day[0]["rows"], parse_window(window)))
    _budget_lines(ctx.budgets.list_budgets())


def _saved(action: Callable[[], T], success: Callable[[T], str]) -> bool:
    """Run an admin change: its success is told after the rerun that shows it, its error now."""
    if notices.act(action, success=success, key=NOTICE_KEY) is None:
        notices.show(NOTICE_KEY)
        return False
    return True


def admin_settings(ctx: AppContext, user: UserView) -> None:
    """Prices and budgets, each in an expander built only while it is open; the notice of the
    last change above them, so it shows whichever is open."""
    notices.show(NOTICE_KEY)
    prices = st.expander(PRICES_LABEL, key=PRICES_OPEN, on_change="rerun")
    if prices.open:
        with prices:
            prices_admin(ctx, user)
    budgets = st.expander(BUDGETS_LABEL, key=BUDGETS_OPEN, on_change="rerun")
    if budgets.open:
        with budgets:
            budgets_admin(ctx, user)


def prices_admin(ctx: AppContext, user: UserView) -> None:
    """The price table with its history, and a form for a new price version."""
    show.caption(f"A reply is costed at the price in effect when it ran; {SIMULATED_NOTE}.")
    with st.form("price_form", clear_on_submit=True):
        model = st.text_input("Model, or a prefix ending in *", placeholder="gemini-2.5-flash*")
        cols = st.columns(3)
        input_usd = cols[0].number_input("Input", min_value=0.0, step=0.05, format="%.4f")
        cached = cols[1].number_input(
            "Cached input (empty: input price)", min_value=0.0, value=None, format="%.4f"
        )
        output_usd = cols[2].number_input("Output (and reasoning)", min_value=0.0, format="%.4f")
        start = st.date_input("Effective from (UTC)", value=datetime.now(UTC).date())
        if st.form_submit_button("Add price"):
            added = _saved(
                lambda: ctx.prices.set_price(
                    model,
                    input_usd=input_usd,
                    output_usd=output_usd,
                    cached_input_usd=cached,
                    effective_from=start,
                    actor=user.username,
                    actor_id=user.id,
                ),
                lambda price: f"Price for {price.model} added.",
            )
            if added:
                st.rerun()
    prices = ctx.prices.list_prices()
    if prices:
        st.dataframe(
            [
                {
                    "Model": p.model,
                    "From": p.effective_from,
                    "Input": p.input_usd,
                    "Cached input": p.cached_input_usd,
                    "Output": p.output_usd,
                    "Added by": p.created_by,
                }
                for p in prices
            ],
            hide_index=True,
        )
    else:
        show.caption("No prices yet: every model but the simulated one is unpriced.")


def budgets_admin(ctx: AppContext, user: UserView) -> None:
    """Set or remove a monthly budget of a user or a persona."""
    with st.form("budget_form"):
        scope = st.radio("For", ["user", "persona"], horizontal=True)
        names = (
            [u.username for u in ctx.users.list()]
            if scope == "user"
            else [p.name for p in ctx.personas.list(include_inactive=True)]
        )
        name = st.selectbox("Name", names, index=None, placeholder="Choose…")
        monthly = st.number_input("Monthly budget (USD)", min_value=0.0, step=1.0, format="%.2f")
        hard = st.checkbox("Hard: refuse new messages once spent (soft only warns)")
        if st.form_submit_button("Set budget") and _saved(
            lambda: ctx.budgets.set_budget(
                scope, name or "", monthly, hard=hard, actor=user.username, actor_id=user.id
            ),
            lambda _budget: f"Budget for {name} set.",
        ):
            st.rerun()
