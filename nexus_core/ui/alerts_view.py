"""Widgets of the Alerts page (rules with their state, a rule form, silences, webhooks, a check
now button) and of the Alert history page (every alert, one alert's timeline and deliveries).
Every change goes through ``AlertService`` and is audited there; outcomes are told by
``notices``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

import streamlit as st

from nexus_core.alerts import rules as alert_rules
from nexus_core.alerts.rules import RuleSpec
from nexus_core.alerts.service import AlertView, CheckReport
from nexus_core.app_context import AppContext
from nexus_core.errors import ValidationError
from nexus_core.ui import links, notices, show
from nexus_core.users import UserView

# Widget and session keys of the Alerts pages.
NOTICE: Final = "nexus_alerts_notice"
RULE_PICK: Final = "nexus_alerts_rule"
RULE_FORM: Final = "nexus_alerts_rule_form"
RULE_NAME: Final = "nexus_alerts_rule_name"
RULE_KIND: Final = "nexus_alerts_rule_kind"
RULE_SEVERITY: Final = "nexus_alerts_rule_severity"
RULE_THRESHOLD: Final = "nexus_alerts_rule_threshold"
RULE_PARAMS: Final = "nexus_alerts_rule_params"
RULE_MISSING: Final = "nexus_alerts_rule_missing"
RULE_FOR: Final = "nexus_alerts_rule_for"
RULE_ENABLED: Final = "nexus_alerts_rule_enabled"
RULE_SAVE: Final = "nexus_alerts_rule_save"
RULE_DELETE: Final = "nexus_alerts_rule_delete"
SILENCE_FORM: Final = "nexus_alerts_silence_form"
SILENCE_HOURS: Final = "nexus_alerts_silence_hours"
SILENCE_REASON: Final = "nexus_alerts_silence_reason"
SILENCE_SAVE: Final = "nexus_alerts_silence_save"
UNSILENCE: Final = "nexus_alerts_unsilence"
WEBHOOK_FORM: Final = "nexus_alerts_webhook_form"
WEBHOOK_URL: Final = "nexus_alerts_webhook_url"
WEBHOOK_ADD: Final = "nexus_alerts_webhook_add"
WEBHOOK_REMOVE_PREFIX: Final = "nexus_alerts_webhook_remove_"
CHECK_NOW: Final = "nexus_alerts_check_now"
NEW_RULE: Final = "➕ New rule"
FROM_SETTINGS: Final = "from NEXUS_ALERT_WEBHOOK_URLS"
ADDED_HERE: Final = "added here"
STATE_ICONS: Final = {
    "firing": "🚨",
    "pending": "⏳",
    "resolved": "✅",
    "ok": "🟢",
    "error": "⚠️",
}
DEFAULT_PARAMS: Final = {
    spec.kind: spec.params for spec in reversed(alert_rules.default_rules())
}  # the first default rule of each kind gives a new rule's parameters
MISSING_LABELS: Final = {
    alert_rules.MISSING_OK: "counts as ok",
    alert_rules.MISSING_BREACHING: "counts as breaching",
    alert_rules.MISSING_KEEP: "keeps the alert as it is",
}


def _time(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def rules_table(ctx: AppContext) -> None:
    """Every rule with its current state, value, threshold and silence."""
    open_by_rule = {a.rule_id: a for a in ctx.alerts.open_alerts()}
    now = datetime.now(UTC)
    rows = []
    for rule in ctx.alerts.rules():
        alert = open_by_rule.get(rule.id or 0)
        state = alert.state if alert else ("ok" if rule.enabled else "off")
        rows.append(
            {
                "State": f"{STATE_ICONS.get(state, '⚪')} {state}",
                "Rule": rule.name,
                "Severity": rule.severity,
                "Value": alert_rules.format_value(rule.kind, alert.value) if alert else "",
                "Threshold": f"{alert_rules.comparison(rule.kind)} "
                f"{alert_rules.format_value(rule.kind, rule.threshold)}",
                "For": f"{rule.for_minutes} min",
                "No data": MISSING_LABELS[rule.missing_data],
                "Silenced until": _time(rule.silenced_until) if rule.silenced(now) else "",
            }
        )
    st.dataframe(rows, hide_index=True)


def check_now(ctx: AppContext) -> None:
    """A button that evaluates every rule now (as ``nexus alerts check``)."""
    if st.button("Check now", key=CHECK_NOW, help="Evaluate every rule now and send what changed"):
        notices.act(ctx.alerts.check, success=_checked, key=NOTICE)
        st.rerun()


def _checked(report: CheckReport) -> str:
    firing = sum(r.state == "firing" for r in report.results)
    return f"Checked {len(report.results)} rules: {firing} firing, {report.notified} messages sent."


def _rule_choice(ctx: AppContext) -> RuleSpec | None:
    rules = {r.id: r for r in ctx.alerts.rules()}
    options: list[int | None] = [None, *rules]
    picked = st.selectbox(
        "Rule to edit",
        options,
        format_func=lambda i: NEW_RULE if i is None else rules[i].name,
        key=RULE_PICK,
    )
    return None if picked is None else rules[picked]


def rule_editor(ctx: AppContext, user: UserView) -> None:
    """Pick a rule (or a new one) and edit it; silence it or delete it."""
    show.subheader("Edit a rule")
    rule = _rule_choice(ctx)
    _rule_form(ctx, user, rule)
    if rule is not None:
        _silence_form(ctx, user, rule)
        if st.button("Delete this rule", key=RULE_DELETE, type="secondary"):
            notices.act(
                lambda: ctx.alerts.delete_rule(rule.id or 0, user),
                success=f"Rule {rule.name} deleted.",
                key=NOTICE,
            )
            st.rerun()


def _rule_form(ctx: AppContext, user: UserView, rule: RuleSpec | None) -> None:
    suffix = "new" if rule is None else str(rule.id)
    with st.form(f"{RULE_FORM}_{suffix}"):
        name = st.text_input(
            "Name", value="" if rule is None else rule.name, key=f"{RULE_NAME}_{suffix}"
        )
        kinds = list(alert_rules.RULE_KINDS)
        kind = st.selectbox(
            "Kind",
            kinds,
            index=kinds.index(rule.kind) if rule else 0,
            format_func=alert_rules.KIND_LABELS.__getitem__,
            key=f"{RULE_KIND}_{suffix}",
        )
        left, middle, right = st.columns(3)
        severity = left.radio(
            "Severity",
            alert_rules.SEVERITIES,
            index=alert_rules.SEVERITIES.index(rule.severity) if rule else 1,
            horizontal=True,
            key=f"{RULE_SEVERITY}_{suffix}",
        )
        threshold = middle.number_input(
            "Threshold",
            min_value=0.0,
            value=rule.threshold if rule else 1.0,
            key=f"{RULE_THRESHOLD}_{suffix}",
        )
        for_minutes = right.number_input(
            "Breaching for (minutes) before it fires",
            min_value=0,
            max_value=alert_rules.MAX_FOR_MINUTES,
            value=rule.for_minutes if rule else 0,
            key=f"{RULE_FOR}_{suffix}",
        )
        params = st.text_area(
            "Parameters (JSON): windows like 5m or 1h; slo; provider and model; hours 08-18 "
            "and days mon-fri (UTC)",
            value=json.dumps(rule.params if rule else DEFAULT_PARAMS.get(kind, {})),
            key=f"{RULE_PARAMS}_{suffix}",
        )
        missing = st.selectbox(
            "When there is no data, it",
            alert_rules.MISSING_DATA,
            index=alert_rules.MISSING_DATA.index(rule.missing_data) if rule else 0,
            format_func=MISSING_LABELS.__getitem__,
            key=f"{RULE_MISSING}_{suffix}",
        )
        enabled = st.checkbox(
            "Enabled", value=rule.enabled if rule else True, key=f"{RULE_ENABLED}_{suffix}"
        )
        if st.form_submit_button("Save rule", key=f"{RULE_SAVE}_{suffix}"):
            spec = lambda: RuleSpec(  # noqa: E731 - built inside the action: bad JSON is told
                name,
                kind,
                severity or alert_rules.TICKET,
                threshold,
                _params(params),
                missing,
                int(for_minutes),
                enabled,
                None if rule is None else rule.id,
            )
            notices.act(
                lambda: ctx.alerts.save_rule(spec(), user),
                success=lambda saved: f"Rule {saved.name} saved.",
                key=NOTICE,
            )
            st.rerun()


def _params(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise ValidationError('Parameters are a JSON object, like {"window": "5m"}.') from exc
    if not isinstance(value, dict):
        raise ValidationError('Parameters are a JSON object, like {"window": "5m"}.')
    return value


def _silence_form(ctx: AppContext, user: UserView, rule: RuleSpec) -> None:
    now = datetime.now(UTC)
    if rule.silenced(now):
        show.info(f"Silenced until {_time(rule.silenced_until)}: {rule.silence_reason}")
        if st.button("End the silence", key=UNSILENCE):
            notices.act(
                lambda: ctx.alerts.unsilence(rule.id or 0, user),
                success="Silence ended.",
                key=NOTICE,
            )
            st.rerun()
        return
    with st.form(f"{SILENCE_FORM}_{rule.id}"):
        hours = st.number_input(
            "Silence for (hours)", 0.25, 24.0 * 30, 2.0, key=f"{SILENCE_HOURS}_{rule.id}"
        )
        reason = st.text_input("Why", key=f"{SILENCE_REASON}_{rule.id}")
        if st.form_submit_button("Silence this rule", key=f"{SILENCE_SAVE}_{rule.id}"):
            until = datetime.now(UTC) + timedelta(hours=hours)
            notices.act(
                lambda: ctx.alerts.silence(rule.id or 0, until, reason, user),
                success=f"Silenced until {_time(until)}.",
                key=NOTICE,
            )
            st.rerun()


def webhooks_admin(ctx: AppContext, user: UserView) -> None:
    """The webhooks messages go to (shown by host and hash: a URL may be a secret)."""
    show.subheader("Webhooks")
    show.caption(
        "Each alert message is POSTed as JSON that is also a Slack message; with "
        "NEXUS_ALERT_WEBHOOK_SECRET set it carries an X-Nexus-Signature header."
    )
    for hook in ctx.alerts.webhooks():
        left, right = st.columns([4, 1])
        left.write(
            f"🔗 {show.plain(hook.label)} ({FROM_SETTINGS if hook.id is None else ADDED_HERE})"
        )
        if hook.id is not None and right.button("Remove", key=f"{WEBHOOK_REMOVE_PREFIX}{hook.id}"):
            notices.act(
                partial(ctx.alerts.remove_webhook, hook.id, user),
                success="Webhook removed.",
                key=NOTICE,
            )
            st.rerun()
    with st.form(WEBHOOK_FORM, clear_on_submit=True):
        url = st.text_input("Webhook URL", type="password", key=WEBHOOK_URL)
        if st.form_submit_button("Add webhook", key=WEBHOOK_ADD):
            notices.act(
                lambda: ctx.alerts.add_webhook(url, user),
                success=lambda hook: f"Webhook {hook.label} added.",
                key=NOTICE,
            )
            st.rerun()


# --- Alert history --------------------------------------------------------------------------


def history_table(ctx: AppContext) -> None:
    """Every alert, newest first, each with a link to its timeline."""
    alerts = ctx.alerts.history()
    if not alerts:
        show.info("No alert has fired or been pending yet.")
        return
    st.dataframe(
        [
            {
                "State": f"{STATE_ICONS.get(a.state, '')} {a.state}",
                "Rule": a.rule_name,
                "Severity": a.severity,
                "Value": alert_rules.format_value(a.kind, a.value),
                "Started": _time(a.started_at),
                "Resolved": _time(a.resolved_at),
                "Open": links.alert_history_url(a.id),
            }
            for a in alerts
        ],
        hide_index=True,
        column_config={"Open": st.column_config.LinkColumn("Open", display_text="Open ↗")},
    )


def alert_detail(ctx: AppContext, alert_id: int) -> None:
    """One alert: summary, links, its timeline and every delivery."""
    alert = notices.act(lambda: ctx.alerts.get(alert_id))
    if alert is None:
        return
    show.subheader(f"{STATE_ICONS.get(alert.state, '')} {alert.summary}")
    _alert_links(alert)
    show.caption(
        f"Started {_time(alert.started_at)} · fired {_time(alert.fired_at)} · "
        f"resolved {_time(alert.resolved_at)} · severity {alert.severity}"
    )
    st.markdown("**Timeline**")
    st.dataframe(
        [
            {
                "When": step["at"],
                "State": step["state"],
                "Value": alert_rules.format_value(alert.kind, step["value"]),
            }
            for step in alert.timeline
        ],
        hide_index=True,
    )
    st.markdown("**Deliveries**")
    deliveries = ctx.alerts.deliveries(alert.id)
    if not deliveries:
        show.caption("No message about this alert (it never fired).")
        return
    st.dataframe(
        [
            {
                "Message": d.state + (" (again)" if d.sequence else ""),
                "Status": d.notification_status,
                "Webhook": d.target or "—",
                "Sent": "" if d.sent is None else ("yes" if d.sent else "no"),
                "Attempts": d.attempts,
                "HTTP": d.status_code,
                "Reason": d.error or "",
                "When": _time(d.at),
            }
            for d in deliveries
        ],
        hide_index=True,
    )


def _alert_links(alert: AlertView) -> None:
    """Buttons to the dashboard at the alert's window and to its workbench query (app paths the
    service built; not Markdown)."""
    left, right = st.columns(2)
    if alert.links.get("dashboard"):
        left.link_button("📈 Dashboard at the alert's window", alert.links["dashboard"])
    if alert.links.get("workbench"):
        right.link_button("🧪 Offending events in the workbench", alert.links["workbench"])
