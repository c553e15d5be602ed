"""The event log as a queryable store that stays fast as history grows.

The old design re-parsed every log file on every page view. Here a closed (rotated) file is read
once by DuckDB and compacted into ``<cache_dir>/events-<fingerprint>.parquet``; a manifest keeps
each part's row count, skipped-line count and ``[min_ts, max_ts]``. Rotation renames ``.1`` →
``.2`` …, so a part is keyed by a content fingerprint (size, mtime and the first 4 KiB), never by
its name: renames cost nothing. The live file is tailed: only bytes appended since the last
refresh, up to the last complete line, are parsed and appended to an in-memory DuckDB table; a
new inode (rotation) starts a fresh table. A refresh therefore costs the new bytes plus a few
``stat`` calls, whatever the size of the history.

Lines that are not events (garbage, a torn line, JSON that is not an object, no parseable
``ts``/``event``) are counted, never fatal; ``read_json(ignore_errors=true)`` returns them as
all-NULL rows, which are counted and dropped. An unterminated last line of the live file is
counted as skipped until its newline arrives. A file that vanishes or is swapped by a rotation
while being read makes the refresh start again (up to ``REFRESH_ATTEMPTS``); on the last attempt
it is skipped and counted in ``EventSnapshot.vanished_files``.

Threads: ``refresh`` holds a lock; queries run on the returned ``EventSnapshot``, each on its own
DuckDB cursor, and need no lock. A snapshot is meant for immediate use: its live table is dropped
two rotations later. Several processes may share ``cache_dir``: files are written under a
temporary name and renamed, and the manifest is merged under ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import duckdb
import polars as pl

from nexus_core.analytics.event_snapshot import (
    LIVE_TABLE_SCHEMA,
    READ_JSON_SQL,
    CompactedPart,
    EventSnapshot,
    TotalsCache,
)
from nexus_core.events import log_files

if TYPE_CHECKING:
    from nexus_core.settings import Settings

CACHE_DIR_NAME: Final = "analytics"
MANIFEST_NAME: Final = "manifest.json"
MANIFEST_LOCK_NAME: Final = "manifest.lock"
MANIFEST_VERSION: Final = 1
ROW_GROUP_SIZE: Final = 32_768  # small enough that a window edge reads little of a part
FINGERPRINT_HEAD_BYTES: Final = 4096
REFRESH_ATTEMPTS: Final = 3
SCAN_BLOCK_BYTES: Final = 65_536
COPY_BLOCK_BYTES: Final = 1 << 20
DUCKDB_MEMORY_LIMIT: Final = "256MB"
ORPHAN_GRACE_SECONDS: Final = 300.0  # a part whose file is gone this long is deleted
PROC_FD_DIR: Final = Path("/proc/self/fd")

STAGE_SQL: Final = f"CREATE OR REPLACE TEMP TABLE stage AS {READ_JSON_SQL}"
STAGE_STATS_SQL: Final = """
SELECT count(*) FILTER (WHERE ts IS NULL OR event IS NULL) AS skipped,
       count(*) FILTER (WHERE ts IS NOT NULL AND event IS NOT NULL) AS events,
       min(ts) FILTER (WHERE event IS NOT NULL) AS min_ts,
       max(ts) FILTER (WHERE event IS NOT NULL) AS max_ts
FROM stage
"""
STAGE_EVENTS_SQL: Final = "SELECT * FROM stage WHERE ts IS NOT NULL AND event IS NOT NULL"

ListFiles = Callable[[Path], list[Path]]


class _ListingChanged(Exception):
    """The files moved under a refresh (rotation); start it again."""


@dataclass
class _LiveState:
    identity: tuple[int, int] | None
    table: str
    offset: int = 0
    rows: int = 0
    skipped: int = 0
    pending: bool = False  # an unterminated last line


class EventStore:
    """The rotated and live event log files, compacted and tailed for fast windowed queries."""

    def __init__(
        self,
        log_path: Path,
        cache_dir: Path,
        *,
        list_files: ListFiles = log_files,
        memory_limit: str = DUCKDB_MEMORY_LIMIT,
        orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS,
    ) -> None:
        self.log_path = Path(log_path)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.compactions = 0
        self._list_files = list_files
        self._orphan_grace = orphan_grace_seconds
        self._lock = threading.Lock()
        self._con_lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(
            config={
                "memory_limit": memory_limit,
                "preserve_insertion_order": False,
                "temp_directory": str(self.cache_dir / "duckdb_tmp"),
            }
        )
        self._generation = 0
        self._live = self._new_live(None)
        self._parts: dict[str, CompactedPart] = self._load_manifest()
        self._removed: set[str] = set()
        self._missing_since: dict[str, float] = {}
        self._totals: TotalsCache = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStore:
        """The store over ``settings.event_log_path`` with its cache under the data dir."""
        return cls(settings.event_log_path, settings.data_dir / CACHE_DIR_NAME)

    def refresh(self) -> EventSnapshot:
        """Compact new rotated files, read what the live file gained, and return a snapshot."""
        with self._lock:
            for attempt in range(1, REFRESH_ATTEMPTS + 1):
                try:
                    return self._refresh_once(tolerant=attempt == REFRESH_ATTEMPTS)
                except _ListingChanged:
                    continue
        raise AssertionError("unreachable: the last attempt tolerates moving files")

    def events_frame(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Every event with ``start ≤ ts < end`` (naive UTC bounds), oldest first."""
        return self.refresh().events_frame(start, end)

    def query(
        self, sql: str, start: datetime, end: datetime, params: dict[str, Any] | None = None
    ) -> pl.DataFrame:
        """Refresh, then run ``sql`` over the window's ``events`` view (see ``EventSnapshot``)."""
        return self.refresh().query(sql, start, end, params)

    def close(self) -> None:
        """Close the DuckDB connection; the Parquet cache stays for the next store."""
        with self._con_lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._con_lock:
            if self._con is None:
                raise RuntimeError("the event store is closed")
            cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    # --- one refresh --------------------------------------------------------------------------

    def _refresh_once(self, *, tolerant: bool) -> EventSnapshot:
        live_before = _identity(self.log_path)
        parts: list[CompactedPart] = []
        vanished = 0
        for path in self._list_files(self.log_path):
            if path.name == self.log_path.name:
                continue
            try:
                parts.append(self._part_for(path))
            except (FileNotFoundError, _ListingChanged):
                if not tolerant:
                    raise _ListingChanged from None
                vanished += 1
        read = self._read_live()
        if live_before is not None and read != live_before and not tolerant:
            raise _ListingChanged  # rotated after the listing: the old live file is unlisted
        self._forget_orphans({p.fingerprint for p in parts})
        live = self._live
        return EventSnapshot(
            parts=tuple(parts),
            live_table=live.table,
            live_rows=live.rows,
            live_skipped=live.skipped + live.pending,
            vanished_files=vanished,
            cursor=self._cursor,
            totals_cache=self._totals,
        )

    def _part_for(self, path: Path) -> CompactedPart:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.fstat(fd)
            head = os.pread(fd, FINGERPRINT_HEAD_BYTES, 0)
            digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode() + head)
            fingerprint = digest.hexdigest()[:24]
            known = self._parts.get(fingerprint)
            if known is not None:
                return known
            return self._compact(fd, path, fingerprint, stat)
        finally:
            os.close(fd)

    def _compact(
        self, fd: int, path: Path, fingerprint: str, stat: os.stat_result
    ) -> CompactedPart:
        """Read one closed file once and write its events to Parquet (sorted by ``ts``)."""
        # /proc/self/fd pins the inode we fingerprinted; elsewhere, check the name still holds it.
        pinned = PROC_FD_DIR.is_dir()
        source = str(PROC_FD_DIR / str(fd)) if pinned else str(path)
        target = self.cache_dir / f"events-{fingerprint}.parquet"
        with self._cursor() as cur:
            try:
                cur.execute(STAGE_SQL, {"path": source})
            except duckdb.IOException as exc:
                raise FileNotFoundError(str(path)) from exc
            if not pinned and _identity(path, with_size=True) != _stat_key(stat):
                raise _ListingChanged
            skipped, rows, min_ts, max_ts = cur.sql(STAGE_STATS_SQL).fetchall()[0]
            if rows:
                temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                cur.execute(
                    f"COPY ({STAGE_EVENTS_SQL} ORDER BY ts) TO {_quote(str(temporary))} "
                    f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
                )
                os.replace(temporary, target)
            cur.execute("DROP TABLE stage")
        self.compactions += 1
        part = CompactedPart(
            fingerprint=fingerprint,
            parquet=target if rows else None,
            rows=rows,
            skipped=skipped,
            min_ts=min_ts,
            max_ts=max_ts,
            source=path.name,
            size=stat.st_size,
        )
        self._parts[fingerprint] = part
        self._save_manifest()
        return part

    # --- the live file ------------------------------------------------------------------------

    def _read_live(self) -> tuple[int, int] | None:
        """Append the live file's new complete lines to the live table; its identity or None."""
        try:
            fd = os.open(self.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self._live.identity is not None or self._live.rows:
                self._live = self._new_live(None)
            self._live.pending = False
            return None
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if identity != self._live.identity or stat.st_size < self._live.offset:
                self._live = self._new_live(identity)
            live = self._live
            end = _last_line_end(fd, live.offset, stat.st_size)
            if end > live.offset:
                self._load_lines(fd, live.offset, end)
                live.offset = end
            live.pending = stat.st_size > live.offset
            return identity
        finally:
            os.close(fd)

    def _load_lines(self, fd: int, start: int, end: int) -> None:
        # Copy exactly [start, end): DuckDB reading the file itself would see later appends.
        chunk = self.cache_dir / f".tail-{os.getpid()}.jsonl"
        with chunk.open("wb") as out:
            position = start
            while position < end:
                data = os.pread(fd, min(COPY_BLOCK_BYTES, end - position), position)
                if not data:
                    break
                out.write(data)
                position += len(data)
        try:
            with self._cursor() as cur:
                cur.execute(STAGE_SQL, {"path": str(chunk)})
                skipped, rows, _, _ = cur.sql(STAGE_STATS_SQL).fetchall()[0]
                cur.execute(f"INSERT INTO {self._live.table} {STAGE_EVENTS_SQL}")
                cur.execute("DROP TABLE stage")
        finally:
            chunk.unlink(missing_ok=True)
        self._live.rows += rows
        self._live.skipped += skipped

    def _new_live(self, identity: tuple[int, int] | None) -> _LiveState:
        self._generation += 1
        table = f"live_{self._generation}"
        with self._cursor() as cur:
            cur.execute(f"CREATE TABLE {table} ({LIVE_TABLE_SCHEMA})")
            # Keep the previous table for snapshots still in use; drop the one before it.
            if self._generation > 2:
                cur.execute(f"DROP TABLE IF EXISTS live_{self._generation - 2}")
        return _LiveState(identity=identity, table=table)

    # --- the manifest -------------------------------------------------------------------------

    def _forget_orphans(self, seen: set[str]) -> None:
        now = time.monotonic()
        for fingerprint in seen:
            self._missing_since.pop(fingerprint, None)
        gone = [
            fp
            for fp in self._parts
            if fp not in seen
            and now - self._missing_since.setdefault(fp, now) >= self._orphan_grace
        ]
        for fingerprint in gone:
            part = self._parts.pop(fingerprint)
            self._removed.add(fingerprint)
            self._missing_since.pop(fingerprint, None)
            if part.parquet is not None:
                part.parquet.unlink(missing_ok=True)
            for key in [k for k in self._totals if k[0] == fingerprint]:
                del self._totals[key]
        if gone:
            self._save_manifest()

    def _load_manifest(self) -> dict[str, CompactedPart]:
        try:
            data = json.loads((self.cache_dir / MANIFEST_NAME).read_text())
            if data.get("version") != MANIFEST_VERSION:
                return {}
            parts = (_part_from_json(self.cache_dir, item) for item in data["parts"])
            return {p.fingerprint: p for p in parts if p.parquet is None or p.parquet.is_file()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # no or unreadable manifest: recompacting is always safe

    def _save_manifest(self) -> None:
        lock_path = self.cache_dir / MANIFEST_LOCK_NAME
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            on_disk = self._load_manifest()  # another process may have added parts
            merged = {
                fp: part
                for fp, part in on_disk.items()
                if fp not in self._removed and fp not in self._parts
            }
            merged.update(self._parts)
            payload = {
                "version": MANIFEST_VERSION,
                "parts": [_part_to_json(p) for p in merged.values()],
            }
            temporary = self.cache_dir / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(payload, indent=1))
            os.replace(temporary, self.cache_dir / MANIFEST_NAME)


def _identity(path: Path, *, with_size: bool = False) -> Any:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return _stat_key(stat) if with_size else (stat.st_dev, stat.st_ino)


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


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


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _part_to_json(part: CompactedPart) -> dict[str, Any]:
    return {
        "fingerprint": part.fingerprint,
        "parquet": part.parquet.name if part.parquet else None,
        "rows": part.rows,
        "skipped": part.skipped,
        "min_ts": part.min_ts.isoformat() if part.min_ts else None,
        "max_ts": part.max_ts.isoformat() if part.max_ts else None,
        "source": part.source,
        "size": part.size,
    }


def _part_from_json(cache_dir: Path, item: dict[str, Any]) -> CompactedPart:
    return CompactedPart(
        fingerprint=item["fingerprint"],
        parquet=cache_dir / item["parquet"] if item["parquet"] else None,
        rows=int(item["rows"]),
        skipped=int(item["skipped"]),
        min_ts=datetime.fromisoformat(item["min_ts"]) if item["min_ts"] else None,
        max_ts=datetime.fromisoformat(item["max_ts"]) if item["max_ts"] else None,
        source=str(item["source"]),
        size=int(item["size"]),
    )


def snapshot_of(source: EventStore | EventSnapshot) -> EventSnapshot:
    """A snapshot to query: refresh a store, or take a snapshot as it is."""
    return source.refresh() if isinstance(source, EventStore) else source
