"""`AlertService`: the rules (admins manage them, every change audited), silences, webhooks, the
evaluation of every rule (``check``) and the alerts' history.

**Lifecycle.** A rule that breaches opens an alert, *pending*; once it has breached for the
rule's ``for_minutes`` the alert is *firing* and a message goes out; when the rule stops
breaching the alert is *resolved* and a second message goes out (a pending alert that clears
resolves quietly: it never fired). While it keeps firing, a re-notification goes out every
``renotify`` (0: never). Each step is written to the alert's ``timeline``.

**No duplicates.** A rule is evaluated under its row's lock (``FOR UPDATE`` on PostgreSQL, the
write lock on SQLite), so two evaluators take turns and the second sees the first's alert. A
message is *claimed* in that same transaction as a notification row unique by (alert, state,
sequence); only the claimer sends it. The lease (``lease``) keeps replicas from all doing the
work; the claim is what makes a duplicate impossible even without it (``nexus alerts check``
runs beside the scheduler).

**Delivery** happens after the evaluation has committed, so a slow or dead webhook delays
nothing but its own message; each webhook's outcome is recorded (``alert_deliveries``). A
silenced rule's messages are claimed as ``silenced`` and not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Final
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.alerts import rules as alert_rules
from nexus_core.alerts.rules import Context, Measurement, RuleSpec, measure, spec_from_row
from nexus_core.alerts.webhooks import WebhookSender, check_url, message, target_label
from nexus_core.analytics.log_store import EventStore
from nexus_core.analytics.windows import format_window
from nexus_core.cost.budgets import BudgetService
from nexus_core.db.columns import Clock, utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import (
    Alert,
    AlertDelivery,
    AlertNotification,
    AlertRule,
    AlertWebhook,
)
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.ops.events import format_ts
from nexus_core.users import UserView

log = logging.getLogger("nexus.alerts")

PENDING: Final = "pending"
FIRING: Final = "firing"
RESOLVED: Final = "resolved"
OK: Final = "ok"
OPEN_STATES: Final = (PENDING, FIRING)
# Notification statuses: claimed and being sent, sent (every webhook took it), failed (one or
# more did not), silenced (the rule was muted), none (no webhook configured).
SENT: Final = "sent"
FAILED: Final = "failed"
SILENCED: Final = "silenced"
NO_WEBHOOK: Final = "none"
HISTORY_LIMIT: Final = 200
MAX_REASON_CHARS: Final = 500
TRAFFIC: Final = "user"  # alerts watch what users wait for, as the dashboard does by default
# App paths (the same as ``nexus_core.ui.links`` reads): the history, dashboard and workbench.
HISTORY_PATH: Final = "/alert_history"
DASHBOARD_PATH: Final = "/dashboard"
WORKBENCH_PATH: Final = "/workbench"


@dataclass(frozen=True)
class AlertView:
    """One alert as plain data, with its rule's name and kind."""

    id: int
    rule_id: int
    rule_name: str
    kind: str
    state: str
    severity: str
    value: float | None
    threshold: float
    summary: str
    started_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    evaluated_at: datetime
    timeline: list[dict[str, Any]]
    links: dict[str, str]


@dataclass(frozen=True)
class DeliveryView:
    """One webhook's outcome for one message about an alert."""

    state: str
    sequence: int
    notification_status: str
    target: str | None
    sent: bool | None
    attempts: int
    status_code: int | None
    error: str | None
    at: datetime


@dataclass(frozen=True)
class RuleResult:
    """What one evaluation found for a rule: its state after it, value and threshold."""

    rule: RuleSpec
    state: str  # ok | pending | firing | resolved | error
    value: float | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "state": self.state,
            "severity": self.rule.severity,
            "value": self.value,
            "threshold": self.rule.threshold,
        }


@dataclass(frozen=True)
class CheckReport:
    """Every enabled rule's outcome and how many messages reached at least one webhook."""

    results: list[RuleResult]
    notified: int

    def to_json(self) -> dict[str, Any]:
        """The ``nexus alerts check --json`` object."""
        return {"alerts": [r.to_json() for r in self.results], "notified": self.notified}


@dataclass(frozen=True)
class Claim:
    """A message this evaluator claimed and must send."""

    notification_id: int
    body: dict[str, Any]


@dataclass(frozen=True)
class WebhookView:
    """A configured webhook as it may be shown: where it comes from and its label (no URL)."""

    id: int | None  # None: from NEXUS_ALERT_WEBHOOK_URLS, not removable here
    label: str


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_ts(moment)


def _require_admin(actor: UserView) -> None:
    if not actor.is_admin:
        raise PermissionDenied("Only administrators manage alerts.")


def _view(alert: Alert, rule: AlertRule) -> AlertView:
    return AlertView(
        id=alert.id,
        rule_id=rule.id,
        rule_name=rule.name,
        kind=rule.kind,
        state=alert.state,
        severity=alert.severity,
        value=alert.value,
        threshold=alert.threshold,
        summary=alert.summary,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        resolved_at=alert.resolved_at,
        evaluated_at=alert.evaluated_at,
        timeline=list(alert.timeline or []),
        links=dict(alert.links or {}),
    )


def _rule_spec(row: AlertRule) -> RuleSpec:
    return spec_from_row({c.key: getattr(row, c.key) for c in AlertRule.__table__.columns})


def summary_of(rule: RuleSpec, value: float | None) -> str:
    """``Latency SLO burn …: 15.20× (threshold > 14.40×)``."""
    shown = alert_rules.format_value(rule.kind, value)
    limit = alert_rules.format_value(rule.kind, rule.threshold)
    return f"{rule.name}: {shown} (threshold {alert_rules.comparison(rule.kind)} {limit})"


def alert_links(rule: RuleSpec, measured: Measurement, now: datetime) -> dict[str, str]:
    """The app paths of an alert's dashboard window and of its workbench query."""
    sql = alert_rules.evidence_sql(rule, measured.window, now)
    return {
        "dashboard": f"{DASHBOARD_PATH}?{urlencode({'window': format_window(measured.window)})}",
        "workbench": f"{WORKBENCH_PATH}?{urlencode({'sql': sql})}",
    }


class AlertService:
    """Alert rules, silences and webhooks (admins), evaluation and history."""

    def __init__(
        self,
        db: Database,
        events: EventStore,
        budgets: BudgetService,
        sender: WebhookSender,
        *,
        webhook_urls: Iterable[str] = (),
        renotify: timedelta = timedelta(hours=4),
        public_url: str = "",
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.events = events
        self.budgets = budgets
        self.sender = sender
        self.configured_webhooks = tuple(webhook_urls)
        self.renotify = renotify
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    # --- rules ------------------------------------------------------------------------------

    def seed_defaults(self) -> int:
        """Store the default rules when there are none yet; returns how many were added."""
        with self.db.session() as session:
            if session.scalar(select(func.count()).select_from(AlertRule)):
                return 0
            for spec in alert_rules.default_rules():
                session.add(self._new_row(alert_rules.validate(spec), "nexus init"))
        return len(alert_rules.default_rules())

    def rules(self) -> list[RuleSpec]:
        """Every rule, in the order they were added."""
        with self.db.session() as session:
            return [
                _rule_spec(r) for r in session.scalars(select(AlertRule).order_by(AlertRule.id))
            ]

    def rule(self, rule_id: int) -> RuleSpec:
        with self.db.session() as session:
            return _rule_spec(self._rule_row(session, rule_id))

    @staticmethod
    def _rule_row(session: Session, rule_id: int, *, lock: bool = False) -> AlertRule:
        row = session.get(AlertRule, rule_id, with_for_update=lock)
        if row is None:
            raise NotFound("There is no such alert rule.")
        return row

    @staticmethod
    def _new_row(spec: RuleSpec, actor: str) -> AlertRule:
        return AlertRule(
            name=spec.name,
            kind=spec.kind,
            severity=spec.severity,
            threshold=spec.threshold,
            params=spec.params,
            missing_data=spec.missing_data,
            for_minutes=spec.for_minutes,
            enabled=spec.enabled,
            updated_by=actor,
        )

    def save_rule(self, spec: RuleSpec, actor: UserView) -> RuleSpec:
        """Create the rule (``spec.id`` None) or change it; audited."""
        _require_admin(actor)
        spec = alert_rules.validate(spec)
        try:
            with self.db.session() as session:
                if spec.id is None:
                    row = self._new_row(spec, actor.username)
                    session.add(row)
                    action = audit.ALERT_RULE_CREATED
                else:
                    row = self._rule_row(session, spec.id, lock=True)
                    for name in ("name", "kind", "severity", "threshold", "params"):
                        setattr(row, name, getattr(spec, name))
                    row.missing_data, row.for_minutes = spec.missing_data, spec.for_minutes
                    row.enabled, row.updated_by = spec.enabled, actor.username
                    action = audit.ALERT_RULE_EDITED
                session.flush()
                self._audit(session, action, actor, row, _rule_details(spec))
                saved = _rule_spec(row)
        except IntegrityError as exc:
            raise ValidationError(f"There is already a rule called {spec.name!r}.") from exc
        return saved

    def delete_rule(self, rule_id: int, actor: UserView) -> None:
        """Remove a rule and its alerts' history; audited."""
        _require_admin(actor)
        with self.db.session() as session:
            row = self._rule_row(session, rule_id, lock=True)
            self._audit(session, audit.ALERT_RULE_DELETED, actor, row, {"name": row.name})
            session.delete(row)

    def silence(self, rule_id: int, until: datetime, reason: str, actor: UserView) -> RuleSpec:
        """Mute a rule's messages until ``until``, saying why; audited. It is still evaluated."""
        _require_admin(actor)
        reason = " ".join(reason.split())
        if not reason or len(reason) > MAX_REASON_CHARS:
            raise ValidationError(f"Say why (1 to {MAX_REASON_CHARS} characters).")
        if until <= self.clock():
            raise ValidationError("A silence ends in the future.")
        with self.db.session() as session:
            row = self._rule_row(session, rule_id, lock=True)
            row.silenced_until, row.silence_reason = until, reason
            details = {"until": format_ts(until), "reason": reason}
            self._audit(session, audit.ALERT_SILENCED, actor, row, details)
            return _rule_spec(row)

    def unsilence(self, rule_id: int, actor: UserView) -> RuleSpec:
        """End a rule's silence now; audited."""
        _require_admin(actor)
        with self.db.session() as session:
            row = self._rule_row(session, rule_id, lock=True)
            row.silenced_until, row.silence_reason = None, None
            self._audit(session, audit.ALERT_UNSILENCED, actor, row, {})
            return _rule_spec(row)

    @staticmethod
    def _audit(
        session: Session, action: str, actor: UserView, row: AlertRule, details: dict[str, Any]
    ) -> None:
        audit.record(
            session,
            action,
            actor_id=actor.id,
            actor_name=actor.username,
            target_type="alert_rule",
            target_id=row.id,
            details={"name": row.name, **details},
        )

    # --- webhooks ---------------------------------------------------------------------------

    def webhooks(self) -> list[WebhookView]:
        """The configured webhooks (settings first), as labels: a URL may be a secret."""
        with self.db.session() as session:
            stored = [(w.id, w.url) for w in session.scalars(select(AlertWebhook))]
        return [WebhookView(None, target_label(u)) for u in self.configured_webhooks] + [
            WebhookView(i, target_label(u)) for i, u in stored
        ]

    def webhook_urls(self) -> list[str]:
        """Every URL a message goes to: ``NEXUS_ALERT_WEBHOOK_URLS``, then the added ones."""
        with self.db.session() as session:
            stored = list(session.scalars(select(AlertWebhook.url).order_by(AlertWebhook.id)))
        return list(dict.fromkeys([*self.configured_webhooks, *stored]))

    def add_webhook(self, url: str, actor: UserView) -> WebhookView:
        """Send alert messages to ``url`` too; audited (by its label, not the URL)."""
        _require_admin(actor)
        url = check_url(url)
        try:
            with self.db.session() as session:
                row = AlertWebhook(url=url, created_by=actor.username, created_at=self.clock())
                session.add(row)
                session.flush()
                audit.record(
                    session,
                    audit.ALERT_WEBHOOK_ADDED,
                    actor_id=actor.id,
                    actor_name=actor.username,
                    target_type="alert_webhook",
                    target_id=row.id,
                    details={"webhook": target_label(url)},
                )
                return WebhookView(row.id, target_label(url))
        except IntegrityError as exc:
            raise ValidationError("That webhook is already configured.") from exc

    def remove_webhook(self, webhook_id: int, actor: UserView) -> None:
        """Stop sending to an added webhook; audited."""
        _require_admin(actor)
        with self.db.session() as session:
            row = session.get(AlertWebhook, webhook_id)
            if row is None:
                raise NotFound("There is no such webhook.")
            audit.record(
                session,
                audit.ALERT_WEBHOOK_REMOVED,
                actor_id=actor.id,
                actor_name=actor.username,
                target_type="alert_webhook",
                target_id=row.id,
                details={"webhook": target_label(row.url)},
            )
            session.delete(row)

    # --- evaluation -------------------------------------------------------------------------

    def check(self, now: datetime | None = None) -> CheckReport:
        """Evaluate every enabled rule once at ``now``, then send what changed."""
        now = now or self.clock()
        snapshot = self.events.refresh().of_traffic(TRAFFIC)
        percents = cache(lambda: [b.percent for b in self.budgets.list_budgets(now)])
        ctx = Context(snapshot, now, percents)
        results: list[RuleResult] = []
        claims: list[Claim] = []
        for rule in self.rules():
            if not rule.enabled:
                continue
            try:
                measured = measure(rule, ctx)
            except Exception as exc:  # one broken rule must not stop the others
                log.warning("alert rule %s could not be measured (%s)", rule.id, type(exc).__name__)
                results.append(RuleResult(rule, "error", None, type(exc).__name__))
                continue
            result, claimed = self._apply(rule, measured, now)
            results.append(result)
            claims.extend(claimed)
        notified = sum(self._deliver(claim) for claim in claims)
        return CheckReport(results, notified)

    def _apply(
        self, rule: RuleSpec, measured: Measurement, now: datetime
    ) -> tuple[RuleResult, list[Claim]]:
        """Move the rule's alert along its lifecycle, under the rule's lock; claim messages."""
        claims: list[Claim] = []
        with self.db.session() as session:
            row = self._rule_row(session, rule.id or 0, lock=True)
            rule = _rule_spec(row)  # as stored now: a silence may have started since
            alert = session.scalars(
                select(Alert)
                .where(Alert.rule_id == row.id, Alert.state.in_(OPEN_STATES))
                .order_by(Alert.id.desc())
                .limit(1)
            ).first()
            breaching = _counts_as_breaching(rule, measured)
            state = OK
            if breaching is None:  # no data, and the rule keeps the alert as it is
                state = OK if alert is None else alert.state
            elif breaching:
                alert = self._breach(session, rule, measured, alert, now, claims)
                state = alert.state
            elif alert is not None:
                self._clear(session, rule, measured, alert, now, claims)
                state = RESOLVED
        return RuleResult(rule, state, measured.value, measured.note), claims

    def _breach(
        self,
        session: Session,
        rule: RuleSpec,
        measured: Measurement,
        alert: Alert | None,
        now: datetime,
        claims: list[Claim],
    ) -> Alert:
        if alert is None:
            alert = Alert(
                rule_id=rule.id,
                state=PENDING,
                severity=rule.severity,
                threshold=rule.threshold,
                started_at=now,
                timeline=[_step(PENDING, now, measured.value)],
            )
            session.add(alert)
        alert.value, alert.evaluated_at = measured.value, now
        alert.summary = summary_of(rule, measured.value)
        alert.links = alert_links(rule, measured, now)
        if alert.state == PENDING and now - alert.started_at >= timedelta(minutes=rule.for_minutes):
            alert.state, alert.fired_at = FIRING, now
            alert.timeline = [*alert.timeline, _step(FIRING, now, measured.value)]
            self._claim(session, rule, alert, FIRING, 0, now, claims)
        elif alert.state == FIRING and self._renotify_due(alert, now):
            sequence = self._next_sequence(session, alert)
            alert.timeline = [*alert.timeline, _step("renotified", now, measured.value)]
            self._claim(session, rule, alert, FIRING, sequence, now, claims)
        session.flush()
        return alert

    def _clear(
        self,
        session: Session,
        rule: RuleSpec,
        measured: Measurement,
        alert: Alert,
        now: datetime,
        claims: list[Claim],
    ) -> None:
        fired = alert.state == FIRING
        alert.state, alert.resolved_at, alert.evaluated_at = RESOLVED, now, now
        alert.value = measured.value if measured.value is not None else alert.value
        note = RESOLVED if fired else "resolved (never fired)"
        alert.timeline = [*alert.timeline, _step(note, now, measured.value)]
        session.flush()
        if fired:
            self._claim(session, rule, alert, RESOLVED, 0, now, claims)

    def _renotify_due(self, alert: Alert, now: datetime) -> bool:
        if self.renotify <= timedelta(0):
            return False
        last = alert.notified_at or alert.fired_at or alert.started_at
        return now - last >= self.renotify

    @staticmethod
    def _next_sequence(session: Session, alert: Alert) -> int:
        highest = session.scalar(
            select(func.max(AlertNotification.sequence)).where(
                AlertNotification.alert_id == alert.id, AlertNotification.state == FIRING
            )
        )
        return 0 if highest is None else highest + 1

    def _claim(
        self,
        session: Session,
        rule: RuleSpec,
        alert: Alert,
        state: str,
        sequence: int,
        now: datetime,
        claims: list[Claim],
    ) -> None:
        """Claim the message (alert, state, sequence) once; a silenced rule's is not sent."""
        session.flush()
        muted = rule.silenced(now)
        try:
            with session.begin_nested():
                notification = AlertNotification(
                    alert_id=alert.id,
                    state=state,
                    sequence=sequence,
                    status=SILENCED if muted else PENDING,
                    created_at=now,
                )
                session.add(notification)
        except IntegrityError:  # another evaluator claimed it: it sends, we do not
            return
        alert.notified_at = now
        if not muted:
            body = self._body(rule, alert, state, sequence)
            claims.append(Claim(notification.id, body))

    def _body(self, rule: RuleSpec, alert: Alert, state: str, sequence: int) -> dict[str, Any]:
        fields = {
            "rule": rule.name,
            "state": state,
            "severity": alert.severity,
            "summary": alert.summary,
            "value": alert.value,
            "threshold": alert.threshold,
            "started_at": _iso(alert.started_at),
            "fired_at": _iso(alert.fired_at),
            "resolved_at": _iso(alert.resolved_at),
            "alert_id": alert.id,
            "renotification": sequence > 0,
        }
        paths = {
            "Alert history": f"{HISTORY_PATH}?{urlencode({'alert': alert.id})}",
            "Dashboard": alert.links.get("dashboard", DASHBOARD_PATH),
            "Workbench query": alert.links.get("workbench", WORKBENCH_PATH),
        }
        return message(fields, {name: self.public_url + path for name, path in paths.items()})

    def _deliver(self, claim: Claim) -> bool:
        """Send a claimed message to every webhook and record each outcome; True when any took
        it."""
        deliveries = [self.sender.send(url, claim.body) for url in self.webhook_urls()]
        if not deliveries:
            status = NO_WEBHOOK
        else:
            status = SENT if all(d.sent for d in deliveries) else FAILED
        with self.db.session() as session:
            notification = session.get(AlertNotification, claim.notification_id)
            if notification is not None:
                notification.status = status
            for d in deliveries:
                session.add(
                    AlertDelivery(
                        notification_id=claim.notification_id,
                        target=d.target,
                        status=SENT if d.sent else FAILED,
                        attempts=d.attempts,
                        status_code=d.status_code,
                        error=d.error,
                        created_at=self.clock(),
                    )
                )
        return any(d.sent for d in deliveries)

    # --- history ----------------------------------------------------------------------------

    def history(self, *, limit: int = HISTORY_LIMIT, rule_id: int | None = None) -> list[AlertView]:
        """Alerts newest first (of one rule, if given)."""
        query = select(Alert, AlertRule).join(AlertRule, AlertRule.id == Alert.rule_id)
        if rule_id is not None:
            query = query.where(Alert.rule_id == rule_id)
        with self.db.session() as session:
            rows = session.execute(query.order_by(Alert.id.desc()).limit(limit)).all()
            return [_view(alert, rule) for alert, rule in rows]

    def open_alerts(self) -> list[AlertView]:
        """Alerts pending or firing now, the most severe first."""
        query = (
            select(Alert, AlertRule)
            .join(AlertRule, AlertRule.id == Alert.rule_id)
            .where(Alert.state.in_(OPEN_STATES))
            .order_by(Alert.severity, Alert.id)
        )
        with self.db.session() as session:
            return [_view(alert, rule) for alert, rule in session.execute(query).all()]

    def get(self, alert_id: int) -> AlertView:
        with self.db.session() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise NotFound("There is no such alert.")
            return _view(alert, self._rule_row(session, alert.rule_id))

    def deliveries(self, alert_id: int) -> list[DeliveryView]:
        """Every message about an alert and each webhook's outcome, oldest first."""
        query = (
            select(AlertNotification, AlertDelivery)
            .outerjoin(AlertDelivery, AlertDelivery.notification_id == AlertNotification.id)
            .where(AlertNotification.alert_id == alert_id)
            .order_by(AlertNotification.id, AlertDelivery.id)
        )
        with self.db.session() as session:
            return [_delivery_view(n, d) for n, d in session.execute(query).all()]


def _delivery_view(notification: AlertNotification, delivery: AlertDelivery | None) -> DeliveryView:
    return DeliveryView(
        state=notification.state,
        sequence=notification.sequence,
        notification_status=notification.status,
        target=None if delivery is None else delivery.target,
        sent=None if delivery is None else delivery.status == SENT,
        attempts=0 if delivery is None else delivery.attempts,
        status_code=None if delivery is None else delivery.status_code,
        error=None if delivery is None else delivery.error,
        at=notification.created_at if delivery is None else delivery.created_at,
    )


def _step(state: str, at: datetime, value: float | None) -> dict[str, Any]:
    return {"state": state, "at": format_ts(at), "value": value}


def _rule_details(spec: RuleSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "severity": spec.severity,
        "threshold": spec.threshold,
        "params": spec.params,
        "missing_data": spec.missing_data,
        "for_minutes": spec.for_minutes,
        "enabled": spec.enabled,
    }


def _counts_as_breaching(rule: RuleSpec, measured: Measurement) -> bool | None:
    """The measurement's verdict, or for no data what the rule says missing data counts as
    (None: keep the alert as it is)."""
    if measured.breaching is not None:
        return measured.breaching
    if rule.missing_data == alert_rules.MISSING_BREACHING:
        return True
    if rule.missing_data == alert_rules.MISSING_KEEP:
        return None
    return False
