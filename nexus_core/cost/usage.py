"""Usage and cost over a window of the event log, by any of user, persona, model and channel.

Counted over ``job_success`` events (one per stored reply) with DuckDB, like the dashboard: the
database is not scanned per request. ``cost_usd`` sums the priced replies; ``unpriced_replies``
counts the replies whose model had no price (their tokens are still counted). Token sums skip the
replies whose provider did not report that count. Costs are summed as decimals and rows tied on cost
and replies are ordered by their keys, so the same log always gives the same report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from nexus_core.analytics.log_store import snapshot_of
from nexus_core.analytics.windows import format_window, parse_window, window_bounds
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
    "day": "CAST(date_trunc('day', ts) AS DATE)",
}
MEASURES: Final = """
    count(*) AS replies,
    coalesce(sum(input_tokens), 0) AS input_tokens,
    coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,
    coalesce(sum(output_tokens), 0) AS output_tokens,
    coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
    CAST(coalesce(sum(CAST(cost_usd AS DECIMAL(38, 12))), 0) AS DOUBLE) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies,
    count(DISTINCT chat_session_id) AS sessions
"""
WHERE: Final = "event = 'job_success' AND ts >= $start AND ts < $end"
# One pass gives the rows and the total: the grouping set () is the total (its GROUPING() ≠ 0).
REPORT_SQL: Final = """
SELECT {columns}, GROUPING({names}) <> 0 AS is_total, {measures} FROM events WHERE {where}
GROUP BY GROUPING SETS (({names}), ())
ORDER BY is_total DESC, cost_usd DESC, replies DESC, {names} NULLS LAST
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


def _report_sql(keys: Sequence[str], only_user: bool) -> str:
    return REPORT_SQL.format(
        columns=", ".join(f"{KEY_COLUMNS[k]} AS {k}" for k in keys),
        names=", ".join(keys),
        measures=MEASURES,
        where=WHERE + (" AND user_id = $user_id" if only_user else ""),
    )


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
    if isinstance(window, str):
        window = parse_window(window)
    keys = parse_keys(by)
    snapshot = snapshot_of(source)
    start, end = window_bounds(window, now)
    params = {} if user_id is None else {"user_id": user_id}
    total, *found = snapshot.records(_report_sql(keys, user_id is not None), start, end, params)
    total = _clean({k: v for k, v in total.items() if k not in keys and k != "is_total"})
    rows = []
    for found_row in found:
        row = _clean({k: v for k, v in found_row.items() if k != "is_total"})
        if "user" in row:
            row["user"] = (
                None if row["user"] is None else user_names(row["user"]) or f"#{row['user']}"
            )
        if "day" in row and row["day"] is not None:
            row["day"] = row["day"].isoformat()
        rows.append(row)
    return {"window": format_window(window), "now": format_ts(end), "total": total, "rows": rows}


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
