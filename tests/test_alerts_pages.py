"""The Alerts and Alert history pages through AppTest: an admin sees the seeded rules with their
state, adds a rule and a webhook, is told what is wrong with bad parameters, silences a rule
(audited); the history shows an alert's timeline and deliveries; the dashboard's burn-rate banner
links to the history; members cannot open either page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from nexus_core import audit
from nexus_core.alerts import rules as alert_rules
from nexus_core.alerts.rules import RuleSpec
from nexus_core.app_context import AppContext
from nexus_core.ui import alerts_view, links, state
from nexus_core.ui.guard import ACCESS_DENIED
from nexus_core.ui.nav import page_path
from nexus_core.users import pages_for
from tests.apptest import seen_text, signed_in_app
from tests.fakes.receiver import Receiver
from tests.test_alerts import write_requests

PASSWORD = "correct-horse-1"


@pytest.fixture
def app_ctx(app_env: AppContext) -> AppContext:
    ctx = app_env
    ctx.init()
    ctx.users.create("mia", PASSWORD)
    ctx.users.create("ada", PASSWORD, role="admin")
    return ctx


def all_text(at) -> str:  # type: ignore[no-untyped-def]
    parts = [
        seen_text(e.value)
        for e in [
            *at.markdown,
            *at.subheader,
            *at.warning,
            *at.caption,
            *at.error,
            *at.success,
            *at.info,
        ]
    ]
    return "\n".join(parts)


def table_rows(at, index: int = 0) -> list[dict]:  # type: ignore[no-untyped-def]
    return at.dataframe[index].value.to_dict("records")


def test_an_admin_sees_the_seeded_rules_with_their_state(app_ctx: AppContext) -> None:
    at = signed_in_app("ada", page="alerts")

    assert not at.exception
    rows = table_rows(at)
    names = [row["Rule"] for row in rows]
    assert "Latency SLO burn 60m & 5m > 14.4×" in names
    assert "Success SLO burn 3d & 6h > 1×" in names
    first = rows[0]
    assert first["State"] == "🟢 ok" and first["Severity"] == "page"
    assert first["Threshold"] == "> 14.40×"
    silent = next(r for r in rows if r["Rule"].startswith("No traffic"))
    assert silent["State"] == "⚪ off"


def test_an_admin_adds_a_rule_with_the_form(app_ctx: AppContext) -> None:
    at = signed_in_app("ada", page="alerts")
    suffix = "new"
    at.text_input(key=f"{alerts_view.RULE_NAME}_{suffix}").set_value("Slow replies")
    at.selectbox(key=f"{alerts_view.RULE_KIND}_{suffix}").set_value(alert_rules.LATENCY_P95)
    at.number_input(key=f"{alerts_view.RULE_THRESHOLD}_{suffix}").set_value(4000.0)
    at.text_area(key=f"{alerts_view.RULE_PARAMS}_{suffix}").set_value('{"window": "10m"}')
    at.button(key=f"{alerts_view.RULE_SAVE}_{suffix}").click().run()

    assert not at.exception
    assert "Rule Slow replies saved." in all_text(at)
    saved = next(r for r in app_ctx.alerts.rules() if r.name == "Slow replies")
    assert (saved.kind, saved.threshold, saved.params) == (
        alert_rules.LATENCY_P95,
        4000.0,
        {"window": "10m"},
    )
    created = audit.search(
        app_ctx.db, audit.AuditQuery(actions=(audit.ALERT_RULE_CREATED,)), limit=5
    )
    assert created


def test_bad_parameters_are_explained_and_nothing_is_stored(app_ctx: AppContext) -> None:
    before = len(app_ctx.alerts.rules())
    at = signed_in_app("ada", page="alerts")
    at.text_input(key=f"{alerts_view.RULE_NAME}_new").set_value("Broken")
    at.text_area(key=f"{alerts_view.RULE_PARAMS}_new").set_value("{not json")
    at.button(key=f"{alerts_view.RULE_SAVE}_new").click().run()

    assert not at.exception
    assert "Parameters are a JSON object" in all_text(at)
    assert len(app_ctx.alerts.rules()) == before


def test_an_admin_silences_a_rule_with_a_reason_and_it_is_audited(app_ctx: AppContext) -> None:
    rule = app_ctx.alerts.rules()[0]
    at = signed_in_app("ada", page="alerts")
    at.selectbox(key=alerts_view.RULE_PICK).set_value(rule.id).run()
    at.text_input(key=f"{alerts_view.SILENCE_REASON}_{rule.id}").set_value("Provider outage")
    at.button(key=f"{alerts_view.SILENCE_SAVE}_{rule.id}").click().run()

    assert not at.exception
    assert "Silenced until" in all_text(at)
    stored = app_ctx.alerts.rule(rule.id or 0)
    assert stored.silence_reason == "Provider outage"
    assert stored.silenced(datetime.now(UTC))
    [event] = audit.search(app_ctx.db, audit.AuditQuery(actions=(audit.ALERT_SILENCED,)), limit=5)
    assert event.actor_name == "ada" and event.details["reason"] == "Provider outage"


def test_an_added_webhook_is_shown_by_host_and_hash_never_by_its_url(app_ctx: AppContext) -> None:
    url = "https://hooks.example.com/services/T000/B000/very-secret-token"
    at = signed_in_app("ada", page="alerts")
    at.text_input(key=alerts_view.WEBHOOK_URL).set_value(url)
    at.button(key=alerts_view.WEBHOOK_ADD).click().run()

    assert not at.exception
    text = all_text(at)
    assert "hooks.example.com #" in text
    assert "very-secret-token" not in text
    assert app_ctx.alerts.webhook_urls() == [url]


def test_the_history_shows_an_alert_with_its_timeline_and_deliveries(
    app_ctx: AppContext,
) -> None:
    admin = app_ctx.users.get("ada")
    now = datetime.now(UTC)
    for rule in app_ctx.alerts.rules():
        app_ctx.alerts.delete_rule(rule.id or 0, admin)
    app_ctx.alerts.save_rule(
        RuleSpec("p95 over 2 s", alert_rules.LATENCY_P95, "page", 2000.0, {"window": "5m"}),
        admin,
    )
    write_requests(
        app_ctx.settings.event_log_path, now - timedelta(minutes=5), now, latency_ms=4000
    )
    with Receiver() as receiver:
        app_ctx.alerts.add_webhook(receiver.url, admin)
        app_ctx.alerts.check(now)
    (alert,) = app_ctx.alerts.history()

    at = signed_in_app("ada", page="alert_history", query={links.ALERT_QUERY_PARAM: str(alert.id)})

    assert not at.exception
    text = all_text(at)
    assert "p95 over 2 s: 4,000 ms (threshold > 2,000 ms)" in text
    targets = [b.proto.url for b in at.get("link_button")]
    assert "/dashboard?window=5m" in targets
    assert any(t.startswith("/workbench?sql=SELECT") for t in targets)
    timeline = table_rows(at, 0)
    assert [row["State"] for row in timeline] == ["pending", "firing"]
    deliveries = table_rows(at, 1)
    assert [(d["Message"], d["Status"], d["Sent"]) for d in deliveries] == [
        ("firing", "sent", "yes")
    ]
    listing = table_rows(at, 2)
    assert listing[0]["Rule"] == "p95 over 2 s" and listing[0]["State"] == "🚨 firing"


def test_members_cannot_open_the_alert_pages(app_ctx: AppContext) -> None:
    mia = app_ctx.users.get("mia")
    assert not {"alerts", "alert_history"} & set(pages_for(mia, env="test"))  # not in the menu
    for page in ("alerts", "alert_history"):  # nor reached directly
        at = AppTest.from_file(page_path(page), default_timeout=60)
        at.session_state[state.AUTH_STATUS] = True
        at.session_state[state.USER_ID] = mia.id
        at.run()
        assert [e.value for e in at.error] == [ACCESS_DENIED]


def test_the_dashboard_banner_links_to_the_alert_history(app_ctx: AppContext) -> None:
    now = datetime.now(UTC)
    write_requests(
        app_ctx.settings.event_log_path, now - timedelta(hours=1), now, failure_share=0.1
    )

    at = signed_in_app("ada", page="dashboard")

    assert not at.exception
    assert any("Page: the success SLO" in seen_text(e.value) for e in at.error), [
        e.value for e in at.error
    ]
    assert links.alert_history_url() in [b.proto.url for b in at.get("link_button")]
