"""Service level objectives of Nexus AI, their error budgets and multiwindow burn-rate alerts.

Two SLOs, each over a rolling ``SLO_PERIOD`` of 30 days:

- **latency** — 95 % of AI responses are delivered in under 3 s. Valid events: ``job_success``
  with a ``latency_ms`` (user message stored → reply stored). Bad: ``latency_ms ≥ 3000``. A
  failed job has no response time; failures belong to the success SLO.
- **success** — 99.5 % of API requests succeed. Valid events: ``request_success`` and
  ``request_failure``. Bad: ``request_failure`` (every failed attempt, retried or not).

Over a window: ``attainment = good / valid`` (met when ≥ the objective; for latency that is the
contract's "p95 < 3000 ms" read as a share, and the report also shows the interpolated p95);
``error rate = bad / valid``; ``burn rate = error rate / (1 − objective)`` — 1 spends the budget
exactly over the period, 14.4 spends 2 % of it in an hour. ``error budget remaining`` over the
period ending at ``now`` is ``1 − bad / ((1 − objective) · valid)``: 1 untouched, 0 spent,
negative overspent; ``error budget spent in window`` is the share of that period's budget the
window's bad events spent (the whole spend when the window is the period), so a window with no
failures next to an overspent budget reads as what it is.

Alerts follow the Google SRE Workbook's multiwindow, multi-burn-rate rules: a rule fires when
both its long and its short window burn faster than its threshold (the short window makes an
alert stop soon after the problem does). Page on 1 h & 5 min > 14.4 or 6 h & 30 min > 6; ticket
on 3 d & 6 h > 1. The state is the most severe firing rule over both SLOs: ``page``, ``ticket``
or ``ok``. A window with no valid events has no rates (None); such a rule does not fire, so no
data means ``ok``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from nexus_core.analytics.event_snapshot import EventSnapshot
from nexus_core.analytics.log_store import EventStore, snapshot_of
from nexus_core.analytics.rollups import window_sums
from nexus_core.analytics.windows import format_window, to_utc_naive

LATENCY_TARGET_MS: Final = 3000
LATENCY_OBJECTIVE: Final = 0.95
SUCCESS_OBJECTIVE: Final = 0.995
SLO_PERIOD: Final = timedelta(days=30)
LATENCY: Final = "latency"
SUCCESS: Final = "success"
OBJECTIVES: Final = {LATENCY: LATENCY_OBJECTIVE, SUCCESS: SUCCESS_OBJECTIVE}
OK: Final = "ok"
TICKET: Final = "ticket"
PAGE: Final = "page"
SEVERITY_ORDER: Final = (OK, TICKET, PAGE)

# Additive counts per SLO, summed per window by ``rollups.window_sums``.
SLO_COUNTS_SQL: Final = """
    count(*) FILTER (WHERE event = 'job_success' AND latency_ms IS NOT NULL) AS latency_valid,
    count(*) FILTER (WHERE event = 'job_success' AND latency_ms >= $latency_target_ms)
        AS latency_bad,
    count(*) FILTER (WHERE event IN ('request_success', 'request_failure')) AS success_valid,
    count(*) FILTER (WHERE event = 'request_failure') AS success_bad
"""


@dataclass(frozen=True)
class BurnRule:
    """Alert when both windows burn the error budget faster than ``threshold``."""

    severity: str
    long_window: timedelta
    short_window: timedelta
    threshold: float


BURN_RULES: Final = (
    BurnRule(PAGE, timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnRule(PAGE, timedelta(hours=6), timedelta(minutes=30), 6.0),
    BurnRule(TICKET, timedelta(days=3), timedelta(hours=6), 1.0),
)


@dataclass(frozen=True)
class SloCounts:
    """Valid and bad events of one SLO over one window."""

    valid: int
    bad: int

    @property
    def good(self) -> int:
        """Valid events that met the objective's bar."""
        return self.valid - self.bad

    def attainment(self) -> float | None:
        """The share of good events; None without valid events."""
        return self.good / self.valid if self.valid else None

    def burn_rate(self, objective: float) -> float | None:
        """Error rate over the allowed error rate ``1 − objective``; None without events."""
        return (self.bad / self.valid) / (1 - objective) if self.valid else None

    def budget_remaining(self, objective: float) -> float | None:
        """``1 − bad / allowed bad``: 1 untouched, 0 spent, below 0 overspent; None if no events."""
        spent = self.budget_spent_by(self.bad, objective)
        return None if spent is None else 1 - spent

    def budget_spent_by(self, bad: int, objective: float) -> float | None:
        """The share of these events' budget that ``bad`` bad events spend; None if no events."""
        return bad / ((1 - objective) * self.valid) if self.valid else None


def slo_counts(
    source: EventStore | EventSnapshot, start: datetime, end: datetime
) -> dict[str, SloCounts]:
    """Valid and bad counts of both SLOs for ``start ≤ ts < end``."""
    return slo_counts_by_window(source, [start], end)[0]


def slo_counts_by_window(
    source: EventStore | EventSnapshot, starts: Sequence[datetime], end: datetime
) -> list[dict[str, SloCounts]]:
    """``slo_counts`` for several windows ending at ``end``, in one scan."""
    sums = window_sums(
        snapshot_of(source),
        SLO_COUNTS_SQL,
        [to_utc_naive(start) for start in starts],
        to_utc_naive(end),
        {"latency_target_ms": LATENCY_TARGET_MS},
    )
    return [
        {
            name: SloCounts(int(totals[f"{name}_valid"]), int(totals[f"{name}_bad"]))
            for name in OBJECTIVES
        }
        for totals in sums
    ]


def _alert_windows() -> list[timedelta]:
    return sorted({w for rule in BURN_RULES for w in (rule.long_window, rule.short_window)})


def _exceeds(rate: float | None, threshold: float) -> bool:
    return rate is not None and rate > threshold


def burn_rate_alerts(source: EventStore | EventSnapshot, now: datetime) -> dict[str, Any]:
    """Every burn-rate rule for both SLOs at ``now``, and the overall state ok/ticket/page.

    Public on purpose: the alert state alone, in one scan, for code that checks alerts without a
    dashboard window (the planned alert evaluator and ``nexus alerts check``, issue #14). The
    dashboard and ``nexus metrics`` get the same rules from ``slo_report``, which shares its scan
    with the window's.
    """
    end = to_utc_naive(now)
    windows = _alert_windows()
    counts = slo_counts_by_window(source, [end - w for w in windows], end)
    return _alerts(dict(zip(windows, counts, strict=True)))


def _alerts(counts: dict[timedelta, dict[str, SloCounts]]) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    by_slo = dict.fromkeys(OBJECTIVES, OK)
    for name, objective in OBJECTIVES.items():
        for rule in BURN_RULES:
            long_rate = counts[rule.long_window][name].burn_rate(objective)
            short_rate = counts[rule.short_window][name].burn_rate(objective)
            firing = _exceeds(long_rate, rule.threshold) and _exceeds(short_rate, rule.threshold)
            if firing and SEVERITY_ORDER.index(rule.severity) > SEVERITY_ORDER.index(by_slo[name]):
                by_slo[name] = rule.severity
            rules.append(
                {
                    "slo": name,
                    "severity": rule.severity,
                    "long_window": format_window(rule.long_window),
                    "short_window": format_window(rule.short_window),
                    "threshold": rule.threshold,
                    "long_burn_rate": long_rate,
                    "short_burn_rate": short_rate,
                    "firing": firing,
                }
            )
    state = max(by_slo.values(), key=SEVERITY_ORDER.index)
    return {"state": state, "by_slo": by_slo, "rules": rules}


def slo_report(
    source: EventStore | EventSnapshot, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Attainment and burn rate over the window, budget left over the period (and what the window
    spent of it), and the alerts."""
    now = to_utc_naive(now)
    windows = _alert_windows()
    starts = [to_utc_naive(start), now - SLO_PERIOD, *(now - w for w in windows)]
    if to_utc_naive(end) == now:
        in_window, in_period, *alerting = slo_counts_by_window(source, starts, now)
    else:  # a window that does not end at ``now`` needs its own scan
        in_window = slo_counts(source, start, end)
        in_period, *alerting = slo_counts_by_window(source, starts[1:], now)
    report: dict[str, Any] = {"period_days": SLO_PERIOD.days}
    for name, objective in OBJECTIVES.items():
        counts = in_window[name]
        attainment = counts.attainment()
        report[name] = {
            "objective": objective,
            "valid": counts.valid,
            "good": counts.good,
            "attainment": attainment,
            "met": None if attainment is None else attainment >= objective,
            "burn_rate": counts.burn_rate(objective),
            "error_budget_remaining": in_period[name].budget_remaining(objective),
            "error_budget_spent_in_window": in_period[name].budget_spent_by(counts.bad, objective),
        }
    report[LATENCY]["target_ms"] = LATENCY_TARGET_MS
    report["alerts"] = _alerts(dict(zip(windows, alerting, strict=True)))
    return report
