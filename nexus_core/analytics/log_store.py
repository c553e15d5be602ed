"""The event log as a queryable store that stays fast as history grows.

The old design re-parsed every log file on every page view. Here a closed (rotated) file is read
once by DuckDB and compacted into ``<cache_dir>/events-<fingerprint>.parquet``; a manifest keeps
each part's row count, skipped-line count and ``[min_ts, max_ts]``. Rotation renames ``.1`` →
``.2`` …, so a part is keyed by a content fingerprint (size, mtime and the first 4 KiB), never by
its name: renames cost nothing. A manifest of another format version (parts with other
columns) is ignored, so its files are compacted once more. The live file is tailed
(``live_log``): only bytes appended since the last refresh are parsed, into an in-memory DuckDB
table frozen now and then into Parquet *stretches* that later processes adopt instead of parsing
the file again (``live_checkpoints``). When the file we have read to its end is rotated, its
Parquet is written from those instead of parsing it again. A refresh therefore costs the new bytes
plus a few ``stat`` calls, whatever the size of the history, and so does a new process's first
refresh; the SLO's long windows read cached per-minute totals (``rollups``).

Lines that are not events (garbage, a torn line, JSON that is not an object, no parseable
``ts``/``event``) are counted, never fatal; ``read_json(ignore_errors=true)`` returns them as
all-NULL rows, which are counted and dropped. An unterminated last line of the live file is
counted as skipped until its newline arrives. A file that vanishes or is swapped by a rotation
while being read makes the refresh start again (up to ``REFRESH_ATTEMPTS``); on the last attempt
it is skipped and counted in ``EventSnapshot.vanished_files``.

Retention (``expire``) deletes whole rotated files whose newest event is older than a cutoff, never
the live file. It holds the writers' lock while it deletes (no rotation renames a file under it),
deletes only the very file it read (same inode, size and mtime), and lets the file's Parquet copy
and live stretches go the way of any vanished file's: ``orphan_grace_seconds`` later, in whichever
process sharing the cache refreshes next, so a snapshot another process is still querying keeps
its files.

Several hosts (``NEXUS_LOG_HOST``): every log under ``logs/`` — the top-level one and one per host
directory (``ops.events.log_paths``) — is read the same way and the snapshot holds them all; an
event is in exactly one file, so it is counted once. Each host's live file has a ``LiveLog`` of its
own whose stretches are recorded under its log's name; the fingerprint of a rotated file in a host
directory also covers the directory's name, so two hosts' files that begin alike (same first
4 KiB, size and mtime) stay two parts. Retention expires each host's rotated files under that
host's writers' lock; a live file is never cut, but one last written before the cutoff (a host
that stopped writing) is rotated first.

Threads: ``refresh`` holds a lock; queries run on the returned ``EventSnapshot``, each on its own
DuckDB cursor, and need no lock. Several processes may share ``cache_dir``: files are written
under a temporary name and renamed, and the manifest is merged under ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import duckdb
import polars as pl

from nexus_core.analytics.event_snapshot import (
    READ_JSON_SQL,
    TS_EXPRESSION,
    EventSnapshot,
    Piece,
    RollupCache,
    quote,
)
from nexus_core.analytics.live_checkpoints import LiveCheckpoints
from nexus_core.analytics.live_log import SEGMENT_ROWS, LiveLog
from nexus_core.analytics.windows import to_utc_naive
from nexus_core.ops.events import log_files, log_paths, rotate_log, writers_lock

if TYPE_CHECKING:
    from nexus_core.settings import Settings

CACHE_DIR_NAME: Final = "analytics"
MANIFEST_NAME: Final = "manifest.json"
MANIFEST_LOCK_NAME: Final = "manifest.lock"
# Bumped whenever ``EVENT_COLUMNS`` changes: parts written with other columns are compacted again
# (the workbench reads the Parquet files by column name). 2: ``run_id``. 3: cost and usage.
MANIFEST_VERSION: Final = 3
ROW_GROUP_SIZE: Final = 32_768  # small enough that a window edge reads little of a part
FINGERPRINT_HEAD_BYTES: Final = 4096
REFRESH_ATTEMPTS: Final = 3
DUCKDB_MEMORY_LIMIT: Final = "128MB"  # beyond it DuckDB spills to <cache_dir>/duckdb_tmp
ORPHAN_GRACE_SECONDS: Final = 300.0  # a part whose file is gone this long is deleted
PROC_FD_DIR: Final = Path("/proc/self/fd")

EVENT_FILTER: Final = "ts IS NOT NULL AND event IS NOT NULL"
# Streamed straight from JSON to Parquet: no staging table, no sort, little memory.
COPY_SQL: Final = (
    f"COPY ({{select}}) TO {{target}} (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
)
RANGE_SQL: Final = "SELECT count(*), min(ts), max(ts) FROM ({relation})"
# A second, narrow pass counts the lines that were not events.
SKIPPED_SQL: Final = f"""
SELECT count(*) FILTER (WHERE ({TS_EXPRESSION}) IS NULL OR event IS NULL)
FROM read_json($path, format = 'newline_delimited', ignore_errors = true,
               columns = {{ts: 'VARCHAR', event: 'VARCHAR'}})
"""

ListFiles = Callable[[Path], list[Path]]
FindLogs = Callable[[Path], list[Path]]


class _ListingChanged(Exception):
    """The files moved under a refresh (rotation); start it again."""


@dataclass(frozen=True)
class CompactedPart:
    """One closed (rotated) log file, compacted once into Parquet; a manifest entry."""

    fingerprint: str
    parquet: Path | None  # None when the file held no events
    rows: int
    skipped: int
    min_ts: datetime | None
    max_ts: datetime | None
    source: str  # the file's name under logs/ when it was compacted
    size: int

    def piece(self) -> Piece | None:
        """The part as a queryable piece, or None if it holds no events."""
        if self.parquet is None or self.min_ts is None or self.max_ts is None:
            return None
        return Piece(self.fingerprint, str(self.parquet), self.rows, self.min_ts, self.max_ts, True)


@dataclass(frozen=True)
class ExpiredFile:
    """A rotated log file that retention deleted, and what it held."""

    name: str  # its name under logs/ when deleted (``api_events.log.7``, ``host-a/…``)
    events: int
    newest: datetime | None  # its newest event (naive UTC); None when it held none
    size: int
    stretches: int  # live stretches parsed from it while it was the live file


class EventStore:
    """The rotated and live event log files, compacted and tailed for fast windowed queries."""

    def __init__(
        self,
        log_path: Path,
        cache_dir: Path,
        *,
        list_files: ListFiles = log_files,
        find_logs: FindLogs = log_paths,
        memory_limit: str = DUCKDB_MEMORY_LIMIT,
        orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS,
        segment_rows: int = SEGMENT_ROWS,
    ) -> None:
        self.log_path = Path(log_path)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.compactions = 0
        self._list_files = list_files
        self._find_logs = find_logs
        self._segment_rows = segment_rows
        self._orphan_grace = orphan_grace_seconds
        self._lock = threading.Lock()
        self._con_lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(
            config={
                "memory_limit": memory_limit,
                "temp_directory": str(self.cache_dir / "duckdb_tmp"),
            }
        )
        self._lives: dict[Path, LiveLog] = {}  # each log's live file -> its tail
        self._live_for(self.log_path)
        self._parts: dict[str, CompactedPart] = self._load_manifest()
        self._removed: set[str] = set()
        # When each part's file was first seen gone (wall clock, shared through the manifest, so
        # short-lived processes — `nexus retention apply`, other commands — finish the grace too).
        self._missing_since: dict[str, float] = self._load_missing_since()
        self._last_seen: set[str] = set()
        self._rollups: RollupCache = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStore:
        """The store over ``settings.event_log_path`` with its cache under the data dir."""
        return cls(settings.event_log_path, settings.data_dir / CACHE_DIR_NAME)

    @property
    def live_bytes_parsed(self) -> int:
        """Bytes of the live log this store parsed itself (not adopted from another process)."""
        return sum(live.parsed_bytes for live in self._lives.values())

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

    def expire(self, before: datetime) -> list[ExpiredFile]:
        """Delete every rotated file whose newest event is older than ``before`` (one without
        events: last written before it). A live file is never cut, but one last written before
        ``before`` — a host that stopped writing, or a quiet one — is rotated first, so it goes
        too. Their Parquet copies and live stretches go after the orphan grace (see the module
        docstring)."""
        before = to_utc_naive(before)
        with self._lock:
            self._rotate_idle(before)
            old = []
            for path in self._rotated_files():
                try:
                    part, stat = self._closed_part(path)
                except (FileNotFoundError, _ListingChanged):
                    continue  # moved by a rotation meanwhile: the next run sees it
                if _newest(part, stat) < before:
                    old.append((path, part, stat))
            deleted = [(item[1], gone) for item in old if (gone := self._delete(*item))]
            if deleted:
                gone_parts = {part.fingerprint for part, _ in deleted}
                self._forget_orphans(
                    {fp for fp in self._parts if fp not in gone_parts | set(self._missing_since)}
                )
        return [gone for _, gone in deleted]

    def query(
        self, sql: str, start: datetime, end: datetime, params: dict[str, Any] | None = None
    ) -> pl.DataFrame:
        """Refresh, then run ``sql`` over the window's ``events`` (see ``EventSnapshot.query``)."""
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

    def _live_for(self, live_path: Path) -> LiveLog:
        """The tail of one log's live file (each log's stretches recorded under its name)."""
        live = self._lives.get(live_path)
        if live is None:
            name = self._name(live_path)
            checkpoints = LiveCheckpoints(
                self.cache_dir,
                version=MANIFEST_VERSION,
                grace_seconds=self._orphan_grace,
                log=name,
            )
            prefix = "live" if not self._lives else f"live_h{len(self._lives)}"
            live = LiveLog(
                live_path,
                self.cache_dir,
                self._cursor,
                checkpoints,
                self._segment_rows,
                table_prefix=prefix,
            )
            self._lives[live_path] = live
        return live

    def _logs(self) -> list[Path]:
        """Every log's live file: those under ``logs/`` now and those read before (a host
        directory that went away reads as empty)."""
        found = self._find_logs(self.log_path)
        return found + [path for path in self._lives if path not in found]

    def _rotated_files(self) -> list[Path]:
        """The rotated files of every log, log by log, oldest first within each."""
        return [
            path
            for live_path in self._logs()
            for path in self._list_files(live_path)
            if path.name != live_path.name
        ]

    def _refresh_once(self, *, tolerant: bool) -> EventSnapshot:
        parts: list[CompactedPart] = []
        lives: list[LiveLog] = []
        vanished = 0
        for live_path in self._logs():
            live_before = _identity(live_path)
            for path in self._list_files(live_path):
                if path.name == live_path.name:
                    continue
                try:
                    parts.append(self._part_for(path))
                except (FileNotFoundError, _ListingChanged):
                    if not tolerant:
                        raise _ListingChanged from None
                    vanished += 1
            live = self._live_for(live_path)
            read = live.read()
            if live_before is not None and read != live_before and not tolerant:
                raise _ListingChanged  # rotated after the listing: the old live file is unlisted
            lives.append(live)
        self._forget_orphans({p.fingerprint for p in parts})
        pieces = [piece for part in parts if (piece := part.piece()) is not None]
        for live in lives:
            pieces += live.segments
        current = {piece.key for piece in pieces}
        for key in [k for k in list(self._rollups) if not current.issuperset(k[0])]:
            self._rollups.pop(key, None)  # list(): other threads may be adding totals
        return EventSnapshot(
            pieces=tuple(pieces),
            hot_table=_hot_rows_of(lives),
            hot_rows=sum(live.hot_rows for live in lives),
            skipped_lines=sum(p.skipped for p in parts) + sum(live.skipped_lines for live in lives),
            vanished_files=vanished,
            cursor=self._cursor,
            rollups=self._rollups,
        )

    def _part_for(self, path: Path) -> CompactedPart:
        return self._closed_part(path)[0]

    def _closed_part(self, path: Path) -> tuple[CompactedPart, os.stat_result]:
        """The rotated file's part (compacted now if no process did yet) and the file's stat."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.fstat(fd)
            head = os.pread(fd, FINGERPRINT_HEAD_BYTES, 0)
            fingerprint = self._fingerprint(path, stat, head)
            # Another process sharing the cache may have compacted it already.
            known = self._parts.get(fingerprint) or self._load_manifest().get(fingerprint)
            if known is not None:
                self._parts[fingerprint] = known
                return known, stat
            return self._compact(fd, path, fingerprint, stat), stat
        finally:
            os.close(fd)

    def _fingerprint(self, path: Path, stat: os.stat_result, head: bytes) -> str:
        """A rotated file's part key: its size, mtime and first bytes, and for a host's log the
        host directory's name (the top-level log's keys are as they always were)."""
        where = str(Path(self._name(path)).parent)
        scope = b"" if where == "." else where.encode() + b"\0"
        digest = hashlib.sha256(scope + f"{stat.st_size}:{stat.st_mtime_ns}:".encode() + head)
        return digest.hexdigest()[:24]

    def _name(self, path: Path) -> str:
        """A log file's name under ``logs/`` (``api_events.log.3``, ``host-a/api_events.log.3``)."""
        try:
            return path.relative_to(self.log_path.parent).as_posix()
        except ValueError:
            return str(path)

    def _rotate_idle(self, before: datetime) -> None:
        """Rotate every log's live file last written before ``before`` (so every event in it is
        older), if no writer touched it meanwhile; the next write starts a new live file."""
        for live_path in self._logs():
            try:
                stat = os.stat(live_path)
            except FileNotFoundError:
                continue
            written = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
            if stat.st_size == 0 or written >= before:
                continue
            with writers_lock(live_path):
                if _identity(live_path, with_size=True) == _stat_key(stat):
                    rotate_log(live_path)

    def _delete(self, path: Path, part: CompactedPart, stat: os.stat_result) -> ExpiredFile | None:
        """Delete the rotated file ``path`` if it is still the file that was read (its log's
        writers' lock keeps a rotation from renaming another file to its name meanwhile)."""
        live_path = path.with_name(self.log_path.name)
        with writers_lock(live_path):
            if _identity(path, with_size=True) != _stat_key(stat):
                return None  # rotated or written since it was read: the next run looks again
            checkpoints = self._live_for(live_path).checkpoints
            stretches = checkpoints.retire_file((stat.st_dev, stat.st_ino))
            path.unlink()
        return ExpiredFile(self._name(path), part.rows, part.max_ts, stat.st_size, stretches)

    def _compact(
        self, fd: int, path: Path, fingerprint: str, stat: os.stat_result
    ) -> CompactedPart:
        """Write one closed file's events to Parquet, reading the file at most once more."""
        target = self.cache_dir / f"events-{fingerprint}.parquet"
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        covering = next((live for live in self._lives.values() if live.covers(stat)), None)
        with self._cursor() as cur:
            if covering is not None:  # a live file we read to its end, now rotated
                relation = " UNION ALL ".join(f"SELECT * FROM {t}" for t in covering.relations())
                skipped = covering.skipped
            else:
                # /proc/self/fd pins the inode we fingerprinted; elsewhere, check the name.
                pinned = PROC_FD_DIR.is_dir()
                source = {"path": str(PROC_FD_DIR / str(fd)) if pinned else str(path)}
                relation = f"SELECT * FROM ({READ_JSON_SQL}) WHERE {EVENT_FILTER}"
                try:  # in file order, which is time order give or take a few writers
                    cur.execute(
                        COPY_SQL.format(select=relation, target=quote(str(temporary))), source
                    )
                    (skipped,) = cur.execute(SKIPPED_SQL, source).fetchall()[0]
                except duckdb.IOException as exc:
                    raise FileNotFoundError(str(path)) from exc
                if not pinned and _identity(path, with_size=True) != _stat_key(stat):
                    raise _ListingChanged
                relation = f"SELECT * FROM read_parquet({quote(str(temporary))})"
            rows, min_ts, max_ts = cur.execute(RANGE_SQL.format(relation=relation)).fetchall()[0]
            if rows and not temporary.exists():
                cur.execute(COPY_SQL.format(select=relation, target=quote(str(temporary))))
        if rows:
            os.replace(temporary, target)
        else:
            temporary.unlink(missing_ok=True)
        self.compactions += 1
        part = CompactedPart(
            fingerprint=fingerprint,
            parquet=target if rows else None,
            rows=rows,
            skipped=skipped,
            min_ts=min_ts,
            max_ts=max_ts,
            source=self._name(path),
            size=stat.st_size,
        )
        self._parts[fingerprint] = part
        self._save_manifest()
        return part

    # --- the manifest -------------------------------------------------------------------------

    def _forget_orphans(self, seen: set[str]) -> None:
        now = time.time()
        self._last_seen = seen
        for fingerprint in seen:
            self._missing_since.pop(fingerprint, None)
        noticed = [fp for fp in self._parts if fp not in seen and fp not in self._missing_since]
        for fingerprint in noticed:
            self._missing_since[fingerprint] = now
        gone = [
            fp
            for fp in self._parts
            if fp not in seen and now - self._missing_since[fp] >= self._orphan_grace
        ]
        for fingerprint in gone:
            part = self._parts.pop(fingerprint)
            self._removed.add(fingerprint)
            self._missing_since.pop(fingerprint, None)
            if part.parquet is not None:
                part.parquet.unlink(missing_ok=True)
        if gone or noticed:
            self._save_manifest()

    def _load_missing_since(self) -> dict[str, float]:
        try:
            data = json.loads((self.cache_dir / MANIFEST_NAME).read_text())
            return {str(fp): float(t) for fp, t in data.get("missing_since", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

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
            missing = self._load_missing_since() | self._missing_since
            missing = {fp: t for fp, t in missing.items() if fp not in self._last_seen}
            payload = {
                "version": MANIFEST_VERSION,
                "parts": [_part_to_json(p) for p in merged.values()],
                "missing_since": {fp: t for fp, t in missing.items() if fp in merged},
            }
            temporary = self.cache_dir / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(payload, indent=1))
            os.replace(temporary, self.cache_dir / MANIFEST_NAME)


def _hot_rows_of(lives: list[LiveLog]) -> str:
    """The live files' hot rows as one FROM item: a table, or the union of those with rows."""
    tables = [live.hot for live in lives if live.hot_rows] or [lives[0].hot]
    if len(tables) == 1:
        return tables[0]
    return "(" + " UNION ALL ".join(f"SELECT * FROM {table}" for table in tables) + ")"


def _newest(part: CompactedPart, stat: os.stat_result) -> datetime:
    """A rotated file's newest event (naive UTC), or its last write when it holds no events."""
    if part.max_ts is not None:
        return part.max_ts
    return datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)


def _identity(path: Path, *, with_size: bool = False) -> Any:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return _stat_key(stat) if with_size else (stat.st_dev, stat.st_ino)


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


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
