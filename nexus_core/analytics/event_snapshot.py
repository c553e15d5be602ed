"""A consistent view of the event log at one refresh: compacted Parquet parts plus the live rows.

Every row has the columns of ``EVENT_COLUMNS`` (the union of all events' fields, all nullable);
``ts`` is a naive ``TIMESTAMP`` in UTC. SQL run through a snapshot sees a view named ``events``
holding only the parts whose ``[min_ts, max_ts]`` overlaps the window, plus the live rows, and
binds ``$start`` / ``$end`` (naive UTC) for ``start ≤ ts < end`` filters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

    def inside(self, start: datetime, end: datetime) -> bool:
        """Whether every event of the part falls in ``start ≤ ts < end``."""
        if not self.overlaps(start, end):
            return False
        assert self.min_ts is not None and self.max_ts is not None
        return self.min_ts >= start and self.max_ts < end


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
        with self._events_view(parts, live=True) as cur:
            bound = {"start": start, "end": end, **(params or {})}
            return cur.sql(sql, params=bound).pl()

    def events_frame(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Every event with ``start ≤ ts < end``, oldest first, as a Polars frame."""
        return self.query(EVENTS_FRAME_SQL, start, end)

    def sum_over(
        self,
        sql: str,
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, float]:
        """Sum a one-row additive aggregate (counts) over the window, reusing whole-part totals.

        A part lying entirely inside the window contributes totals computed once per part and
        cached; only the parts cut by the window's edges and the live rows are scanned.
        """
        extra = tuple(sorted((params or {}).items()))
        inside = [p for p in self.parts if p.inside(start, end)]
        edges = [p for p in self.parts if p.overlaps(start, end) and not p.inside(start, end)]
        names, totals = self._aggregate(edges, True, sql, start, end, params)
        for part in inside:
            key = (part.fingerprint, sql, extra)
            if key not in self.totals_cache:
                assert part.min_ts is not None and part.max_ts is not None
                _, self.totals_cache[key] = self._aggregate(
                    [part], False, sql, part.min_ts, part.max_ts + ONE_MICROSECOND, params
                )
            totals = tuple(a + b for a, b in zip(totals, self.totals_cache[key], strict=True))
        return dict(zip(names, totals, strict=True))

    def _aggregate(
        self,
        parts: list[CompactedPart],
        live: bool,
        sql: str,
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None,
    ) -> tuple[list[str], tuple[float, ...]]:
        with self._events_view(parts, live=live) as cur:
            relation = cur.sql(sql, params={"start": start, "end": end, **(params or {})})
            names = list(relation.columns)
            (row,) = relation.fetchall()
        return names, tuple(value or 0 for value in row)

    def _events_view(
        self, parts: list[CompactedPart], *, live: bool
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return _ViewCursor(self.cursor, events_view_sql(parts, self.live_table if live else None))


class _ViewCursor(AbstractContextManager[duckdb.DuckDBPyConnection]):
    """A fresh cursor with a temporary ``events`` view defined on it."""

    def __init__(self, cursor: CursorFactory, view_sql: str) -> None:
        self._manager = cursor()
        self._view_sql = view_sql

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        cur = self._manager.__enter__()
        cur.execute(self._view_sql)
        return cur

    def __exit__(self, *exc_info: Any) -> None:
        self._manager.__exit__(*exc_info)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def events_view_sql(parts: list[CompactedPart], live_table: str | None) -> str:
    """``CREATE TEMP VIEW events`` over the given Parquet parts and live table."""
    selects: list[str] = []
    files = [str(p.parquet) for p in parts if p.parquet is not None]
    if files:
        selects.append(f"SELECT * FROM read_parquet([{', '.join(map(_quote, files))}])")
    if live_table is not None:
        selects.append(f"SELECT * FROM {live_table}")
    if not selects:  # an empty relation with the right columns
        selects.append(f"SELECT * FROM (SELECT {_typed_nulls()}) WHERE false")
    return "CREATE OR REPLACE TEMP VIEW events AS " + " UNION ALL ".join(selects)


def _typed_nulls() -> str:
    return ", ".join(
        f"NULL::{'TIMESTAMP' if name == 'ts' else kind} AS {name}"
        for name, kind in EVENT_COLUMNS.items()
    )
