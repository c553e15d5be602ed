"""Additive aggregates (counts) over several windows ending at the same moment, cheaply.

The SLO needs counts over 5 min … 30 days at every refresh. Scanning 30 days of events each
time would grow with history, so every immutable piece gets, once, its per-minute totals of the
requested aggregates (cached per piece, SQL and parameters). A window's total is then: whole
minutes from those totals, plus an exact scan of the hot live rows and of the few *cut* minutes
that a window start (or the end) splits. Exact to the microsecond, with a cost bounded by the
number of minutes, not of events.

Windows are nested (same end), so one scan assigns each event a *ring*: ring ``r`` holds the
events newer than exactly ``r`` of the window starts (sorted newest first), and the window
starting at the ``r``-th boundary sums rings ``0..r``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import polars as pl

from nexus_core.analytics.event_snapshot import EventSnapshot, Piece, filtered, with_events

MINUTE: Final = timedelta(minutes=1)
MINUTE_TOTALS_SQL: Final = """
SELECT date_trunc('minute', ts) AS minute, {aggregates}
FROM {relation}
GROUP BY minute
ORDER BY minute
"""
RING_TOTALS_SQL: Final = """
SELECT len(list_filter($boundaries, lambda b: b > ts)) AS ring, {aggregates}
FROM events
WHERE ts >= $start AND ts < $end
GROUP BY ring
"""


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def minute_totals(
    snapshot: EventSnapshot, pieces: list[Piece], aggregates: str, params: Mapping[str, Any]
) -> pl.DataFrame | None:
    """The pieces' aggregates per minute (``minute`` then one column each), computed once."""
    if not pieces:
        return None
    extra = (*sorted(params.items()), ("_rows", snapshot.row_filter))
    combined_key = (tuple(p.key for p in pieces), aggregates, extra)
    combined = snapshot.rollups.get(combined_key)
    if combined is None:
        frames = []
        for piece in pieces:
            key = ((piece.key,), aggregates, extra)
            frame = snapshot.rollups.get(key)
            if frame is None:
                relation = filtered(f"SELECT * FROM {piece.from_item}", snapshot.row_filter)
                sql = MINUTE_TOTALS_SQL.format(aggregates=aggregates, relation=f"({relation})")
                with snapshot.cursor() as cur:
                    frame = cur.sql(sql, params=dict(params) or None).pl()
                snapshot.rollups[key] = frame
            frames.append(frame)
        # Keep one combination per query: older ones would pile up as segments freeze.
        stale = [k for k in list(snapshot.rollups) if len(k[0]) > 1 and k[1:] == combined_key[1:]]
        for key in stale:
            snapshot.rollups.pop(key, None)
        combined = snapshot.rollups[combined_key] = pl.concat(frames, rechunk=True)
    return combined


def window_sums(
    snapshot: EventSnapshot,
    aggregates: str,
    starts: Sequence[datetime],
    end: datetime,
    params: Mapping[str, Any] | None = None,
) -> list[dict[str, int]]:
    """For each start, the sums of ``aggregates`` (counts) over ``start ≤ ts < end``."""
    params = dict(params or {})
    boundaries = sorted(set(starts), reverse=True)
    oldest = boundaries[-1]
    cuts = sorted({_floor_minute(m) for m in [*boundaries, end] if _floor_minute(m) != m})
    pieces = snapshot.overlapping(oldest, end)
    rings: dict[int, list[int]] = {}
    names: list[str] = []
    totals = minute_totals(snapshot, pieces, aggregates, params)
    if totals is not None:
        names = totals.columns[1:]
        minute = pl.col("minute")
        ring = pl.sum_horizontal([(minute < b).cast(pl.Int64) for b in boundaries])
        whole = (
            totals.filter(minute >= oldest, minute + MINUTE <= end, ~minute.is_in(cuts))
            .group_by(ring.alias("ring"))
            .agg(pl.col(names).sum())
        )
        for row in whole.iter_rows():
            _add(rings, row[0], row[1:])
    # Exact part: the hot rows, and the pieces' rows in minutes a boundary cuts.
    branches = [f"SELECT * FROM {snapshot.hot_table}"]
    for index, cut in enumerate(cuts):
        cut_pieces = [piece for piece in pieces if piece.overlaps(cut, cut + MINUTE)]
        if cut_pieces:
            params[f"cut_{index}"] = cut
        branches += [
            f"SELECT * FROM {piece.from_item} WHERE ts >= $cut_{index} "
            f"AND ts < $cut_{index} + INTERVAL 1 minute"
            for piece in cut_pieces
        ]
    relation = filtered(" UNION ALL ".join(branches), snapshot.row_filter)
    sql = with_events(RING_TOTALS_SQL.format(aggregates=aggregates), relation)
    bound = {"boundaries": boundaries, "start": oldest, "end": end, **params}
    with snapshot.cursor() as cur:
        result = cur.execute(sql, bound)
        names = names or [column[0] for column in result.description][1:]
        for row in result.fetchall():
            _add(rings, row[0], row[1:])
    sums: dict[datetime, dict[str, int]] = {}
    running = [0] * len(names)
    for index, boundary in enumerate(boundaries):
        ring = rings.get(index, [0] * len(names))
        running = [a + b for a, b in zip(running, ring, strict=True)]
        sums[boundary] = dict(zip(names, running, strict=True))
    return [sums[start] for start in starts]


def _add(rings: dict[int, list[int]], ring: int, values: Sequence[Any]) -> None:
    current = rings.setdefault(int(ring), [0] * len(values))
    for i, value in enumerate(values):
        current[i] += int(value or 0)
