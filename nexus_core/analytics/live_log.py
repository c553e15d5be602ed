"""The live event log file, tailed into memory: only new complete lines are parsed.

Each refresh reads the bytes appended since the last one, up to the last newline, copies exactly
those into a scratch file (DuckDB reading the live file itself would also see lines appended
meanwhile) and appends their events to a *hot* DuckDB table. When the hot table reaches
``SEGMENT_ROWS`` it is frozen into immutable segments of that size, sorted by ``ts``, which
window queries can skip by their ``[min_ts, max_ts]`` and whose per-minute totals are cached.
A new inode or a shrunk file (rotation, truncation) starts afresh. An unterminated last line is
counted as skipped until its newline arrives.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from nexus_core.analytics.event_snapshot import (
    READ_JSON_SQL,
    TABLE_SCHEMA,
    CursorFactory,
    Piece,
)

SEGMENT_ROWS: Final = 16_384
SCAN_BLOCK_BYTES: Final = 65_536
COPY_BLOCK_BYTES: Final = 1 << 20
LOAD_CHUNK_BYTES: Final = 8 << 20
RETIRED_GRACE_SECONDS: Final = 60.0  # snapshots are used at once; their tables live this long

STAGE_SQL: Final = f"CREATE OR REPLACE TEMP TABLE stage AS {READ_JSON_SQL}"
STAGE_STATS_SQL: Final = """
SELECT count(*) FILTER (WHERE ts IS NULL OR event IS NULL) AS skipped,
       count(*) FILTER (WHERE ts IS NOT NULL AND event IS NOT NULL) AS events,
       min(ts) FILTER (WHERE event IS NOT NULL) AS min_ts,
       max(ts) FILTER (WHERE event IS NOT NULL) AS max_ts
FROM stage
"""
STAGE_EVENTS_SQL: Final = "SELECT * FROM stage WHERE ts IS NOT NULL AND event IS NOT NULL"
FREEZE_SQL: Final = """
CREATE OR REPLACE TEMP TABLE freezing AS
SELECT *, (row_number() OVER (ORDER BY ts) - 1) // $segment_rows AS segment FROM {hot}
"""
SEGMENT_SQL: Final = """
CREATE TABLE {segment} AS
SELECT * EXCLUDE (segment) FROM freezing WHERE segment = $segment ORDER BY ts
"""
SEGMENT_STATS_SQL: Final = "SELECT count(*), min(ts), max(ts) FROM {segment}"


@dataclass
class LiveLog:
    """What has been read of the live file: frozen segments, the hot table and counters."""

    path: Path
    scratch_dir: Path
    cursor: CursorFactory
    segment_rows: int = SEGMENT_ROWS
    identity: tuple[int, int] | None = None
    offset: int = 0
    skipped: int = 0
    pending: bool = False
    segments: list[Piece] = field(default_factory=list)
    hot: str = ""
    hot_rows: int = 0
    _tables: int = 0
    _retired: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hot = self._new_table("live")

    @property
    def rows(self) -> int:
        """Events read from the live file so far."""
        return sum(s.rows for s in self.segments) + self.hot_rows

    @property
    def skipped_lines(self) -> int:
        """Lines read that were not events, plus an unterminated last line."""
        return self.skipped + self.pending

    def covers(self, stat: os.stat_result) -> bool:
        """Whether every byte of the file with this ``stat`` has been read (it was our file)."""
        return self.identity == (stat.st_dev, stat.st_ino) and self.offset == stat.st_size

    def relations(self) -> list[str]:
        """FROM items holding everything read so far (segments, then the hot table)."""
        return [s.source for s in self.segments] + [self.hot]

    def read(self) -> tuple[int, int] | None:
        """Take in the new complete lines; the identity of the file read, or None if absent."""
        self._drop_retired()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self.identity is not None or self.rows or self.skipped:
                self._start_over(None)
            self.pending = False
            return None
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if identity != self.identity or stat.st_size < self.offset:
                self._start_over(identity)
            end = _last_line_end(fd, self.offset, stat.st_size)
            while self.offset < end:  # in chunks, so a big first read stays small in memory
                stop = end
                if end - self.offset > LOAD_CHUNK_BYTES:
                    stop = _last_line_end(fd, self.offset, self.offset + LOAD_CHUNK_BYTES)
                    stop = stop if stop > self.offset else end  # one huge line
                self._load(fd, self.offset, stop)
                self.offset = stop
            self.pending = stat.st_size > self.offset
            return identity
        finally:
            os.close(fd)

    def _load(self, fd: int, start: int, end: int) -> None:
        chunk = self.scratch_dir / f".tail-{os.getpid()}-{id(self):x}.jsonl"
        with chunk.open("wb") as out:
            position = start
            while position < end:
                data = os.pread(fd, min(COPY_BLOCK_BYTES, end - position), position)
                if not data:
                    break
                out.write(data)
                position += len(data)
        try:
            with self.cursor() as cur:
                cur.execute(STAGE_SQL, {"path": str(chunk)})
                skipped, rows, _, _ = cur.execute(STAGE_STATS_SQL).fetchall()[0]
                cur.execute(f"INSERT INTO {self.hot} {STAGE_EVENTS_SQL} ORDER BY ts")
                cur.execute("DROP TABLE stage")
        finally:
            chunk.unlink(missing_ok=True)
        self.skipped += skipped
        self.hot_rows += rows
        if self.hot_rows >= self.segment_rows:
            self._freeze()

    def _freeze(self) -> None:
        """Turn the hot table into sorted segments of ``segment_rows`` and start a new one."""
        with self.cursor() as cur:
            cur.execute(FREEZE_SQL.format(hot=self.hot), {"segment_rows": self.segment_rows})
            count = -(-self.hot_rows // self.segment_rows)
            for number in range(count):
                name = self._new_table("segment", create=False)
                cur.execute(SEGMENT_SQL.format(segment=name), {"segment": number})
                rows, min_ts, max_ts = cur.execute(
                    SEGMENT_STATS_SQL.format(segment=name)
                ).fetchall()[0]
                self.segments.append(Piece(name, name, rows, min_ts, max_ts, parquet=False))
            cur.execute("DROP TABLE freezing")
        self._retire([self.hot])
        self.hot, self.hot_rows = self._new_table("live"), 0

    def _start_over(self, identity: tuple[int, int] | None) -> None:
        self._retire([s.source for s in self.segments] + [self.hot])
        self.segments = []
        self.hot, self.hot_rows = self._new_table("live"), 0
        self.identity, self.offset, self.skipped, self.pending = identity, 0, 0, False

    def _new_table(self, prefix: str, *, create: bool = True) -> str:
        self._tables += 1
        name = f"{prefix}_{self._tables}"
        if create:
            with self.cursor() as cur:
                cur.execute(f"CREATE TABLE {name} ({TABLE_SCHEMA})")
        return name

    def _retire(self, tables: list[str]) -> None:
        now = time.monotonic()
        self._retired += [(table, now) for table in tables]

    def _drop_retired(self) -> None:
        now = time.monotonic()
        due = [t for t, at in self._retired if now - at >= RETIRED_GRACE_SECONDS]
        if not due:
            return
        with self.cursor() as cur:
            for table in due:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
        self._retired = [(t, at) for t, at in self._retired if t not in due]


def _last_line_end(fd: int, start: int, end: int) -> int:
    """The offset just after the last newline in ``[start, end)``, or ``start`` if none."""
    position = end
    while position > start:
        block_start = max(start, position - SCAN_BLOCK_BYTES)
        block = os.pread(fd, position - block_start, block_start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return block_start + newline + 1
        position = block_start
    return start
