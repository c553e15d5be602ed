"""The live event log file, tailed into memory: only new complete lines are parsed.

Each refresh reads the bytes appended since the last one, up to the last newline, copies exactly
those into a scratch file (DuckDB reading the live file itself would also see lines appended
meanwhile) and appends their events to a *hot* DuckDB table. When the hot table reaches
``SEGMENT_ROWS`` it is frozen: written, sorted by ``ts``, to a Parquet *stretch* in the cache
(``live_checkpoints``) that window queries can skip by its ``[min_ts, max_ts]`` and whose
per-minute totals are cached. Stretches outlive the process: the next one to open the store — a new
``nexus`` command, a restarted app — adopts them and parses only the bytes after the last.
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
    quote,
)
from nexus_core.analytics.live_checkpoints import Identity, LiveCheckpoints, Stretch

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
FREEZE_SQL: Final = (
    "COPY (SELECT * FROM {hot} ORDER BY ts) TO {target} (FORMAT parquet, ROW_GROUP_SIZE {rows})"
)
HOT_STATS_SQL: Final = "SELECT count(*), min(ts), max(ts) FROM {hot}"


@dataclass
class LiveLog:
    """What has been read of the live file: frozen stretches, the hot table and counters."""

    path: Path
    scratch_dir: Path
    cursor: CursorFactory
    checkpoints: LiveCheckpoints
    segment_rows: int = SEGMENT_ROWS
    table_prefix: str = "live"  # unique per live file among those sharing the DuckDB connection
    identity: Identity | None = None
    offset: int = 0
    skipped: int = 0
    pending: bool = False
    segments: list[Piece] = field(default_factory=list)
    hot: str = ""
    hot_rows: int = 0
    hot_start: int = 0  # the byte the hot table's first line starts at
    hot_skipped: int = 0  # lines since ``hot_start`` that were not events
    adopted: int = 0  # stretches taken over from earlier processes
    parsed_bytes: int = 0  # bytes of live files this object parsed itself
    _tables: int = 0
    _retired: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hot = self._new_table(self.table_prefix)

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
        """FROM items holding everything read so far (stretches, then the hot table)."""
        return [s.from_item for s in self.segments] + [self.hot]

    def read(self) -> Identity | None:
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
                self._adopt(fd, identity, stat.st_size)
            end = _last_line_end(fd, self.offset, stat.st_size)
            while self.offset < end:  # in chunks, so a big first read stays small in memory
                stop = end
                if end - self.offset > LOAD_CHUNK_BYTES:
                    stop = _last_line_end(fd, self.offset, self.offset + LOAD_CHUNK_BYTES)
                    stop = stop if stop > self.offset else end  # one huge line
                self._load(fd, self.offset, stop)
                self.offset = stop
                if self.hot_rows >= self.segment_rows:
                    self._freeze(fd)
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
        self.parsed_bytes += end - start
        self.skipped += skipped
        self.hot_skipped += skipped
        self.hot_rows += rows

    def _freeze(self, fd: int) -> None:
        """Write the hot table to a Parquet stretch, record it, and start a new hot table."""
        assert self.identity is not None  # a file was read
        target = self.checkpoints.target(self.identity, self.hot_start, self.offset)
        temporary = target.with_name(f".{target.name}.{os.getpid()}-{id(self):x}.tmp")
        with self.cursor() as cur:
            rows, min_ts, max_ts = cur.execute(HOT_STATS_SQL.format(hot=self.hot)).fetchall()[0]
            cur.execute(
                FREEZE_SQL.format(
                    hot=self.hot, target=quote(str(temporary)), rows=self.segment_rows
                )
            )
        os.replace(temporary, target)  # another process may have written the same stretch
        stretch = Stretch(
            dev=self.identity[0],
            ino=self.identity[1],
            start=self.hot_start,
            end=self.offset,
            head=self.checkpoints.head(fd, self.offset),
            parquet=target.name,
            rows=rows,
            skipped=self.hot_skipped,
            min_ts=min_ts.isoformat() if min_ts else None,
            max_ts=max_ts.isoformat() if max_ts else None,
            log=self.checkpoints.log,
        )
        self.checkpoints.record(stretch)
        self._add_stretch(stretch)
        self._retire([self.hot])
        self.hot, self.hot_rows = self._new_table(self.table_prefix), 0
        self.hot_start, self.hot_skipped = self.offset, 0

    def _adopt(self, fd: int, identity: Identity, size: int) -> None:
        """Take over the stretches earlier processes parsed of this file."""
        for stretch in self.checkpoints.chain(fd, identity, size):
            self._add_stretch(stretch)
            self.skipped += stretch.skipped
            self.offset = self.hot_start = stretch.end
            self.adopted += 1

    def _add_stretch(self, stretch: Stretch) -> None:
        times = stretch.times()
        if times is not None:
            path = str(self.checkpoints.cache_dir / stretch.parquet)
            self.segments.append(Piece(stretch.key, path, stretch.rows, *times, parquet=True))

    def _start_over(self, identity: Identity | None) -> None:
        self._retire([self.hot])
        self.segments = []
        self.hot, self.hot_rows = self._new_table(self.table_prefix), 0
        self.identity, self.offset, self.skipped, self.pending = identity, 0, 0, False
        self.hot_start, self.hot_skipped = 0, 0
        self.checkpoints.retire_others(identity)

    def _new_table(self, prefix: str) -> str:
        self._tables += 1
        name = f"{prefix}_{self._tables}"
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
