"""Usage's replies, hour by hour, stored once per immutable piece of the event log.

A usage report sums the replies of a window (30 days on the Usage page) by user, persona, model,
channel and day, and counts each group's *distinct* chat sessions. Distinct counts do not add up
across hours, so a piece cannot keep counts: it keeps, once, one row per hour, user, persona,
model, channel and session with that session's replies, tokens and cost in the hour (the
session ids are kept, so every count stays exact). A report then reads the stored rows of the
window's whole hours, and the events themselves only for the hot live rows, the in-memory pieces
and the (at most two) hours that the window's start and end cut.

A canonical session id (a lowercase hyphenated UUID, what the app writes) is stored as a 128-bit
``UUID``, any other id as text: counting distinct UUIDs is several times cheaper than counting
distinct strings, and the two sets cannot overlap, so their two distinct counts add up exactly.

The rows of a piece live beside it as a rollup file (``rollups.piece_result_file``: named by a
digest of the piece, this SQL and the traffic filter; written under a temporary name and renamed;
deleted with its piece), so a new process reads them instead of scanning the piece's events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from nexus_core.analytics.event_snapshot import EventSnapshot, quote, with_events
from nexus_core.analytics.rollups import exact_relation, piece_result_file
from nexus_core.analytics.windows import to_utc_naive

HOUR: Final = timedelta(hours=1)
# A canonical UUID string as a UUID; anything else (a NULL id too) as text.
SESSION_COLUMNS: Final = """
    CASE WHEN CAST(try_cast(chat_session_id AS UUID) AS VARCHAR) = chat_session_id
        THEN try_cast(chat_session_id AS UUID) END AS session_uuid,
    CASE WHEN CAST(try_cast(chat_session_id AS UUID) AS VARCHAR) IS DISTINCT FROM chat_session_id
        THEN chat_session_id END AS session_text"""
# One piece's replies by hour, user, persona, model, channel and session (``{relation}``: its
# events). Token sums stay NULL where no reply reported them, as a plain sum over events would.
PIECE_PARTS_SQL: Final = f"""
SELECT date_trunc('hour', ts) AS hour, user_id, persona, model, channel, {SESSION_COLUMNS},
    count(*) AS replies,
    CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
    CAST(sum(cached_input_tokens) AS BIGINT) AS cached_input_tokens,
    CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
    CAST(sum(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
    sum(CAST(cost_usd AS DECIMAL(38, 12))) AS cost_usd,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_replies
FROM {{relation}}
WHERE event = 'job_success' AND ts IS NOT NULL
GROUP BY ALL
ORDER BY hour
"""
# The same columns, one row per reply, for the events read exactly.
EXACT_PARTS_SQL: Final = f"""
SELECT date_trunc('hour', ts) AS hour, user_id, persona, model, channel, {SESSION_COLUMNS},
    CAST(1 AS BIGINT) AS replies,
    input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
    CAST(cost_usd AS DECIMAL(38, 12)) AS cost_usd,
    CAST(cost_usd IS NULL AS BIGINT) AS unpriced_replies
FROM events
WHERE event = 'job_success' AND ts >= $start AND ts < $end
"""
# The stored rows of the hours wholly inside the window.
WHOLE_HOURS_SQL: Final = """
SELECT * FROM read_parquet([{files}])
WHERE hour >= $start AND hour + INTERVAL 1 hour <= $end
"""
# What a report sums: replies and tokens add up; distinct sessions are counted, not added.
SESSIONS_SQL: Final = "count(DISTINCT session_uuid) + count(DISTINCT session_text)"


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def usage_records(
    snapshot: EventSnapshot,
    sql: str,
    start: datetime,
    end: datetime,
    params: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run ``sql`` over ``parts`` (the replies with ``start ≤ ts < end``, in the columns of
    ``PIECE_PARTS_SQL``, some already summed by hour and session) and return its rows as dicts."""
    start, end = to_utc_naive(start), to_utc_naive(end)
    pieces = snapshot.overlapping(start, end)
    files = {}
    for piece in pieces:
        stored = piece_result_file(snapshot, piece, PIECE_PARTS_SQL)
        if stored is not None:
            files[piece.key] = stored
    bound = {"start": start, "end": end, **(params or {})}
    # Read exactly: the hot rows, pieces without stored rows, and the stored pieces' cut hours.
    cuts = sorted({_floor_hour(m) for m in (start, end) if _floor_hour(m) != m})
    relation = exact_relation(snapshot, pieces, set(files), cuts, HOUR, bound)
    parts = EXACT_PARTS_SQL
    if files:
        listed = ", ".join(quote(str(path)) for path in files.values())
        parts += " UNION ALL BY NAME " + WHOLE_HOURS_SQL.format(files=listed)
    with snapshot.cursor() as cur:
        result = cur.execute(with_events(f"WITH parts AS ({parts}) {sql}", relation), bound)
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
