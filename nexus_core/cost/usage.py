"""Usage and cost over a window of the event log, by any of user, persona, model and channel.

Counted over ``job_success`` events (one per stored reply) with DuckDB, like the dashboard: the
database is not scanned per request, and the log's immutable pieces are read as their hourly rows
stored once (``usage_pieces``), every session id kept, so the counts are exact. ``cost_usd`` sums
the priced replies; ``unpriced_replies`` counts the replies whose model had no price (their tokens
are still counted). Token sums skip the replies whose provider did not report that count. Costs
are summed as decimals and rows tied on cost and replies are ordered by their keys, so the same
log always gives the same report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from nexus_core.analytics.log_store import snapshot_of
from nexus_core.analytics.windows import format_window, parse_window, window_bounds
from nexus_core.cost.usage_pieces import SESSIONS_SQL, usage_records
from nexus_core.errors import ValidationError
from nexus_core.ops.events import format_ts

if TYPE_CHECKING:
    from nexus_core.analytics.event_snapshot import EventSnapshot
    from nexus_core.analytics.log_store import EventStore

USAGE_KEYS: Final = ("user", "persona", "model", "channel")
KEY_COLUMNS: Final = {
    "user": "user_id",
    "persona": "persona",
    "model": "model",
    "channel": "channel",
    "day": "CAST(date_trunc('day', hour) AS DATE)",
}
# Over ``usage_pieces``' parts (the window's replies, partly summed by hour and session already).
MEASURES: Final = f"""
    coalesce(sum(replies), 0) AS replies,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
    CAST(coalesce(sum(cost_usd), 0) AS DOUBLE) AS cost_usd,
    coalesce(sum(unpriced_replies), 0) AS unpriced_replies,
    {SESSIONS_SQL} AS sessions
"""
# One pass gives the rows of every breakdown and the total: each grouping set is a breakdown,
# the empty set () the total; GROUPING() of every key tells them apart (a bit set for each key a
# row is not grouped by, so the total has them all).
REPORT_SQL: Final = """
SELECT {columns}, GROUPING({names}) AS grouping_id, {measures} FROM parts {where}
GROUP BY GROUPING SETS ({sets}, ())
ORDER BY grouping_id, cost_usd DESC, replies DESC, {names} NULLS LAST
"""
NUMBER_FIELDS: Final = (
    "replies",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_replies",
)


def parse_keys(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"user,model"`` → ``("user", "model")``; each key once, known keys only."""
    keys = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    unknown = [k for k in keys if k not in USAGE_KEYS and k != "day"]
    if unknown or not keys or len(set(keys)) != len(keys):
        raise ValidationError(
            f"Break usage down by one or more of {', '.join(USAGE_KEYS)} (each once), "
            "separated by commas."
        )
    return tuple(keys)


def _report_sql(keys: Sequence[str], breakdowns: Sequence[Sequence[str]], only_user: bool) -> str:
    return REPORT_SQL.format(
        columns=", ".join(f"{KEY_COLUMNS[k]} AS {k}" for k in keys),
        names=", ".join(keys),
        sets=", ".join(f"({', '.join(b)})" for b in breakdowns),
        measures=MEASURES,
        where="WHERE user_id = $user_id" if only_user else "",
    )


def _grouping_id(keys: Sequence[str], breakdown: Sequence[str]) -> int:
    """GROUPING(keys) of the rows of ``breakdown``: a bit for each key it is not grouped by."""
    return sum(1 << (len(keys) - 1 - i) for i, key in enumerate(keys) if key not in breakdown)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["cost_usd"] = round(float(row["cost_usd"]), 6)
    for key in NUMBER_FIELDS:
        if key != "cost_usd":
            row[key] = int(row[key])
    row["sessions"] = int(row.get("sessions") or 0)
    return row


def usage_report(
    source: EventStore | EventSnapshot,
    window: timedelta | str,
    now: datetime,
    by: Sequence[str] = ("user",),
    *,
    user_names: Callable[[int], str | None] = lambda _id: None,
    user_id: int | None = None,
) -> dict[str, Any]:
    """``{"window", "now", "total", "rows"}`` as ``nexus usage --json`` prints it.

    ``user_names`` turns a user id into the name shown; ``user_id`` keeps one person's usage.
    """
    return usage_reports(source, window, now, [by], user_names=user_names, user_id=user_id)[0]


def usage_reports(
    source: EventStore | EventSnapshot,
    window: timedelta | str,
    now: datetime,
    breakdowns: Sequence[Sequence[str]],
    *,
    user_names: Callable[[int], str | None] = lambda _id: None,
    user_id: int | None = None,
) -> list[dict[str, Any]]:
    """``usage_report`` of each of ``breakdowns`` (e.g. by user, and by day), in one pass over
    the window's events: the page that shows both reads the log once."""
    if isinstance(window, str):
        window = parse_window(window)
    sets = list(dict.fromkeys(parse_keys(b) for b in breakdowns))  # each once, in order
    keys = tuple(dict.fromkeys(k for b in sets for k in b))
    snapshot = snapshot_of(source)
    start, end = window_bounds(window, now)
    params = {} if user_id is None else {"user_id": user_id}
    records = usage_records(
        snapshot, _report_sql(keys, sets, user_id is not None), start, end, params
    )
    total_id = _grouping_id(keys, ())
    total = next(r for r in records if r["grouping_id"] == total_id)
    total = _clean({k: v for k, v in total.items() if k not in keys and k != "grouping_id"})
    reports = {}
    for breakdown in sets:
        wanted = _grouping_id(keys, breakdown)
        rows = [_row(r, breakdown, keys, user_names) for r in records if r["grouping_id"] == wanted]
        reports[breakdown] = {
            "window": format_window(window),
            "now": format_ts(end),
            "total": dict(total),
            "rows": rows,
        }
    return [reports[parse_keys(b)] for b in breakdowns]


def _row(
    found: dict[str, Any],
    breakdown: Sequence[str],
    keys: Sequence[str],
    user_names: Callable[[int], str | None],
) -> dict[str, Any]:
    row = _clean(
        {k: v for k, v in found.items() if k != "grouping_id" and (k in breakdown or k not in keys)}
    )
    if "user" in row:
        row["user"] = None if row["user"] is None else user_names(row["user"]) or f"#{row['user']}"
    if "day" in row and row["day"] is not None:
        row["day"] = row["day"].isoformat()
    return row


def cache_share(row: dict[str, Any]) -> float | None:
    """Cached ÷ input tokens (None without input)."""
    return row["cached_input_tokens"] / row["input_tokens"] if row["input_tokens"] else None


def per_reply(row: dict[str, Any]) -> float | None:
    """Cost per priced reply (None without one)."""
    priced = row["replies"] - row["unpriced_replies"]
    return row["cost_usd"] / priced if priced else None


def per_session(row: dict[str, Any]) -> float | None:
    """Cost per session with a reply (None without one)."""
    return row["cost_usd"] / row["sessions"] if row.get("sessions") else None
