"""Alert rules on generated event logs, on SQLite and PostgreSQL: burn-rate pairs fire exactly as
the SRE Workbook says, the lifecycle pending → firing → resolved sends one message each way to a
real loopback webhook (re-notified after the interval, never twice), the signature verifies, a
failing webhook is retried and recorded without blocking, silences are audited, missing data
counts as each rule says, and the lease lets one of two evaluators (or processes) work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.alerts import rules as alert_rules
from nexus_core.alerts.rules import RuleSpec
from nexus_core.alerts.scheduler import AlertScheduler
from nexus_core.alerts.service import AlertService
from nexus_core.alerts.webhooks import (
    SIGNATURE_HEADER,
    WebhookSender,
    check_url,
    verify_signature,
)
from nexus_core.app_context import AppContext
from nexus_core.db.lease import Lease
from nexus_core.db.models import AlertRule, AuditEvent
from nexus_core.errors import ValidationError
from nexus_core.ops.events import ApiEventLogger
from nexus_core.users import UserView
from tests.constants import ROOT
from tests.fakes.receiver import Receiver

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday
SECRET = "webhook-secret-for-tests"
PASSWORD = "correct-horse-1"


class SetClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def write_requests(
    path: Path,
    start: datetime,
    end: datetime,
    *,
    per_minute: int = 10,
    failure_share: float = 0.0,
    latency_ms: float = 800.0,
    model: str = "gemini-flash",
    provider: str = "gemini",
) -> None:
    """Requests and replies spread evenly over ``start ≤ ts < end``; every ``1/failure_share``-th
    request fails."""
    clock = SetClock(start)
    step = timedelta(minutes=1) / per_minute
    every = round(1 / failure_share) if failure_share else 0
    with ApiEventLogger(path, clock=clock) as log:
        n = 0
        while clock.now < end:
            named = {"request_id": f"r{n}-{clock.now.timestamp()}", "attempt": 1}
            log.emit("request_start", model=model, provider=provider, **named)
            if every and n % every == 0:
                log.emit("request_failure", error_type="http_503", retryable=True, **named)
            else:
                log.emit("request_success", latency_ms=latency_ms, **named)
                log.emit("job_success", job_id=f"j{n}", latency_ms=latency_ms, attempts=1)
            n += 1
            clock.now += step


@pytest.fixture
def admin(ctx: AppContext) -> UserView:
    ctx.users.create("ada", PASSWORD, role="admin")
    return ctx.users.get("ada")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def slept() -> list[float]:
    return []


def service_for(
    ctx: AppContext,
    urls: list[str],
    slept: list[float] | None = None,
    *,
    renotify: timedelta = timedelta(hours=1),
) -> AlertService:
    recorded = [] if slept is None else slept
    return AlertService(
        ctx.db,
        ctx.event_store,
        ctx.budgets,
        WebhookSender(SECRET, sleep=recorded.append, backoff_seconds=0.01),
        webhook_urls=urls,
        renotify=renotify,
        public_url="https://nexus.example.com",
    )


def only_rule(service: AlertService, admin: UserView, spec: RuleSpec) -> RuleSpec:
    """Store ``spec`` as the one enabled rule."""
    for rule in service.rules():
        service.delete_rule(rule.id or 0, admin)
    return service.save_rule(spec, admin)


def firing_names(service: AlertService, now: datetime) -> set[str]:
    return {r.rule.name for r in service.check(now).results if r.state == "firing"}


# --- burn-rate pairs -------------------------------------------------------------------------


def test_success_burn_rate_pairs_fire_exactly_as_the_workbook_says(ctx: AppContext) -> None:
    ctx.alerts.seed_defaults()
    # 10 % failures for the last hour: burn 20× (> 14.4 and > 6) over 1 h, 5 min, 6 h and 30 min.
    write_requests(ctx.settings.event_log_path, NOW - timedelta(hours=1), NOW, failure_share=0.1)

    firing = firing_names(service_for(ctx, []), NOW)

    assert firing == {
        "Success SLO burn 60m & 5m > 14.4×",
        "Success SLO burn 6h & 30m > 6×",
        "Success SLO burn 3d & 6h > 1×",
    }


def test_a_burn_below_the_page_threshold_fires_only_the_slower_rules(ctx: AppContext) -> None:
    ctx.alerts.seed_defaults()
    # 5 % failures: burn 10× — under 14.4, over 6 and 1.
    write_requests(ctx.settings.event_log_path, NOW - timedelta(hours=1), NOW, failure_share=0.05)

    firing = firing_names(service_for(ctx, []), NOW)

    assert "Success SLO burn 60m & 5m > 14.4×" not in firing
    assert "Success SLO burn 6h & 30m > 6×" in firing


def test_a_burst_that_has_stopped_does_not_page_the_short_window_says_it_is_over(
    ctx: AppContext,
) -> None:
    ctx.alerts.seed_defaults()
    log = ctx.settings.event_log_path
    # 50 % failures from 60 to 10 minutes ago, then ten healthy minutes: 1 h burns, 5 min not.
    write_requests(log, NOW - timedelta(hours=1), NOW - timedelta(minutes=10), failure_share=0.5)
    write_requests(log, NOW - timedelta(minutes=10), NOW)

    firing = firing_names(service_for(ctx, []), NOW)

    assert "Success SLO burn 60m & 5m > 14.4×" not in firing
    assert "Success SLO burn 6h & 30m > 6×" in firing  # the 30 min window still burns


# --- lifecycle and delivery ------------------------------------------------------------------


LATENCY_RULE = RuleSpec(
    "p95 over 2 s", alert_rules.LATENCY_P95, "page", 2000.0, {"window": "5m"}, for_minutes=2
)
IMMEDIATE = replace(LATENCY_RULE, for_minutes=0)


def test_an_alert_goes_pending_firing_resolved_with_one_message_each_way(
    ctx: AppContext, admin: UserView, receiver: Receiver
) -> None:
    service = service_for(ctx, [receiver.url + "/hook"])
    only_rule(service, admin, LATENCY_RULE)
    log = ctx.settings.event_log_path
    write_requests(log, NOW - timedelta(minutes=10), NOW + timedelta(minutes=3), latency_ms=4000)

    first = service.check(NOW)
    again = service.check(NOW + timedelta(minutes=1))
    fired = service.check(NOW + timedelta(minutes=2))
    still = service.check(NOW + timedelta(minutes=3))
    write_requests(log, NOW + timedelta(minutes=3), NOW + timedelta(minutes=10), latency_ms=300)
    resolved = service.check(NOW + timedelta(minutes=10))
    quiet = service.check(NOW + timedelta(minutes=11))

    states = [r.results[0].state for r in (first, again, fired, still, resolved, quiet)]
    assert states == ["pending", "pending", "firing", "firing", "resolved", "ok"]
    assert [r.notified for r in (first, again, fired, still, resolved, quiet)] == [0, 0, 1, 0, 1, 0]
    bodies = [m.json() for m in receiver.received]
    assert [b["state"] for b in bodies] == ["firing", "resolved"]
    firing = bodies[0]
    assert firing["rule"] == "p95 over 2 s" and firing["severity"] == "page"
    assert firing["value"] == pytest.approx(4000.0) and firing["threshold"] == 2000.0
    assert firing["started_at"] == "2026-11-27T12:00:00.000Z"
    assert firing["text"].startswith("🚨 [FIRING · page] p95 over 2 s: 4,000 ms")
    assert firing["blocks"][0]["type"] == "section"
    assert firing["links"]["Dashboard"] == "https://nexus.example.com/dashboard?window=5m"
    assert firing["links"]["Workbench query"].startswith(
        "https://nexus.example.com/workbench?sql=SELECT"
    )
    history = service.history()
    assert [step["state"] for step in history[0].timeline] == ["pending", "firing", "resolved"]
    assert [d.notification_status for d in service.deliveries(history[0].id)] == ["sent", "sent"]


def test_a_firing_alert_is_renotified_after_the_interval_and_never_twice_in_between(
    ctx: AppContext, admin: UserView, receiver: Receiver
) -> None:
    service = service_for(ctx, [receiver.url], renotify=timedelta(minutes=30))
    only_rule(service, admin, IMMEDIATE)
    write_requests(
        ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW + timedelta(hours=1),
        latency_ms=4000,
    )  # fmt: skip

    for minutes in (0, 10, 20, 29, 30, 31, 45, 59, 60):
        service.check(NOW + timedelta(minutes=minutes))

    bodies = [m.json() for m in receiver.received]
    assert [(b["state"], b["renotification"]) for b in bodies] == [
        ("firing", False),
        ("firing", True),
        ("firing", True),
    ]


def test_two_evaluators_checking_at_once_send_each_message_once(
    ctx: AppContext, admin: UserView, receiver: Receiver
) -> None:
    first = service_for(ctx, [receiver.url])
    second = service_for(ctx, [receiver.url])
    only_rule(first, admin, IMMEDIATE)
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)

    assert first.check(NOW).notified == 1
    assert second.check(NOW).notified == 0  # it sees the firing alert: nothing new to say

    assert len(receiver.received) == 1


def test_the_body_is_signed_and_the_signature_verifies_over_the_raw_bytes(
    ctx: AppContext, admin: UserView, receiver: Receiver
) -> None:
    service = service_for(ctx, [receiver.url])
    only_rule(service, admin, IMMEDIATE)
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)

    service.check(NOW)

    (got,) = receiver.received
    header = got.headers[SIGNATURE_HEADER.lower()]
    assert header.startswith("sha256=")
    assert verify_signature(got.body, header, SECRET)
    assert not verify_signature(got.body + b" ", header, SECRET)
    assert got.headers["content-type"] == "application/json"


def test_a_failing_webhook_is_retried_with_backoff_and_recorded(
    ctx: AppContext, admin: UserView, receiver: Receiver, slept: list[float]
) -> None:
    service = service_for(ctx, [receiver.url], slept)
    only_rule(service, admin, IMMEDIATE)
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)
    receiver.fail_next = [503, 500]

    report = service.check(NOW)

    assert report.notified == 1
    assert len(receiver.received) == 3
    assert len(slept) == 2 and slept[1] > 0
    (alert,) = service.history()
    (delivery,) = service.deliveries(alert.id)
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (True, 3, 200)


def test_a_dead_webhook_is_recorded_as_failed_and_does_not_stop_the_others(
    ctx: AppContext, admin: UserView, receiver: Receiver, slept: list[float]
) -> None:
    dead = "http://127.0.0.1:9/hook"  # the discard port: nothing listens, connection refused
    service = service_for(ctx, [dead, receiver.url], slept)
    only_rule(service, admin, IMMEDIATE)
    service.save_rule(
        RuleSpec("Cost", alert_rules.COST_RATE, "ticket", 100.0, {"window": "60m"}), admin
    )
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)

    report = service.check(NOW)

    assert [r.state for r in report.results] == ["firing", "ok"]  # evaluation went on
    assert report.notified == 1
    assert len(receiver.received) == 1
    (alert,) = service.history()
    deliveries = service.deliveries(alert.id)
    assert {d.notification_status for d in deliveries} == {"failed"}  # not every webhook took it
    assert [(d.sent, d.attempts, d.error) for d in deliveries] == [
        (False, 3, "ConnectError"),
        (True, 1, None),
    ]
    assert "9/hook" not in json.dumps([d.target for d in deliveries])  # a URL may be a secret


def test_a_webhook_url_httpx_cannot_use_is_refused_on_saving_and_recorded_when_configured(
    ctx: AppContext, admin: UserView, receiver: Receiver, slept: list[float]
) -> None:
    for bad in ("https://hooks.example.com:x/", "http://[::1", "ftp://hooks.example.com/"):
        with pytest.raises(ValidationError, match="http:// or https:// URL with a host"):
            check_url(bad)
    service = service_for(ctx, ["https://hooks.example.com:x/", receiver.url], slept)
    only_rule(service, admin, IMMEDIATE)
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)

    report = service.check(NOW)  # the unusable one (from the environment) fails alone

    assert report.notified == 1 and len(receiver.received) == 1
    (alert,) = service.history()
    errors = [d.error for d in service.deliveries(alert.id)]
    assert errors == ["InvalidURL", None]


# --- silences and missing data -----------------------------------------------------------------


def test_a_silence_mutes_messages_and_is_audited(
    ctx: AppContext, admin: UserView, receiver: Receiver
) -> None:
    clock = SetClock()
    service = service_for(ctx, [receiver.url])
    service.clock = clock
    rule = only_rule(service, admin, IMMEDIATE)
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)

    with pytest.raises(ValidationError):
        service.silence(rule.id or 0, NOW + timedelta(hours=2), "  ", admin)
    service.silence(rule.id or 0, NOW + timedelta(hours=2), "planned maintenance", admin)
    report = service.check(NOW)

    assert report.results[0].state == "firing" and report.notified == 0
    assert receiver.received == []
    (alert,) = service.history()
    assert [d.notification_status for d in service.deliveries(alert.id)] == ["silenced"]
    with ctx.db.session() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == audit.ALERT_SILENCED))
        assert event is not None
        assert event.actor_name == "ada"
        assert event.details["reason"] == "planned maintenance"
    service.unsilence(rule.id or 0, admin)
    with ctx.db.session() as session:
        stored = session.get(AlertRule, rule.id)
        assert stored is not None and stored.silenced_until is None


@pytest.mark.parametrize(
    ("missing_data", "expected"),
    [("ok", "ok"), ("breaching", "firing")],
)
def test_missing_data_counts_as_the_rule_says(
    ctx: AppContext, admin: UserView, missing_data: str, expected: str
) -> None:
    service = service_for(ctx, [])
    only_rule(
        service,
        admin,
        RuleSpec("p95", alert_rules.LATENCY_P95, "ticket", 2000.0, {"window": "5m"}, missing_data),
    )

    (result,) = service.check(NOW).results  # an empty log: no responses at all

    assert result.value is None
    assert result.state == expected


def test_missing_data_that_keeps_the_state_leaves_a_firing_alert_firing(
    ctx: AppContext, admin: UserView
) -> None:
    service = service_for(ctx, [])
    only_rule(
        service,
        admin,
        RuleSpec("p95", alert_rules.LATENCY_P95, "ticket", 2000.0, {"window": "5m"}, "keep"),
    )
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=5), NOW, latency_ms=4000)

    assert service.check(NOW).results[0].state == "firing"
    later = service.check(NOW + timedelta(hours=1)).results[0]  # the window is empty by then

    assert (later.state, later.value) == ("firing", None)


def test_no_traffic_fires_only_during_the_watched_hours(ctx: AppContext, admin: UserView) -> None:
    service = service_for(ctx, [])
    only_rule(
        service,
        admin,
        RuleSpec(
            "Silent",
            alert_rules.NO_TRAFFIC,
            "page",
            1.0,
            {"window": "30m", "hours": "08-18", "days": "mon-fri"},
        ),
    )

    assert service.check(NOW).results[0].state == "firing"  # Friday noon, nothing logged
    assert service.check(NOW + timedelta(hours=10)).results[0].state == "resolved"  # 22:00


def test_a_rule_with_bad_parameters_is_refused_with_a_clear_message(
    ctx: AppContext, admin: UserView
) -> None:
    with pytest.raises(ValidationError, match="Window"):
        ctx.alerts.save_rule(
            RuleSpec("x", alert_rules.LATENCY_P95, "page", 1.0, {"window": "soon"}), admin
        )
    with pytest.raises(ValidationError, match="mon-fri"):
        ctx.alerts.save_rule(
            RuleSpec("y", alert_rules.NO_TRAFFIC, "page", 1.0, {"days": "someday"}), admin
        )


# --- the lease -----------------------------------------------------------------------------------


def test_the_lease_is_held_by_one_of_two_evaluators_until_it_expires(ctx: AppContext) -> None:
    ttl = timedelta(minutes=3)
    one, two = Lease(ctx.db, "alerts", ttl), Lease(ctx.db, "alerts", ttl)

    assert one.acquire(NOW)
    assert not two.acquire(NOW + timedelta(seconds=1))
    assert one.acquire(NOW + timedelta(minutes=1))  # renewed
    assert not two.acquire(NOW + timedelta(minutes=3))
    assert two.acquire(NOW + timedelta(minutes=4, seconds=1))  # one stopped renewing
    assert not one.acquire(NOW + timedelta(minutes=5))


def test_a_scheduler_without_the_lease_does_not_evaluate(ctx: AppContext) -> None:
    ctx.alerts.seed_defaults()
    held = Lease(ctx.db, "alerts", timedelta(minutes=3))
    assert held.acquire(NOW)
    clock = SetClock()
    other = AlertScheduler(ctx.alerts, Lease(ctx.db, "alerts", timedelta(minutes=3)), timedelta(1))
    other.clock = clock

    assert other.tick() is None


TICKS_SCRIPT = """
import sys
from datetime import UTC, datetime, timedelta
from nexus_core.app_context import AppContext
from nexus_core.alerts.scheduler import AlertScheduler
from nexus_core.settings import Settings

start = datetime.fromisoformat(sys.argv[2])
ctx = AppContext(Settings.from_sources(secrets_file=None))
scheduler = AlertScheduler.for_service(ctx.alerts, timedelta(minutes=1))
sent = 0
for minute in range(int(sys.argv[1])):
    scheduler.clock = lambda: start + timedelta(minutes=minute)
    report = scheduler.tick()
    sent += 0 if report is None else report.notified
ctx.close()
print(sent)
"""


def test_two_app_processes_send_each_message_once(
    ctx: AppContext, admin: UserView, receiver: Receiver
) -> None:
    only_rule(ctx.alerts, admin, IMMEDIATE)
    write_requests(ctx.settings.event_log_path, NOW - timedelta(minutes=10), NOW, latency_ms=4000)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NEXUS_DATA_DIR": str(ctx.settings.data_dir),
        "DATABASE_URL": ctx.settings.database_url,
        "NEXUS_ENV": "test",
        "NEXUS_AI_PROVIDER": "simulated",
        "NEXUS_ALERT_WEBHOOK_URLS": receiver.url,
    }
    args = [sys.executable, "-c", TICKS_SCRIPT, "5", NOW.isoformat()]
    processes = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    sent = [int(p.communicate(timeout=120)[0].strip()) for p in processes]

    assert sorted(sent) == [0, 1]
    assert len(receiver.received) == 1
