"""The Dashboard page through AppTest: KPI tiles, charts and the feedback panel for an admin with
logged traffic, the burn-rate banner during an outage, the empty state before anything is logged,
and that members and analysts never reach it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core.app_context import AppContext
from nexus_core.ops.events import ApiEventLogger, EventName
from nexus_core.ui import dashboard_view, state
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from tests.apptest import TIMEOUT, seen_text, signed_in_app
from tests.constants import PASSWORD

BUDGET_LABELS = {
    "Latency error budget left (30 days)",
    "Success error budget left (30 days)",
}
OTHER_LABELS = {
    "Average latency",
    "p95 latency (target 3 s)",
    "Success rate (objective 99.5%)",
    "Burn rate (faster SLO)",
    "Cost of replies",
    "Cost per 1k replies",
    "Unpriced replies",
}


def kpi_labels(per: str) -> set[str]:
    """The dashboard's tile labels when its rates count ``per`` minute, hour or day."""
    rates = {f"{name} per {per}" for name in ("Requests", "Failures", "Retries")}
    return rates | OTHER_LABELS | BUDGET_LABELS


KPI_LABELS = kpi_labels("minute")
SYNTHETIC_LABELS = {"Synthetic jobs", "Failed jobs", "Request success", "Cost"}
REPLY_COST_USD = 0.002  # each Nexus Assistant reply; Code Reviewer's model has no price


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    """A seeded database with the ``admin``, a member and an analyst."""
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD, role="member", display_name="Mia Member")
    ctx.users.create("ana", PASSWORD, role="analyst")
    return ctx


REQUESTS_PER_MINUTE = 5


class Clock:
    """A settable clock for the event logger."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def log_traffic(ctx: AppContext, *, outage: bool = False) -> None:
    """Five requests a minute over the last hour (one failed and retried, within the SLOs;
    slower for one persona) and, during an outage, thirty failed requests in the last 5 min."""
    clock = Clock()
    now = clock.at
    with ApiEventLogger(ctx.settings.event_log_path, clock=clock) as log:
        for minute in range(59, 0, -1):
            for k in range(REQUESTS_PER_MINUTE):
                clock.at = now - timedelta(minutes=minute, seconds=10 * k)
                persona = "Code Reviewer" if k % 2 else "Nexus Assistant"
                request_id = str(uuid.uuid4())
                log.emit(EventName.REQUEST_START, request_id=request_id, persona=persona)
                if (minute, k) == (50, 0):
                    log.emit(
                        EventName.REQUEST_FAILURE, request_id=request_id, error_type="http_503"
                    )
                    log.emit(EventName.JOB_RETRY, attempt=1)
                    request_id = str(uuid.uuid4())
                    log.emit(EventName.REQUEST_START, request_id=request_id, persona=persona)
                latency = 2400.0 if persona == "Code Reviewer" else 900.0
                log.emit(EventName.REQUEST_SUCCESS, request_id=request_id, latency_ms=latency - 99)
                cost = None if persona == "Code Reviewer" else REPLY_COST_USD
                log.emit(EventName.JOB_SUCCESS, latency_ms=latency, persona=persona, cost_usd=cost)
        if outage:
            for second in range(30):
                clock.at = now - timedelta(seconds=290 - 9 * second)
                request_id = str(uuid.uuid4())
                log.emit(EventName.REQUEST_START, request_id=request_id, persona="Nexus Assistant")
                log.emit(EventName.REQUEST_FAILURE, request_id=request_id, error_type="timeout")


def open_dashboard(username: str) -> AppTest:
    return signed_in_app(username, page="dashboard", timeout=TIMEOUT)


def test_an_admin_sees_kpis_charts_and_the_feedback_panel(app_ctx: AppContext) -> None:
    log_traffic(app_ctx)
    session_id = app_ctx.chat.create_session(app_ctx.users.get("mia"), "Nexus Assistant").public_id
    app_ctx.feedback.submit(
        app_ctx.users.get("mia"),
        category="bug",
        priority="critical",
        description="Replies cut off mid-sentence",
        session_public_id=session_id,
    )
    at = open_dashboard("admin")
    assert not at.exception
    assert "📈 Dashboard" in [t.value for t in at.title]
    tiles = {m.label: m for m in at.metric}
    assert set(tiles) == KPI_LABELS | SYNTHETIC_LABELS
    assert tiles["Synthetic jobs"].value == "0"
    assert tiles["Requests per minute"].value == f"{296 / 60:,.2f}"
    assert tiles["Failures per minute"].value == f"{1 / 60:,.2f}"
    assert tiles["Success rate (objective 99.5%)"].value == f"{100 * 295 / 296:.2f} %"
    # 3 of 5 replies a minute are priced at $0.002, for 59 minutes; the other 2 are unpriced.
    assert tiles["Cost of replies"].value == f"${59 * 3 * REPLY_COST_USD:,.4f}"
    assert tiles["Cost per 1k replies"].value == "$2.0000"
    assert tiles["Unpriced replies"].value == f"{59 * 2:,}"
    # The first chart tab's two charts, and the feedback panel's.
    assert [t.label for t in at.tabs] == list(dashboard_view.CHART_TABS)
    assert [t.split(" · ")[0] for t in chart_titles(at)] == [
        "Response latency",
        "API success rate",
        "Issues by category",
    ]
    assert any(c.value.startswith("Last updated ") for c in at.caption)
    assert not at.error and not at.warning
    assert "Feedback" in [s.value for s in at.subheader]
    assert "**Open incidents** (1)" in [m.value for m in at.markdown]
    incidents = at.dataframe[0].value
    assert list(incidents["Link"]) == [f"/chat?session={session_id}"]
    assert list(incidents["Priority"]) == ["critical"]


def test_an_outage_raises_the_page_banner(app_ctx: AppContext) -> None:
    log_traffic(app_ctx, outage=True)
    at = open_dashboard("admin")
    assert not at.exception
    assert len(at.error) == 1
    assert seen_text(at.error[0].value).startswith("Page: the success SLO is burning")


def test_the_window_selector_and_auto_refresh_toggle_rerender(app_ctx: AppContext) -> None:
    log_traffic(app_ctx)
    at = open_dashboard("admin")
    assert at.radio(key=dashboard_view.WINDOW_PICK).value == "60m"
    per_minute = {m.label: m.value for m in at.metric}["Requests per minute"]
    assert per_minute == f"{296 / 60:,.2f}"
    at.toggle(key=dashboard_view.AUTO_REFRESH).set_value(False).run()
    assert at.toggle(key=dashboard_view.AUTO_REFRESH).value is False
    at.radio(key=dashboard_view.WINDOW_PICK).set_value("24h").run()
    assert not at.exception
    assert at.radio(key=dashboard_view.WINDOW_PICK).value == "24h"
    assert {m.label for m in at.metric} == kpi_labels("hour") | SYNTHETIC_LABELS
    # The same 296 requests, now counted per hour of the day.
    assert {m.label: m.value for m in at.metric}["Requests per hour"] == f"{296 / 24:,.2f}"
    assert chart_titles(at)[:2] == [
        "Response latency · last 24 hours, per 15 min",
        "API success rate · last 24 hours, per 15 min",
    ]


def test_an_empty_log_shows_the_friendly_empty_state(app_ctx: AppContext) -> None:
    at = open_dashboard("admin")
    assert not at.exception
    assert [i.value for i in at.info] == [dashboard_view.EMPTY_STATE]
    assert not at.metric
    assert "Feedback" in [s.value for s in at.subheader]


@pytest.mark.parametrize("username", ["mia", "ana"])
def test_members_and_analysts_cannot_switch_to_the_dashboard(
    app_ctx: AppContext, username: str
) -> None:
    at = signed_in_app(username, timeout=TIMEOUT)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page_path("dashboard"))


def test_a_member_opening_the_page_script_directly_is_refused(app_ctx: AppContext) -> None:
    log_traffic(app_ctx)
    at = AppTest.from_file(page_path("dashboard"), default_timeout=TIMEOUT)
    at.session_state[state.AUTH_STATUS] = True
    at.session_state[state.USER_ID] = app_ctx.users.get("mia").id
    at.run()
    assert [e.value for e in at.error] == [ACCESS_DENIED]
    assert not at.metric and not at.get("plotly_chart")


def log_failing_test_set(ctx: AppContext, jobs: int = 30) -> None:
    """A test-set run against a broken model in the last five minutes: every request fails."""
    clock = Clock()
    now = clock.at
    with ApiEventLogger(ctx.settings.event_log_path, clock=clock) as log:
        for k in range(jobs):
            clock.at = now - timedelta(seconds=290 - 9 * k)
            run = {"run_id": "run-broken"}
            request_id = str(uuid.uuid4())
            log.emit(EventName.REQUEST_START, request_id=request_id, persona="Tester", **run)
            log.emit(EventName.REQUEST_FAILURE, request_id=request_id, error_type="http_500", **run)
            log.emit(EventName.JOB_FAILURE, job_id=request_id, attempts=4, error_type="x", **run)


def test_a_failing_test_set_run_is_left_out_of_the_slos_and_shown_apart(
    app_ctx: AppContext,
) -> None:
    log_traffic(app_ctx)
    log_failing_test_set(app_ctx)
    at = open_dashboard("admin")
    assert not at.exception
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Requests per minute"] == f"{296 / 60:,.2f}"  # the test set is not in it
    assert tiles["Success rate (objective 99.5%)"] == f"{100 * 295 / 296:.2f} %"
    assert not at.error  # no page banner for a test run
    assert (tiles["Synthetic jobs"], tiles["Failed jobs"]) == ("30", "30")
    assert any("User traffic:" in c.value for c in at.caption)

    at.radio(key=dashboard_view.TRAFFIC_PICK).set_value("all").run()
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Requests per minute"] == f"{(296 + 30) / 60:,.2f}"
    assert "Synthetic jobs" not in tiles
    assert any("All traffic:" in c.value for c in at.caption)
    assert any("page" in e.value.lower() or "burn" in e.value.lower() for e in at.error)


DAYS_REQUESTS = 60


def log_days(ctx: AppContext, *, failed: int) -> None:
    """Sixty requests spread over the last six days, none in the last hour; the first ``failed``
    of them fail (a demo install's week: few requests, a couple of failures)."""
    clock = Clock()
    now = clock.at
    with ApiEventLogger(ctx.settings.event_log_path, clock=clock) as log:
        for k in range(DAYS_REQUESTS):
            clock.at = now - timedelta(hours=2 + 2.3 * k)
            request_id = str(uuid.uuid4())
            log.emit(EventName.REQUEST_START, request_id=request_id, persona="Nexus Assistant")
            if k < failed:
                log.emit(EventName.REQUEST_FAILURE, request_id=request_id, error_type="http_503")
                continue
            log.emit(EventName.REQUEST_SUCCESS, request_id=request_id, latency_ms=800.0)
            log.emit(EventName.JOB_SUCCESS, latency_ms=900.0, persona="Nexus Assistant")


def captions(at: AppTest) -> list[str]:
    return [seen_text(c.value) for c in at.caption]


def test_every_number_says_its_window_and_the_budget_what_the_window_used(
    app_ctx: AppContext,
) -> None:
    log_days(app_ctx, failed=2)
    at = open_dashboard("admin")
    at.radio(key=dashboard_view.WINDOW_PICK).set_value("7d").run()
    assert not at.exception
    tiles = {m.label: m for m in at.metric}
    assert set(tiles) == kpi_labels("day") | SYNTHETIC_LABELS
    # 60 requests and 2 failures in a week read per day, not 0.00 per minute.
    assert tiles["Requests per day"].value == f"{60 / 7:,.2f}"
    assert tiles["Failures per day"].value == f"{2 / 7:,.2f}"
    assert tiles["Failures per day"].delta == f"+{2 / 7:,.2f}"
    assert tiles["Failures per day"].proto.delta_description == "vs the 7 days before"
    assert tiles["Success rate (objective 99.5%)"].value == f"{100 * 58 / 60:.2f} %"
    assert any(
        c.startswith("Last 7 days (")
        and c.endswith("against the 7 days before: 60 requests, 2 failures, 0 retries. "
                       "Rates per day.")
        for c in captions(at)
    )  # fmt: skip
    # The budget is the 30-day period's, says so, and says what this window used of it.
    allowed = (1 - 0.995) * 60
    budget = tiles["Success error budget left (30 days)"]
    assert budget.value == f"{100 * (1 - 2 / allowed):.1f} %"
    assert budget.delta == f"{-100 * 2 / allowed:+.1f} pp"
    assert budget.proto.delta_description == "used in the last 7 days"
    assert any(c.startswith("Error budgets of the last 30 days (") for c in captions(at))

    at.radio(key=dashboard_view.WINDOW_PICK).set_value("60m").run()
    tiles = {m.label: m for m in at.metric}
    # No request in the last hour: no success rate, and the overspent 30-day budget says the
    # hour used none of it, beside it rather than in a tooltip.
    assert tiles["Success rate (objective 99.5%)"].value == "—"
    budget = tiles["Success error budget left (30 days)"]
    assert budget.value == f"{100 * (1 - 2 / allowed):.1f} %"
    assert (budget.delta, budget.proto.delta_description) == ("none", "used in the last 60 min")
    assert (budget.proto.direction, budget.proto.color) == (budget.proto.NONE, budget.proto.GRAY)


def test_an_unchanged_number_is_neutral_with_no_arrow(app_ctx: AppContext) -> None:
    log_days(app_ctx, failed=2)
    at = open_dashboard("admin")
    at.radio(key=dashboard_view.WINDOW_PICK).set_value("30d").run()
    tiles = {m.label: m for m in at.metric}
    retries = tiles["Retries per day"]  # none now, none before
    assert (retries.value, retries.delta) == ("0.00", "no change")
    assert (retries.proto.direction, retries.proto.color) == (
        retries.proto.NONE,
        retries.proto.GRAY,
    )
    failures = tiles["Failures per day"]  # more failures than the 30 days before: red, up
    assert (failures.value, failures.delta) == (f"{2 / 30:,.2f}", f"+{2 / 30:,.2f}")
    assert (failures.proto.direction, failures.proto.color) == (
        failures.proto.UP,
        failures.proto.RED,
    )


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_charts_with_nothing_to_draw_say_what_would_appear_instead_of_blank_axes(
    app_ctx: AppContext,
) -> None:
    log_days(app_ctx, failed=0)
    at = open_dashboard("admin")
    at.radio(key=dashboard_view.WINDOW_PICK).set_value("7d").run()
    assert not at.exception
    # Each chart tab draws (and computes) its charts once it is open: what each one shows.
    titles, seen, bold = [], [], []
    for tab in dashboard_view.CHART_TABS:
        at.session_state[dashboard_view.CHART_TAB_PICK] = tab
        at.run()
        assert not at.exception
        titles.append(chart_titles(at))
        seen += captions(at)
        bold += [seen_text(m.value) for m in at.markdown]
    no_errors = "No failed requests in the last 7 days — error types would be listed here"
    assert f"📭 {no_errors}, most frequent first." in seen
    assert any(c.startswith("📭 No feedback in the last 7 days — ") for c in seen)
    assert any(
        c.startswith("📭 No priced replies in the last 7 days (60 without a price)") for c in seen
    )
    assert titles == [
        [
            "Response latency · last 7 days, per 2 hours",
            "API success rate · last 7 days, per 2 hours",
        ],
        ["Requests, failures and retries · last 7 days, per 2 hours"],
        ["Latency by persona · last 7 days"],
    ]
    assert "**Top error types · last 7 days**" in bold
    assert "**Cost by persona · last 7 days**" in bold
