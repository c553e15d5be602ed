"""Alert rules as data: what each kind measures, how its value compares with the threshold, the
defaults seeded on ``nexus init``, and the workbench query that shows the offending events.

Every kind is measured over user traffic (the dashboard's default) at ``now``:

==============  ==========================================================  ============  =======
kind            value                                                       breaches      unit
==============  ==========================================================  ============  =======
``burn_rate``   the smaller of the long and short windows' burn rates of     value > thr.  ×
                one SLO (so it fires when both exceed: the SRE Workbook)
``latency_p95`` p95 of ``job_success.latency_ms`` over ``window``            value > thr.  ms
``error_rate``  failed / finished requests of one provider and/or model     value > thr.  share
``cost_rate``   ``job_success.cost_usd`` over ``window``, per hour          value > thr.  USD/h
``budget``      the most-used monthly budget, in percent                    value ≥ thr.  %
``no_traffic``  ``request_start`` events over ``window``, during the        value < thr.  count
                configured UTC hours and days (outside them: nothing to
                say, the alert resolves)
==============  ==========================================================  ============  =======

A window without the events a value needs has *no data* (``value`` None); each rule says how
that counts (``missing_data``): ``ok`` (the default: no data is no alarm, as on the dashboard),
``breaching`` (silence is suspicious) or ``keep`` (leave the alert as it is). A rule fires once
it has breached for ``for_minutes`` (0: at once); until then its alert is pending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from nexus_core.analytics.event_snapshot import EventSnapshot, quote
from nexus_core.analytics.slo import BURN_RULES, OBJECTIVES, PAGE, TICKET, slo_counts_by_window
from nexus_core.analytics.windows import format_window, parse_window, to_utc_naive
from nexus_core.errors import ValidationError

BURN_RATE: Final = "burn_rate"
LATENCY_P95: Final = "latency_p95"
ERROR_RATE: Final = "error_rate"
COST_RATE: Final = "cost_rate"
BUDGET: Final = "budget"
NO_TRAFFIC: Final = "no_traffic"
RULE_KINDS: Final = (BURN_RATE, LATENCY_P95, ERROR_RATE, COST_RATE, BUDGET, NO_TRAFFIC)
KIND_LABELS: Final = {
    BURN_RATE: "SLO burn rate (long and short window)",
    LATENCY_P95: "p95 response latency",
    ERROR_RATE: "Error rate of a provider / model",
    COST_RATE: "Cost per hour",
    BUDGET: "Monthly budget used",
    NO_TRAFFIC: "No traffic during working hours",
}
SEVERITIES: Final = (PAGE, TICKET)
MISSING_OK: Final = "ok"
MISSING_BREACHING: Final = "breaching"
MISSING_KEEP: Final = "keep"
MISSING_DATA: Final = (MISSING_OK, MISSING_BREACHING, MISSING_KEEP)
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOUR: Final = timedelta(hours=1)
MAX_FOR_MINUTES: Final = 7 * 24 * 60
MAX_NAME_CHARS: Final = 120

LATENCY_P95_SQL: Final = """
SELECT quantile_cont(latency_ms, 0.95) AS value
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success' AND latency_ms IS NOT NULL
"""
# An outcome's provider and model: its own fields, else its request_start's (older logs).
ERROR_RATE_SQL: Final = """
WITH starts AS (
    SELECT request_id, provider, model
    FROM events
    WHERE ts >= $start AND ts < $end AND event = 'request_start'
), outcomes AS (
    SELECT o.event, coalesce(o.provider, s.provider) AS provider,
           coalesce(o.model, s.model) AS model
    FROM events AS o LEFT JOIN starts AS s ON o.request_id = s.request_id
    WHERE o.ts >= $start AND o.ts < $end
      AND o.event IN ('request_success', 'request_failure')
)
SELECT count(*) FILTER (WHERE event = 'request_failure') AS failures, count(*) AS finished
FROM outcomes
WHERE ($provider = '' OR provider = $provider) AND ($model = '' OR model = $model)
"""
COST_SQL: Final = """
SELECT coalesce(sum(cost_usd), 0) AS cost
FROM events
WHERE ts >= $start AND ts < $end AND event = 'job_success'
"""
TRAFFIC_SQL: Final = """
SELECT count(*) AS requests
FROM events
WHERE ts >= $start AND ts < $end AND event = 'request_start'
"""
# What the workbench shows for an alert: the offending events of its window (``{start}`` and
# ``{end}`` are timestamp literals; ``{filters}`` the rule's own conditions).
EVIDENCE_SQL: Final = {
    BURN_RATE: "SELECT ts, event, job_id, request_id, latency_ms, error_type, model\n"
    "FROM events\nWHERE ts >= {start} AND ts < {end}\n"
    "  AND ({filters})\nORDER BY ts DESC",
    LATENCY_P95: "SELECT ts, job_id, chat_session_id, persona, model, latency_ms\n"
    "FROM events\nWHERE ts >= {start} AND ts < {end} AND event = 'job_success'\n"
    "ORDER BY latency_ms DESC",
    ERROR_RATE: "SELECT ts, request_id, provider, model, status_code, error_type\n"
    "FROM events\nWHERE ts >= {start} AND ts < {end} AND event = 'request_failure'{filters}\n"
    "ORDER BY ts DESC",
    COST_RATE: "SELECT ts, job_id, user_id, persona, model, cost_usd\n"
    "FROM events\nWHERE ts >= {start} AND ts < {end} AND event = 'job_success'\n"
    "ORDER BY cost_usd DESC NULLS LAST",
    BUDGET: "SELECT date_trunc('day', ts) AS day, persona, sum(cost_usd) AS cost_usd\n"
    "FROM events\nWHERE ts >= {start} AND ts < {end} AND event = 'job_success'\n"
    "GROUP BY ALL ORDER BY day, cost_usd DESC",
    NO_TRAFFIC: "SELECT date_trunc('minute', ts) AS minute, count(*) AS requests\n"
    "FROM events\nWHERE ts >= {start} AND ts < {end} AND event = 'request_start'\n"
    "GROUP BY minute ORDER BY minute",
}
BURN_FILTERS: Final = {
    "latency": "event = 'job_success' AND latency_ms >= 3000",
    "success": "event = 'request_failure'",
}


@dataclass(frozen=True)
class RuleSpec:
    """A rule as plain data (``id`` None until stored)."""

    name: str
    kind: str
    severity: str
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)
    missing_data: str = MISSING_OK
    for_minutes: int = 0
    enabled: bool = True
    id: int | None = None
    silenced_until: datetime | None = None
    silence_reason: str | None = None

    def silenced(self, now: datetime) -> bool:
        """Whether notifications of this rule are muted at ``now``."""
        return self.silenced_until is not None and self.silenced_until > now


@dataclass(frozen=True)
class Measurement:
    """A rule's value at one moment, whether it breaches (None: no data) and what it covers."""

    value: float | None
    breaching: bool | None
    window: timedelta
    note: str = ""


@dataclass(frozen=True)
class Context:
    """What a measurement reads: the event snapshot and (lazily) the budgets' percentages."""

    snapshot: EventSnapshot
    now: datetime
    budget_percents: Callable[[], list[float]]


def _burn_rules() -> list[RuleSpec]:
    rules = []
    for slo in OBJECTIVES:
        for burn in BURN_RULES:
            windows = f"{format_window(burn.long_window)} & {format_window(burn.short_window)}"
            rules.append(
                RuleSpec(
                    name=f"{slo.capitalize()} SLO burn {windows} > {burn.threshold:g}×",
                    kind=BURN_RATE,
                    severity=burn.severity,
                    threshold=burn.threshold,
                    params={
                        "slo": slo,
                        "long_window": format_window(burn.long_window),
                        "short_window": format_window(burn.short_window),
                    },
                )
            )
    return rules


def default_rules() -> list[RuleSpec]:
    """The rules ``nexus init`` seeds: the SRE Workbook's burn-rate pairs for both SLOs, then a
    latency, an error-rate, a cost, a budget and a (disabled) no-traffic rule."""
    return [
        *_burn_rules(),
        RuleSpec(
            "p95 latency over 5 s for 10 min",
            LATENCY_P95,
            TICKET,
            5000.0,
            {"window": "5m"},
            for_minutes=10,
        ),
        RuleSpec(
            "Any provider's error rate over 10 %",
            ERROR_RATE,
            TICKET,
            0.10,
            {"window": "15m", "provider": "", "model": ""},
            for_minutes=5,
        ),
        RuleSpec("Cost over $10 an hour", COST_RATE, TICKET, 10.0, {"window": "60m"}),
        RuleSpec("A monthly budget is spent", BUDGET, TICKET, 100.0),
        RuleSpec(
            "No traffic for 30 min on weekdays 08–18 UTC",
            NO_TRAFFIC,
            PAGE,
            1.0,
            {"window": "30m", "hours": "08-18", "days": "mon-fri"},
            enabled=False,
        ),
    ]


# --- validation ---------------------------------------------------------------------------


def validate(rule: RuleSpec) -> RuleSpec:
    """The rule with its parameters checked and normalised; ValidationError says what is wrong."""
    name = " ".join(rule.name.split())
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"A rule needs a name of 1 to {MAX_NAME_CHARS} characters.")
    if rule.kind not in RULE_KINDS:
        raise ValidationError(f"A rule's kind is one of {', '.join(RULE_KINDS)}.")
    if rule.severity not in SEVERITIES:
        raise ValidationError(f"A rule's severity is {' or '.join(SEVERITIES)}.")
    if rule.missing_data not in MISSING_DATA:
        raise ValidationError(f"Missing data counts as {', '.join(MISSING_DATA)}.")
    if not 0 <= rule.for_minutes <= MAX_FOR_MINUTES:
        raise ValidationError(f"'For' is 0 to {MAX_FOR_MINUTES} minutes.")
    if not rule.threshold >= 0:  # also refuses NaN
        raise ValidationError("A threshold is a number of 0 or more.")
    params = PARAM_CHECKS[rule.kind](dict(rule.params))
    return RuleSpec(
        name,
        rule.kind,
        rule.severity,
        float(rule.threshold),
        params,
        rule.missing_data,
        int(rule.for_minutes),
        rule.enabled,
        rule.id,
        rule.silenced_until,
        rule.silence_reason,
    )


def _window(params: dict[str, Any], key: str = "window", default: str = "5m") -> str:
    return format_window(parse_window(str(params.get(key) or default)))


def _check_burn(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("slo") not in OBJECTIVES:
        raise ValidationError(f"A burn-rate rule names an SLO: {', '.join(OBJECTIVES)}.")
    long_window = _window(params, "long_window", "1h")
    short_window = _window(params, "short_window", "5m")
    if parse_window(short_window) > parse_window(long_window):
        raise ValidationError("A burn-rate rule's short window is not longer than its long one.")
    return {"slo": params["slo"], "long_window": long_window, "short_window": short_window}


def _check_window(params: dict[str, Any]) -> dict[str, Any]:
    return {"window": _window(params)}


def _check_error_rate(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "window": _window(params, default="15m"),
        "provider": str(params.get("provider") or "").strip(),
        "model": str(params.get("model") or "").strip(),
    }


def _check_no_traffic(params: dict[str, Any]) -> dict[str, Any]:
    hours = str(params.get("hours") or "00-24")
    days = str(params.get("days") or "mon-sun").lower()
    _hours(hours), _days(days)
    return {"window": _window(params, default="30m"), "hours": hours, "days": days}


PARAM_CHECKS: Final[dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    BURN_RATE: _check_burn,
    LATENCY_P95: _check_window,
    ERROR_RATE: _check_error_rate,
    COST_RATE: _check_window,
    BUDGET: lambda _params: {},
    NO_TRAFFIC: _check_no_traffic,
}


def _hours(text: str) -> tuple[int, int]:
    """``"08-18"`` as (8, 18): from the start hour up to (not including) the end hour, UTC."""
    try:
        start, end = (int(part) for part in text.split("-"))
    except ValueError as exc:
        raise ValidationError(f"Hours are written like 08-18 (UTC), not {text!r}.") from exc
    if not 0 <= start < end <= 24:
        raise ValidationError(f"Hours are written like 08-18 (UTC), not {text!r}.")
    return start, end


def _days(text: str) -> set[int]:
    """``"mon-fri"`` or ``"sat,sun"`` as weekday numbers (Monday 0)."""
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValidationError(f"Days are written like mon-fri or sat,sun, not {text!r}.")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return days


# --- measuring ----------------------------------------------------------------------------


def measure(rule: RuleSpec, ctx: Context) -> Measurement:
    """The rule's value at ``ctx.now`` and whether it breaches (None: no data)."""
    return MEASURES[rule.kind](rule, ctx)


def _bounds(window: timedelta, now: datetime) -> tuple[datetime, datetime]:
    end = to_utc_naive(now)
    return end - window, end


def _over(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value > threshold


def _measure_burn(rule: RuleSpec, ctx: Context) -> Measurement:
    slo = rule.params["slo"]
    long_window = parse_window(rule.params["long_window"])
    short_window = parse_window(rule.params["short_window"])
    end = to_utc_naive(ctx.now)
    long_counts, short_counts = slo_counts_by_window(
        ctx.snapshot, [end - long_window, end - short_window], end
    )
    long_rate = long_counts[slo].burn_rate(OBJECTIVES[slo])
    short_rate = short_counts[slo].burn_rate(OBJECTIVES[slo])
    if long_rate is None or short_rate is None:
        return Measurement(None, None, long_window, "no requests in a window")
    note = f"{long_rate:.2f}× over {rule.params['long_window']}, "
    note += f"{short_rate:.2f}× over {rule.params['short_window']}"
    value = min(long_rate, short_rate)
    return Measurement(value, _over(value, rule.threshold), long_window, note)


def _measure_latency(rule: RuleSpec, ctx: Context) -> Measurement:
    window = parse_window(rule.params["window"])
    (row,) = ctx.snapshot.records(LATENCY_P95_SQL, *_bounds(window, ctx.now))
    value = row["value"]
    return Measurement(value, _over(value, rule.threshold), window)


def _measure_error_rate(rule: RuleSpec, ctx: Context) -> Measurement:
    window = parse_window(rule.params["window"])
    params = {"provider": rule.params.get("provider", ""), "model": rule.params.get("model", "")}
    (row,) = ctx.snapshot.records(ERROR_RATE_SQL, *_bounds(window, ctx.now), params)
    if not row["finished"]:
        return Measurement(None, None, window, "no finished requests")
    value = row["failures"] / row["finished"]
    note = f"{row['failures']} of {row['finished']} requests failed"
    return Measurement(value, _over(value, rule.threshold), window, note)


def _measure_cost(rule: RuleSpec, ctx: Context) -> Measurement:
    window = parse_window(rule.params["window"])
    (row,) = ctx.snapshot.records(COST_SQL, *_bounds(window, ctx.now))
    value = float(row["cost"] or 0.0) / (window / HOUR)
    return Measurement(value, _over(value, rule.threshold), window)


def _measure_budget(rule: RuleSpec, ctx: Context) -> Measurement:
    percents = ctx.budget_percents()
    now = to_utc_naive(ctx.now)
    month = now - now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if not percents:
        return Measurement(None, None, month, "no budgets")
    value = max(percents)
    return Measurement(value, value >= rule.threshold, month)


def _measure_no_traffic(rule: RuleSpec, ctx: Context) -> Measurement:
    window = parse_window(rule.params["window"])
    now = to_utc_naive(ctx.now)
    start_hour, end_hour = _hours(rule.params["hours"])
    if now.weekday() not in _days(rule.params["days"]) or not start_hour <= now.hour < end_hour:
        return Measurement(None, False, window, "outside the watched hours")
    (row,) = ctx.snapshot.records(TRAFFIC_SQL, *_bounds(window, ctx.now))
    value = float(row["requests"])  # zero is the silent outage this rule is for, not no data
    return Measurement(value, value < rule.threshold, window)


MEASURES: Final[dict[str, Callable[[RuleSpec, Context], Measurement]]] = {
    BURN_RATE: _measure_burn,
    LATENCY_P95: _measure_latency,
    ERROR_RATE: _measure_error_rate,
    COST_RATE: _measure_cost,
    BUDGET: _measure_budget,
    NO_TRAFFIC: _measure_no_traffic,
}


# --- describing ---------------------------------------------------------------------------

VALUE_FORMATS: Final = {
    BURN_RATE: "{:.2f}×",
    LATENCY_P95: "{:,.0f} ms",
    ERROR_RATE: "{:.1%}",
    COST_RATE: "${:,.2f}/h",
    BUDGET: "{:.0f} %",
    NO_TRAFFIC: "{:.0f} requests",
}


def format_value(kind: str, value: float | None) -> str:
    """A rule's value (or threshold) as people read it: ``15.20×``, ``3,450 ms``, ``12.5 %``."""
    return "no data" if value is None else VALUE_FORMATS[kind].format(value)


def comparison(kind: str) -> str:
    """How the value is compared with the threshold: ``>``, ``≥`` or ``<``."""
    return {BUDGET: "≥", NO_TRAFFIC: "<"}.get(kind, ">")


def evidence_sql(rule: RuleSpec, window: timedelta, now: datetime) -> str:
    """The workbench query that lists the events behind an alert of ``rule`` at ``now``."""
    start, end = _bounds(window, now)
    filters = ""
    if rule.kind == BURN_RATE:
        filters = BURN_FILTERS[rule.params["slo"]]
    elif rule.kind == ERROR_RATE:
        for key in ("provider", "model"):
            if rule.params.get(key):
                filters += f" AND {key} = {quote(rule.params[key])}"
    return EVIDENCE_SQL[rule.kind].format(
        start=f"TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'",
        end=f"TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'",
        filters=filters,
    )


def spec_from_row(row: Mapping[str, Any]) -> RuleSpec:
    """A stored ``alert_rules`` row (or an ORM object's fields) as a ``RuleSpec``."""
    return RuleSpec(
        name=row["name"],
        kind=row["kind"],
        severity=row["severity"],
        threshold=row["threshold"],
        params=dict(row["params"] or {}),
        missing_data=row["missing_data"],
        for_minutes=row["for_minutes"],
        enabled=row["enabled"],
        id=row["id"],
        silenced_until=row["silenced_until"],
        silence_reason=row["silence_reason"],
    )
