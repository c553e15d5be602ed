"""A consistent view of the event log at one refresh: compacted Parquet parts plus the live rows.

Every row has the columns of ``EVENT_COLUMNS`` (the union of all events' fields, all nullable);
``ts`` is a naive ``TIMESTAMP`` in UTC. SQL run through a snapshot reads a relation named
``events`` (a common table expression put in front of it, cheaper than a view) holding only the
parts whose ``[min_ts, max_ts]`` overlaps the window plus the live rows, and binds ``$start`` /
``$end`` (naive UTC) for ``start ≤ ts < end`` filters. Frames come from ``con.sql(q).pl()``;
plain numbers from ``execute(...).fetchall()``, which skips the relation layer's second bind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl

# Raw JSON field -> DuckDB type; ``ts`` is read as text and parsed by ``TS_EXPRESSION``.
EVENT_COLUMNS: Final[dict[str, str]] = {
    "ts": "VARCHAR",
    "event": "VARCHAR",
    "chat_session_id": "VARCHAR",
    "user_id": "BIGINT",
    "job_id": "VARCHAR",
    "request_id": "VARCHAR",
    "attempt": "INTEGER",
    "attempts": "INTEGER",
    "model": "VARCHAR",
    "provider": "VARCHAR",
    "persona": "VARCHAR",
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "status_code": "INTEGER",
    "tokens_in": "BIGINT",
    "tokens_out": "BIGINT",
    "error_type": "VARCHAR",
    "retryable": "BOOLEAN",
    "delay_ms": "DOUBLE",
    "reference": "VARCHAR",
    "exception_type": "VARCHAR",
    "page": "VARCHAR",
}
# The contract writes ``Z``; an explicit offset is honoured (TIMESTAMPTZ), a bad stamp is NULL.
TS_EXPRESSION: Final = (
    "CASE WHEN right(ts, 1) IN ('Z', 'z') THEN try_cast(ts AS TIMESTAMP) "
    "ELSE timezone('UTC', try_cast(ts AS TIMESTAMPTZ)) END"
)
_JSON_COLUMNS: Final = ", ".join(f"{name}: '{kind}'" for name, kind in EVENT_COLUMNS.items())
_OTHER_COLUMNS: Final = ", ".join(name for name in EVENT_COLUMNS if name != "ts")
# Every line becomes a row; a line that is not a JSON object comes back all NULL.
READ_JSON_SQL: Final = f"""
SELECT {TS_EXPRESSION} AS ts, {_OTHER_COLUMNS}
FROM read_json($path, format = 'newline_delimited', ignore_errors = true,
               columns = {{{_JSON_COLUMNS}}})
"""
LIVE_TABLE_SCHEMA: Final = ", ".join(
    f"{name} {'TIMESTAMP' if name == 'ts' else kind}" for name, kind in EVENT_COLUMNS.items()
)
EVENTS_FRAME_SQL: Final = "SELECT * FROM events WHERE ts >= $start AND ts < $end ORDER BY ts"
ONE_MICROSECOND: Final = timedelta(microseconds=1)
WITH_PATTERN: Final = re.compile(r"^\s*WITH\s+(?!RECURSIVE\b)", re.IGNORECASE)

CursorFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
TotalsCache = dict[tuple[str, str, tuple[tuple[str, Any], ...]], tuple[float, ...]]


@dataclass(frozen=True)
class CompactedPart:
    """One closed (rotated) log file, compacted once into a Parquet file keyed by fingerprint."""

    fingerprint: str
    parquet: Path | None  # None when the file held no events
    rows: int
    skipped: int
    min_ts: datetime | None
    max_ts: datetime | None
    source: str
    size: int

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether any of the part's events can fall in ``start ≤ ts < end``."""
        if self.parquet is None or self.min_ts is None or self.max_ts is None:
            return False
        return self.min_ts < end and self.max_ts >= start


@dataclass(frozen=True)
class EventSnapshot:
    """The events as of one refresh; queries on it are thread-safe and never re-read old logs."""

    parts: tuple[CompactedPart, ...]
    live_table: str
    live_rows: int
    live_skipped: int
    vanished_files: int
    cursor: CursorFactory = field(repr=False)
    totals_cache: TotalsCache = field(repr=False, default_factory=dict)

    @property
    def skipped_lines(self) -> int:
        """Lines in the current log files that were not events (garbage, torn, not objects)."""
        return sum(p.skipped for p in self.parts) + self.live_skipped

    @property
    def rows(self) -> int:
        """How many events the snapshot holds."""
        return sum(p.rows for p in self.parts) + self.live_rows

    def query(
        self,
        sql: str,
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None = None,
    ) -> pl.DataFrame:
        """Run ``sql`` (which must use ``$start`` and ``$end``) over the window's ``events``."""
        parts = [p for p in self.parts if p.overlaps(start, end)]
        bound = {"start": start, "end": end, **(params or {})}
        with self.cursor() as cur:
            return cur.sql(with_events(sql, parts, self.live_table), params=bound).pl()

    def events_frame(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Every event with ``start ≤ ts < end``, oldest first, as a Polars frame."""
        return self.query(EVENTS_FRAME_SQL, start, end)

    def ring_sums(
        self,
        sql: str,
        starts: Sequence[datetime],
        end: datetime,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, float]]:
        """Additive aggregates (counts) for each window ``start ≤ ts < end``, in one scan.

        ``sql`` groups by ``ring`` = ``len(list_filter($boundaries, lambda b: b > ts))`` and
        filters ``$start ≤ ts < $end``. A part lying wholly inside one ring adds totals computed
        once per part and cached; only the live rows and the parts cut by a window's start are
        scanned, so the cost does not grow with history.
        """
        boundaries = sorted(set(starts), reverse=True)
        oldest = boundaries[-1]
        extra = tuple(sorted((params or {}).items()))
        rings: dict[int, tuple[float, ...]] = {}
        scanned: list[CompactedPart] = []
        for part in (p for p in self.parts if p.overlaps(oldest, end)):
            assert part.min_ts is not None and part.max_ts is not None
            ring = _ring(boundaries, part.min_ts)
            if ring != _ring(boundaries, part.max_ts) or part.max_ts >= end:
                scanned.append(part)
                continue
            key = (part.fingerprint, sql, extra)
            if key not in self.totals_cache:
                _, whole = self._ring_rows(
                    sql,
                    [part],
                    None,
                    [part.min_ts],
                    part.min_ts,
                    part.max_ts + ONE_MICROSECOND,
                    params,
                )
                self.totals_cache[key] = whole.get(0, ())
            rings[ring] = _add(rings.get(ring, ()), self.totals_cache[key])
        names, scanned_rings = self._ring_rows(
            sql, scanned, self.live_table, boundaries, oldest, end, params
        )
        for ring, values in scanned_rings.items():
            rings[ring] = _add(rings.get(ring, ()), values)
        width = len(names)
        by_boundary: dict[datetime, dict[str, float]] = {}
        running: tuple[float, ...] = (0,) * width
        for index, boundary in enumerate(boundaries):
            running = _add(running, rings.get(index, ()) or (0,) * width)
            by_boundary[boundary] = dict(zip(names, running, strict=True))
        return [by_boundary[start] for start in starts]

    def _ring_rows(
        self,
        sql: str,
        parts: list[CompactedPart],
        live_table: str | None,
        boundaries: list[datetime],
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None,
    ) -> tuple[list[str], dict[int, tuple[float, ...]]]:
        bound = {"boundaries": boundaries, "start": start, "end": end, **(params or {})}
        with self.cursor() as cur:
            result = cur.execute(with_events(sql, parts, live_table), bound)
            names = [column[0] for column in result.description][1:]
            rows = {int(row[0]): tuple(v or 0 for v in row[1:]) for row in result.fetchall()}
        return names, rows


def _ring(boundaries: list[datetime], moment: datetime) -> int:
    return sum(b > moment for b in boundaries)


def _add(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    if not a:
        return b
    if not b:
        return a
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def events_relation(parts: list[CompactedPart], live_table: str | None) -> str:
    """A SELECT of every event in the given Parquet parts and live table."""
    selects: list[str] = []
    files = [str(p.parquet) for p in parts if p.parquet is not None]
    if files:
        selects.append(f"SELECT * FROM read_parquet([{', '.join(map(_quote, files))}])")
    if live_table is not None:
        selects.append(f"SELECT * FROM {live_table}")
    if not selects:  # an empty relation with the right columns
        selects.append(f"SELECT * FROM (SELECT {_typed_nulls()}) WHERE false")
    return " UNION ALL ".join(selects)


def with_events(sql: str, parts: list[CompactedPart], live_table: str | None) -> str:
    """``sql`` with a leading ``events`` common table expression over the given sources."""
    cte = f"events AS ({events_relation(parts, live_table)})"
    if WITH_PATTERN.match(sql):
        return WITH_PATTERN.sub(lambda _: f"WITH {cte}, ", sql, count=1)
    return f"WITH {cte} {sql}"


def _typed_nulls() -> str:
    return ", ".join(
        f"NULL::{'TIMESTAMP' if name == 'ts' else kind} AS {name}"
        for name, kind in EVENT_COLUMNS.items()
    )
