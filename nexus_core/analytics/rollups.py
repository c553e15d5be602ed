"""Additive aggregates (counts) over several windows ending at the same moment, cheaply.

The SLO needs counts over 5 min … 30 days at every refresh. Scanning 30 days of events each
time would grow with history, so every immutable Parquet piece gets, once, its per-minute totals
of the requested aggregates. A window's total is then: whole minutes from those totals, plus an
exact scan of the hot live rows (and of any in-memory piece) and of the few *cut* minutes that a
window start (or the end) splits. Exact to the microsecond, with a cost bounded by the number of
minutes, not of events.

Windows are nested (same end), so one scan assigns each event a *ring*: ring ``r`` holds the
events newer than exactly ``r`` of the window starts (sorted newest first), and the window
starting at the ``r``-th boundary sums rings ``0..r``. Totals and the exact scan are one query.

A piece's totals live on disk next to its Parquet file, as
``rollup-<piece file's stem>-<digest>.parquet``, so a new process (a ``nexus metrics``, a
restarted app) reads a few thousand rows per piece instead of scanning its events again: its
first SLO costs the same whatever the length of the history. The digest names the aggregates,
their parameters, the traffic filter and the piece as it is now (rows, time range, and the size
and mtime of its Parquet file, so a file written again gets new totals). A file is written under
a temporary name and renamed; whenever one is written, those whose piece file is gone are
deleted. The snapshot's rollup cache remembers which file holds which piece's totals, so a warm
refresh does not even ``stat`` the pieces.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from nexus_core.analytics.event_snapshot import (
    EventSnapshot,
    Piece,
    filtered,
    quote,
    with_events,
)

MINUTE: Final = timedelta(minutes=1)
ROLLUP_PREFIX: Final = "rollup-"
TALLY_PREFIX: Final = "tally-"  # ``tallies``' files
DERIVED_PREFIXES: Final = (ROLLUP_PREFIX, TALLY_PREFIX)
PARQUET_SUFFIX: Final = ".parquet"
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
# Whole minutes of the stored totals (the same columns, in the same order, as the aggregates).
WHOLE_MINUTES_SQL: Final = """
SELECT len(list_filter($boundaries, lambda b: b > minute)) AS ring,
    sum(COLUMNS(* EXCLUDE (minute)))
FROM read_parquet([{files}])
WHERE minute >= $start AND minute + INTERVAL 1 minute <= $end
    AND NOT list_contains($cuts::TIMESTAMP[], minute)
GROUP BY ring
"""


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def rollup_files(
    snapshot: EventSnapshot, pieces: list[Piece], aggregates: str, params: Mapping[str, Any]
) -> dict[str, Path]:
    """Piece key -> the file holding the Parquet piece's per-minute totals (computed once if
    missing). In-memory pieces, and pieces whose file is gone, have none."""
    extra = (*sorted(params.items()), ("_rows", snapshot.row_filter))
    files = {}
    for piece in pieces:
        if not piece.parquet:
            continue
        key = ((piece.key,), aggregates, extra)
        stored = snapshot.rollups.get(key)
        if stored is None:
            stored = _piece_totals(snapshot, piece, aggregates, extra)
            if stored is None:
                continue
            snapshot.rollups[key] = stored
        files[piece.key] = stored
    return files


def _piece_totals(
    snapshot: EventSnapshot, piece: Piece, aggregates: str, extra: tuple[tuple[str, Any], ...]
) -> Path | None:
    """The piece's rollup file, written now if no process did yet; None if the piece is gone."""
    stored = derived_file(piece, (aggregates, extra))
    if stored is None or stored.is_file():
        return stored
    params = {name: value for name, value in extra if name != "_rows"}
    relation = filtered(f"SELECT * FROM {piece.from_item}", snapshot.row_filter)
    sql = MINUTE_TOTALS_SQL.format(aggregates=aggregates, relation=f"({relation})")
    _copy_to(snapshot, sql, params, stored)
    return stored


def derived_file(
    piece: Piece, what: Any, prefix: str = ROLLUP_PREFIX, suffix: str = PARQUET_SUFFIX
) -> Path | None:
    """Where a result derived from the Parquet piece is kept: beside it, named by its stem and a
    digest of ``what`` and of the piece as it is now (rows, time range, the file's size and
    mtime, so a file written again gets new results); None if the piece's file is gone."""
    source = Path(piece.source)
    try:
        stat = source.stat()
    except FileNotFoundError:
        return None
    identity = (piece.key, piece.rows, piece.min_ts, piece.max_ts, stat.st_size, stat.st_mtime_ns)
    digest = hashlib.sha256(repr((identity, what)).encode()).hexdigest()[:24]
    return source.with_name(f"{prefix}{source.stem}-{digest}{suffix}")


def replace_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` by ``write``-ing a temporary file beside it and renaming that (another
    process may write the same result meanwhile), then sweep the directory (``sweep``)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    sweep(path.parent)


def _copy_to(snapshot: EventSnapshot, sql: str, params: Mapping[str, Any], path: Path) -> None:
    def copy(temporary: Path) -> None:
        with snapshot.cursor() as cur:
            cur.execute(f"COPY ({sql}) TO {quote(str(temporary))} (FORMAT parquet)", params)

    replace_with(path, copy)


def sweep(directory: Path) -> None:
    """Delete the files derived from pieces (``<prefix><piece stem>-<digest>.<suffix>``, the
    prefixes of ``DERIVED_PREFIXES``) whose piece's Parquet file is gone."""
    try:
        names = set(os.listdir(directory))
    except OSError:
        return
    for name in names:
        prefix = next((p for p in DERIVED_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            continue
        stem = name[len(prefix) :].partition(".")[0].rpartition("-")[0]
        if f"{stem}{PARQUET_SUFFIX}" not in names:
            (directory / name).unlink(missing_ok=True)


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
    files = rollup_files(snapshot, pieces, aggregates, params)
    relation = exact_relation(snapshot, pieces, set(files), cuts, MINUTE, params)
    sql = RING_TOTALS_SQL.format(aggregates=aggregates)
    bound = {"boundaries": boundaries, "start": oldest, "end": end, **params}
    if files:
        sql += " UNION ALL " + WHOLE_MINUTES_SQL.format(
            files=", ".join(quote(str(path)) for path in files.values())
        )
        bound["cuts"] = cuts
    rings: dict[int, list[int]] = {}
    with snapshot.cursor() as cur:
        result = cur.execute(with_events(sql, relation), bound)
        names = [column[0] for column in result.description][1:]
        for row in result.fetchall():
            _add(rings, row[0], row[1:])
    sums: dict[datetime, dict[str, int]] = {}
    running = [0] * len(names)
    for index, boundary in enumerate(boundaries):
        ring = rings.get(index, [0] * len(names))
        running = [a + b for a, b in zip(running, ring, strict=True)]
        sums[boundary] = dict(zip(names, running, strict=True))
    return [sums[start] for start in starts]


def exact_relation(
    snapshot: EventSnapshot,
    pieces: list[Piece],
    stored: set[str],
    cuts: Sequence[datetime],
    unit: timedelta,
    params: dict[str, Any],
) -> str:
    """The events read exactly beside stored per-``unit`` results: the hot rows, the pieces
    without stored results (in memory; a file gone, which then fails as any query of the
    snapshot would), and the stored pieces' rows in the ``cuts`` (units a window bound splits),
    bound as ``$cut_<n>`` in ``params``; only the events passing the traffic filter."""
    branches = [f"SELECT * FROM {snapshot.hot_table}"]
    branches += [f"SELECT * FROM {piece.from_item}" for piece in pieces if piece.key not in stored]
    for index, cut in enumerate(cuts):
        cut_pieces = [p for p in pieces if p.key in stored and p.overlaps(cut, cut + unit)]
        if cut_pieces:
            params[f"cut_{index}"] = cut
            params[f"cut_{index}_end"] = cut + unit
        branches += [
            f"SELECT * FROM {piece.from_item} WHERE ts >= $cut_{index} AND ts < $cut_{index}_end"
            for piece in cut_pieces
        ]
    return filtered(" UNION ALL ".join(branches), snapshot.row_filter)


def _add(rings: dict[int, list[int]], ring: int, values: Sequence[Any]) -> None:
    current = rings.setdefault(int(ring), [0] * len(values))
    for i, value in enumerate(values):
        current[i] += int(value or 0)


def piece_result_file(snapshot: EventSnapshot, piece: Piece, sql: str) -> Path | None:
    """The file holding ``sql``'s result over a Parquet piece's events (those passing the
    snapshot's traffic filter, as the relation ``{relation}`` in ``sql``), written once by the
    first process that asks, beside the piece and named like its per-minute totals, so that the
    same sweep deletes it with its piece; None for an in-memory piece or one whose file is gone.
    The snapshot's rollup cache remembers it for the process."""
    if not piece.parquet:
        return None
    key = ((piece.key,), sql, (("_rows", snapshot.row_filter),))
    stored = snapshot.rollups.get(key)
    if stored is not None:
        return stored
    stored = derived_file(piece, (sql, key[2]))
    if stored is None:
        return None
    if not stored.is_file():
        relation = filtered(f"SELECT * FROM {piece.from_item}", snapshot.row_filter)
        _copy_to(snapshot, sql.format(relation=f"({relation})"), {}, stored)
    snapshot.rollups[key] = stored
    return stored
