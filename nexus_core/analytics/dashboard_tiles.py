"""The dashboard's numbers as a reader meets them: each tile's label, value and change, and the
window each covers said where the reader sees it — never only in a tooltip.

- The *window tiles* (traffic, latency, success rate, burn rate) cover the selected window and
  are compared with the window of the same length just before it; the caption above them names
  both, with the window's totals.
- Rates count per minute, hour or day, whichever fits the window (``rate_unit``): 60 requests
  over 7 days read 8.57 per day, not 0.01 per minute.
- A change that rounds to nothing reads "no change", neutral: grey, without an arrow.
- The *error budgets* belong to the 30-day SLO period, not to the window: their tiles say
  "30 days" in the label, and their change is the share of that budget the selected window
  used, so "100 % success" beside an overspent budget reads as what it is.

Pure functions from ``compute_metrics`` dicts to plain data; ``nexus_core.ui.dashboard_view``
draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from nexus_core.analytics.slo import (
    LATENCY,
    LATENCY_OBJECTIVE,
    LATENCY_TARGET_MS,
    SLO_PERIOD,
    SUCCESS,
    SUCCESS_OBJECTIVE,
)
from nexus_core.analytics.windows import describe_span, per_span, to_utc_naive

Better = Literal["up", "down"]

# (longest window, rate unit): per minute up to 3 hours, per hour up to 3 days, else per day.
RATE_UNITS: Final = (
    (timedelta(hours=3), timedelta(minutes=1)),
    (timedelta(days=3), timedelta(hours=1)),
)
LONG_RATE_UNIT: Final = timedelta(days=1)
NO_CHANGE: Final = "no change"
NONE_USED: Final = "none"
NONZERO_DIGITS: Final = frozenset("123456789")
SLO_NAMES: Final = {LATENCY: "Latency", SUCCESS: "Success"}
MET: Final = {True: "objective met", False: "objective missed"}
RATE_COUNTS: Final[tuple[tuple[str, str, Better, str], ...]] = (
    ("requests", "Requests", "up", "request_start events"),
    ("failures", "Failures", "down", "request_failure events (every failed attempt)"),
    ("retries", "Retries", "down", "job_retry events (an attempt failed and was tried again)"),
)


@dataclass(frozen=True)
class Change:
    """A tile's change as shown; ``neutral`` when it rounds to nothing (grey, no arrow)."""

    text: str
    neutral: bool = False


@dataclass(frozen=True)
class Tile:
    """One number on the dashboard: label, value, its change and which way is better."""

    label: str
    value: str
    change: Change | None = None
    better: Better = "up"
    note: str | None = None  # shown beside the change: what it is measured against
    help: str | None = None


def rate_unit(window: timedelta) -> timedelta:
    """The unit rates of ``window`` are counted in: a minute, an hour or a day."""
    for longest, unit in RATE_UNITS:
        if window <= longest:
            return unit
    return LONG_RATE_UNIT


def rate(count: int, window: timedelta, unit: timedelta) -> float:
    """``count`` events over ``window`` as a rate per ``unit``."""
    return count / (window / unit)


def change(
    now: float | None, before: float | None, fmt: str, zero: str = NO_CHANGE
) -> Change | None:
    """``now − before`` formatted with ``fmt`` (with its sign); ``zero`` ("no change"), neutral,
    when it rounds to nothing; None when either side is unknown."""
    if now is None or before is None:
        return None
    text = fmt.format(now - before)
    if not NONZERO_DIGITS.intersection(text):
        return Change(zero, neutral=True)
    return Change(text)


def _text(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def _counted(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _clock(start: datetime, end: datetime) -> str:
    if start.date() == end.date():
        return f"{start:%d %b %H:%M}–{end:%H:%M} UTC"
    return f"{start:%d %b %H:%M} – {end:%d %b %H:%M} UTC"


def window_caption(current: dict[str, Any], window: timedelta, now: datetime) -> str:
    """What the window tiles cover: the window, its clock times, what they are compared with,
    the window's totals and the unit of the rates."""
    end = to_utc_naive(now)
    span = describe_span(window)
    totals = ", ".join(
        (
            _counted(current["requests"], "request", "requests"),
            _counted(current["failures"], "failure", "failures"),
            _counted(current["retries"], "retry", "retries"),
        )
    )
    return (
        f"Last {span} ({_clock(end - window, end)}), against the {span} before: {totals}. "
        f"Rates per {per_span(rate_unit(window))}."
    )


def _rate_tiles(current: dict[str, Any], previous: dict[str, Any], window: timedelta) -> list[Tile]:
    unit = rate_unit(window)
    per = per_span(unit)
    note = f"vs the {describe_span(window)} before"
    tiles = []
    for key, name, better, counted in RATE_COUNTS:
        now, before = rate(current[key], window, unit), rate(previous[key], window, unit)
        tiles.append(
            Tile(
                f"{name} per {per}",
                f"{now:,.2f}",
                change(now, before, "{:+,.2f}"),
                better,
                note,
                f"{counted} per {per}, over the last {describe_span(window)}",
            )
        )
    return tiles


def window_tiles(
    current: dict[str, Any], previous: dict[str, Any], window: timedelta
) -> list[Tile]:
    """The tiles of the selected window, each with its change against the window before it."""
    slo_now, slo_before = current["slo"], previous["slo"]
    note = f"vs the {describe_span(window)} before"
    burn_now, burn_before = _fastest_burn(slo_now), _fastest_burn(slo_before)
    success_now = _pct(current["success_rate"])
    return [
        *_rate_tiles(current, previous, window),
        Tile(
            "Average latency",
            _text(current["avg_latency_ms"], "{:,.0f} ms"),
            change(current["avg_latency_ms"], previous["avg_latency_ms"], "{:+,.0f} ms"),
            "down",
            note,
            "Mean time from the user's message to the stored reply",
        ),
        Tile(
            f"p95 latency (target {LATENCY_TARGET_MS / 1000:g} s)",
            _text(current["p95_latency_ms"], "{:,.0f} ms"),
            change(current["p95_latency_ms"], previous["p95_latency_ms"], "{:+,.0f} ms"),
            "down",
            note,
            _met_text(slo_now[LATENCY]["met"], window),
        ),
        Tile(
            f"Success rate (objective {SUCCESS_OBJECTIVE:.1%})",
            _text(success_now, "{:.2f} %"),
            change(success_now, _pct(previous["success_rate"]), "{:+.2f} pp"),
            "up",
            note,
            _met_text(slo_now[SUCCESS]["met"], window),
        ),
        Tile(
            "Burn rate (faster SLO)",
            _text(burn_now, "{:.2f}×"),
            change(burn_now, burn_before, "{:+.2f}×"),
            "down",
            note,
            f"How fast the last {describe_span(window)} spent error budget: 1× would spend a "
            f"{SLO_PERIOD.days}-day budget in exactly {SLO_PERIOD.days} days",
        ),
    ]


def _fastest_burn(slo: dict[str, Any]) -> float | None:
    rates = [slo[name]["burn_rate"] for name in (LATENCY, SUCCESS)]
    known = [r for r in rates if r is not None]
    return max(known) if known else None


def _met_text(met: bool | None, window: timedelta) -> str:
    if met is None:
        return f"No data in the last {describe_span(window)}"
    return f"{MET[met].capitalize()} over the last {describe_span(window)}"


def budget_caption(window: timedelta, now: datetime) -> str:
    """What the budget tiles cover: the 30-day period to ``now``, whatever the window, and what
    each budget allows."""
    end = to_utc_naive(now)
    days = SLO_PERIOD.days
    return (
        f"Error budgets of the last {days} days ({_clock(end - SLO_PERIOD, end)}), whatever the "
        f"window above. Over {days} days the latency SLO may have "
        f"{1 - LATENCY_OBJECTIVE:.0%} of responses over {LATENCY_TARGET_MS / 1000:g} s and the "
        f"success SLO {1 - SUCCESS_OBJECTIVE:.1%} of requests failing; below 0 % a budget is "
        f"overspent. Under each: what the last {describe_span(window)} used of it."
    )


def budget_tiles(current: dict[str, Any], window: timedelta) -> list[Tile]:
    """Each SLO's error budget left over the 30-day period, changed by what the window used."""
    used_note = f"used in the last {describe_span(window)}"
    tiles = []
    for name, title in SLO_NAMES.items():
        numbers = current["slo"][name]
        left = _pct(numbers["error_budget_remaining"])
        used = _pct(numbers["error_budget_spent_in_window"])
        tiles.append(
            Tile(
                f"{title} error budget left ({SLO_PERIOD.days} days)",
                _text(left, "{:.1f} %"),
                change(0.0, used, "{:+.1f} pp", zero=NONE_USED),
                "up",
                used_note,
                f"1 − bad ÷ allowed bad over the last {SLO_PERIOD.days} days",
            )
        )
    return tiles
