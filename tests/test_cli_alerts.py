"""`nexus alerts check [--now ISO8601] [--json]` as docs/contract.md describes it: every rule's
state, severity, value and threshold, and how many messages reached the webhooks (signed)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from nexus_core.alerts.webhooks import verify_signature
from nexus_core.settings import Settings
from tests.fakes.receiver import Receiver
from tests.test_alerts import NOW, write_requests
from tests.test_cli import assert_one_line_error, run_nexus

SECRET = "cli-webhook-secret"


def test_alerts_check_prints_every_rule_and_notifies_each_firing_one_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    # 10 % of requests failing for the last hour: the success SLO's three burn-rate pairs fire.
    write_requests(settings.event_log_path, NOW - timedelta(hours=1), NOW, failure_share=0.1)
    with Receiver() as receiver:
        monkeypatch.setenv("NEXUS_ALERT_WEBHOOK_URLS", receiver.url + "/hook")
        monkeypatch.setenv("NEXUS_ALERT_WEBHOOK_SECRET", SECRET)
        first = run_nexus(settings, "alerts", "check", "--now", NOW.isoformat(), "--json")
        again = run_nexus(settings, "alerts", "check", "--now", NOW.isoformat(), "--json")

    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(report) == {"alerts", "notified"}
    assert all(
        set(a) == {"rule", "state", "severity", "value", "threshold"} for a in report["alerts"]
    )
    firing = [a for a in report["alerts"] if a["state"] == "firing"]
    assert {a["rule"] for a in firing} == {
        "Success SLO burn 60m & 5m > 14.4×",
        "Success SLO burn 6h & 30m > 6×",
        "Success SLO burn 3d & 6h > 1×",
    }
    assert all(a["value"] > a["threshold"] for a in firing)
    assert report["notified"] == 3
    assert json.loads(again.stdout)["notified"] == 0  # no duplicate for the same state
    assert len(receiver.received) == 3
    for post in receiver.received:
        assert verify_signature(post.body, post.headers["x-nexus-signature"], SECRET)


def test_alerts_check_with_a_bad_time_fails_with_one_line(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    result = run_nexus(settings, "alerts", "check", "--now", "yesterday-ish")
    assert_one_line_error(result, "--now")
