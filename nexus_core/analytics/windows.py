"""Time windows for metrics: ``60m``/``24h``/``7d``/``30d`` labels, UTC bounds and chart buckets.

A window ending at ``now`` holds the events with ``now − window ≤ ts < now``. Bounds are naive
datetimes in UTC, the type of the ``ts`` column.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from nexus_core.errors import ValidationError

WINDOW_PATTERN: Final = re.compile(r"^\s*(\d{1,7})\s*([mhd])\s*$")  # beyond: past MAX_WINDOW
WINDOW_UNITS: Final = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
MAX_WINDOW: Final = timedelta(days=366)
WINDOW_EXAMPLES: Final = "60m, 24h, 7d or 30d"
# Chart bucket widths, smallest first; the first giving at most MAX_BUCKETS buckets is used.
BUCKET_WIDTHS: Final = tuple(
    timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 360, 720, 1440, 10080)
)
MAX_BUCKETS: Final = 120
SPAN_NOUNS: Final = {"h": "hour", "d": "day"}
SINGLE_SPANS: Final = {
    timedelta(minutes=1): "minute",
    timedelta(hours=1): "hour",
    timedelta(days=1): "day",
    timedelta(days=7): "week",
}


def parse_window(text: str) -> timedelta:
    """``"60m"``, ``"24h"``, ``"7d"`` … as a timedelta; raises ValidationError otherwise."""
    match = WINDOW_PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(
            f"Window {text!r} is not understood: use a whole number of minutes, hours or days "
            f"such as {WINDOW_EXAMPLES}."
        )
    window = int(match.group(1)) * WINDOW_UNITS[match.group(2)]
    if not timedelta(0) < window <= MAX_WINDOW:
        raise ValidationError(
            f"Window {text!r} must be longer than zero and at most {MAX_WINDOW.days} days."
        )
    return window


def format_window(window: timedelta) -> str:
    """The label of a window: ``60m``, ``24h``, ``7d`` (the largest unit that reads well)."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600)):
        if seconds % size == 0 and seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def describe_span(span: timedelta) -> str:
    """A span in words: ``60 min``, ``6 hours``, ``1 day``, ``7 days`` (as ``format_window`` picks
    the unit)."""
    label = format_window(span)
    number, unit = int(label[:-1]), label[-1]
    if unit == "m":
        return f"{number} min"
    if unit == "s":
        return f"{number} s"
    noun = SPAN_NOUNS[unit]
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def per_span(span: timedelta) -> str:
    """What "per …" reads for a span: ``minute``, ``hour``, ``day``, or ``15 min``, ``2 hours``."""
    return SINGLE_SPANS.get(span) or describe_span(span)


def to_utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC without tzinfo (a naive datetime is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def window_bounds(window: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """``(now − window, now)`` as naive UTC datetimes."""
    end = to_utc_naive(now)
    return end - window, end


def bucket_width(window: timedelta) -> timedelta:
    """The chart bucket width for a window: one minute for an hour, 15 minutes for a day …"""
    for width in BUCKET_WIDTHS:
        if math.ceil(window / width) <= MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS[-1]
