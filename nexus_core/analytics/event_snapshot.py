"""A consistent view of the event log at one refresh: immutable pieces plus the hot live rows.

Every row has the columns of ``EVENT_COLUMNS`` (the union of all events' fields, all nullable);
``ts`` is a naive ``TIMESTAMP`` in UTC. A *piece* is an immutable slice of events with a known
``[min_ts, max_ts]``: a rotated file compacted to Parquet, or a frozen segment of the live file
held in memory. The *hot* table holds the newest live rows and still grows (with several hosts'
logs, the union of each live file's hot table).

SQL run through a snapshot reads a relation named ``events`` (a common table expression put in
front of it, cheaper than a view) holding only the pieces that overlap the window plus the hot
rows, and binds ``$start`` / ``$end`` (naive UTC; aware datetimes are converted) for its
``start ≤ ts < end`` filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl

from nexus_core.analytics.windows import to_utc_naive
from nexus_core.errors import ValidationError
from nexus_core.ops.events import SYNTHETIC_CHANNELS, TRAFFIC_KINDS

# Raw JSON field -> DuckDB type; ``ts`` is read as text and parsed by ``TS_EXPRESSION``.
EVENT_COLUMNS: Final[dict[str, str]] = {
    "ts": "VARCHAR",
    "event": "VARCHAR",
    "chat_session_id": "VARCHAR",
    "user_id": "BIGINT",
    "job_id": "VARCHAR",
    "request_id": "VARCHAR",
    "run_id": "VARCHAR",  # the prompt run (comparison, test set) a job belongs to
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
    "channel": "VARCHAR",  # job_success: chat, compare, test_set, eval, cli
    "input_tokens": "BIGINT",
    "cached_input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "reasoning_tokens": "BIGINT",
    "cost_usd": "DOUBLE",
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
TABLE_SCHEMA: Final = ", ".join(
    f"{name} {'TIMESTAMP' if name == 'ts' else kind}" for name, kind in EVENT_COLUMNS.items()
)
EVENTS_FRAME_SQL: Final = "SELECT * FROM events WHERE ts >= $start AND ts < $end ORDER BY ts"

# Traffic (``ops.events.is_synthetic`` in SQL): events of jobs no user waits for are
# *synthetic*; everything else, older logs too, is *user* traffic.
SYNTHETIC_SQL: Final = (
    "(run_id IS NOT NULL OR coalesce(channel IN ("
    + ", ".join(f"'{c}'" for c in SYNTHETIC_CHANNELS)
    + "), false))"
)
TRAFFIC_FILTERS: Final[dict[str, str | None]] = {
    "user": f"NOT {SYNTHETIC_SQL}",
    "synthetic": SYNTHETIC_SQL,
    "all": None,
}


def traffic_filter(traffic: str) -> str | None:
    """The SQL condition keeping ``traffic`` (None: keep every event); ValidationError else."""
    if traffic not in TRAFFIC_FILTERS:
        raise ValidationError(f"Traffic is one of {', '.join(TRAFFIC_KINDS)}, not {traffic!r}.")
    return TRAFFIC_FILTERS[traffic]


WITH_PATTERN: Final = re.compile(r"^\s*WITH\s+(?!RECURSIVE\b)", re.IGNORECASE)

CursorFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
# (piece keys, SQL or kind, parameters) -> what is kept for the piece: the file holding its
# per-minute totals (``rollups``), or its stored tally (``tallies``).
RollupCache = dict[tuple[tuple[str, ...], str, tuple[tuple[str, Any], ...]], Any]


@dataclass(frozen=True)
class Piece:
    """An immutable slice of events: a compacted Parquet file or a frozen live segment."""

    key: str
    source: str  # a Parquet file's path, or a table's name
    rows: int
    min_ts: datetime
    max_ts: datetime
    parquet: bool

    @property
    def from_item(self) -> str:
        """The piece as an SQL FROM item."""
        return f"read_parquet({quote(self.source)})" if self.parquet else self.source

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether any of the piece's events can fall in ``start ≤ ts < end``."""
        return self.min_ts < end and self.max_ts >= start


@dataclass(frozen=True)
class EventSnapshot:
    """The events as of one refresh; queries on it are thread-safe and never re-read old logs.

    Meant for immediate use: tables a later refresh retires are dropped a minute after.
    """

    pieces: tuple[Piece, ...]
    hot_table: str  # the hot rows as a FROM item: a table, or a union of several hosts' tables
    hot_rows: int
    skipped_lines: int  # lines of the current log files that were not events
    vanished_files: int  # rotated files that disappeared while being read
    cursor: CursorFactory = field(repr=False)
    rollups: RollupCache = field(repr=False, default_factory=dict)
    traffic: str = "all"  # which events queries see: user, synthetic or all (see TRAFFIC_KINDS)

    def of_traffic(self, traffic: str) -> EventSnapshot:
        """The same snapshot, its queries seeing only ``traffic`` (the rollup cache is shared:
        its keys name the filter)."""
        traffic_filter(traffic)
        return replace(self, traffic=traffic)

    @property
    def row_filter(self) -> str | None:
        """The SQL condition every query's events pass (None: every event)."""
        return TRAFFIC_FILTERS[self.traffic]

    def relation(self, pieces: list[Piece]) -> str:
        """The events of ``pieces`` and the hot rows that pass ``row_filter``."""
        return filtered(events_relation(pieces, self.hot_table), self.row_filter)

    @property
    def rows(self) -> int:
        """How many events the snapshot holds."""
        return sum(p.rows for p in self.pieces) + self.hot_rows

    def overlapping(self, start: datetime, end: datetime) -> list[Piece]:
        """The pieces that may hold events with ``start ≤ ts < end``."""
        return [p for p in self.pieces if p.overlaps(start, end)]

    def query(
        self,
        sql: str,
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None = None,
    ) -> pl.DataFrame:
        """Run ``sql`` (which must use ``$start`` and ``$end``) over the window's ``events``."""
        start, end = to_utc_naive(start), to_utc_naive(end)
        relation = self.relation(self.overlapping(start, end))
        bound = {"start": start, "end": end, **(params or {})}
        with self.cursor() as cur:
            return cur.sql(with_events(sql, relation), params=bound).pl()

    def records(
        self,
        sql: str,
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Like ``query`` but plain dicts, skipping the frame (cheaper for a few rows)."""
        start, end = to_utc_naive(start), to_utc_naive(end)
        relation = self.relation(self.overlapping(start, end))
        bound = {"start": start, "end": end, **(params or {})}
        with self.cursor() as cur:
            result = cur.execute(with_events(sql, relation), bound)
            names = [column[0] for column in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def arrays(
        self,
        sql: str,
        start: datetime,
        end: datetime,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Like ``records`` but each column as a NumPy array (a NULL double as NaN): a filter and
        projection stream out of DuckDB, so millions of values cost none of its memory."""
        start, end = to_utc_naive(start), to_utc_naive(end)
        relation = self.relation(self.overlapping(start, end))
        bound = {"start": start, "end": end, **(params or {})}
        with self.cursor() as cur:
            columns = cur.execute(with_events(sql, relation), bound).fetchnumpy()
        return {name: unmasked(column) for name, column in columns.items()}

    def events_frame(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Every event with ``start ≤ ts < end``, oldest first, as a Polars frame."""
        return self.query(EVENTS_FRAME_SQL, start, end)


def quote(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def events_relation(pieces: list[Piece], hot_table: str | None) -> str:
    """A SELECT of every event in the given pieces (one Parquet scan for all files) and table."""
    files = [quote(p.source) for p in pieces if p.parquet]
    selects = [f"SELECT * FROM read_parquet([{', '.join(files)}])"] if files else []
    selects += [f"SELECT * FROM {p.source}" for p in pieces if not p.parquet]
    if hot_table is not None:
        selects.append(f"SELECT * FROM {hot_table}")
    if not selects:  # an empty relation with the right columns
        selects.append(f"SELECT * FROM (SELECT {_typed_nulls()}) WHERE false")
    return " UNION ALL ".join(selects)


def filtered(relation: str, condition: str | None) -> str:
    """``relation`` keeping the rows that meet ``condition`` (all of them when None)."""
    return relation if condition is None else f"SELECT * FROM ({relation}) WHERE {condition}"


def with_events(sql: str, relation: str) -> str:
    """``sql`` with a leading ``events`` common table expression over ``relation``."""
    cte = f"events AS NOT MATERIALIZED ({relation})"  # a scan, even when read twice
    if WITH_PATTERN.match(sql):
        return WITH_PATTERN.sub(lambda _: f"WITH {cte}, ", sql, count=1)
    return f"WITH {cte} {sql}"


def unmasked(column: Any) -> np.ndarray:
    """A fetched column as a plain array: NULL doubles become NaN (other NULLs are not used)."""
    if isinstance(column, np.ma.MaskedArray):
        if column.dtype.kind == "f":
            return column.filled(np.nan)
        return np.ma.getdata(column)
    return np.asarray(column)


def _typed_nulls() -> str:
    return ", ".join(
        f"NULL::{'TIMESTAMP' if name == 'ts' else kind} AS {name}"
        for name, kind in EVENT_COLUMNS.items()
    )
