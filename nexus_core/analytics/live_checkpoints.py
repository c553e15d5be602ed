"""Stretches of the live log file already parsed, kept as Parquet so no process parses them again.

When ``LiveLog`` freezes its hot rows, it writes them (sorted by ``ts``) to
``<cache_dir>/live-<dev>-<inode>-<start>-<end>.parquet`` and records the stretch of bytes
``[start, end)`` in ``live.json``. A process that opens the store later — a new ``nexus usage``,
a restarted app, another replica — adopts the longest chain of stretches from byte 0 of the same
file and reads only the bytes after it. A stretch belongs to the file by its device and inode and by
a hash of the file's first bytes (a reused inode holds other text), and only while the file is at
least ``end`` bytes long.

Each stretch names its *log* — the live file's path under ``logs/`` (``api_events.log``,
``host-a/api_events.log``) — and a ``LiveCheckpoints`` serves one log: with several hosts' logs
in one cache, replacing one host's live file retires only that log's stretches. Within a log a
stretch is matched by inode (and the head hash), not by device: clients of one network filesystem
may number its device differently, and one replica must not retire what another is using.

When the live file is replaced (rotation, truncation), the old file's stretches are marked retired
and their files deleted ``grace_seconds`` later (the store's orphan grace): another process may
still be compacting the rotated file from them or querying a snapshot that holds them. The file is
written under a temporary name and renamed; ``live.json`` is merged under the same ``flock`` as
the compacted parts' manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Final

LIVE_MANIFEST_NAME: Final = "live.json"
LOCK_NAME: Final = "manifest.lock"  # shared with the compacted parts' manifest
HEAD_BYTES: Final = 4096
DEFAULT_LOG: Final = "api_events.log"  # the single-host log; stretches recorded before ``log``

Identity = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True)
class Stretch:
    """Bytes ``[start, end)`` of one live file, parsed into Parquet; a ``live.json`` entry."""

    dev: int
    ino: int
    start: int
    end: int
    head: str  # sha256 of the file's first min(end, HEAD_BYTES) bytes
    parquet: str  # the file's name in the cache dir
    rows: int
    skipped: int
    min_ts: str | None
    max_ts: str | None
    retired_at: float | None = None  # wall-clock time the file stopped being the live one
    log: str = DEFAULT_LOG  # the live file's path under logs/, POSIX style

    @property
    def identity(self) -> Identity:
        return (self.dev, self.ino)

    @property
    def key(self) -> str:
        return f"live-{self.dev}-{self.ino}-{self.start}-{self.end}"

    def times(self) -> tuple[datetime, datetime] | None:
        """``(min_ts, max_ts)``, or None when the stretch holds no events."""
        if self.min_ts is None or self.max_ts is None:
            return None
        return datetime.fromisoformat(self.min_ts), datetime.fromisoformat(self.max_ts)


class LiveCheckpoints:
    """The live files' parsed stretches in one cache dir, shared by every process using it."""

    def __init__(
        self, cache_dir: Path, *, version: int, grace_seconds: float, log: str = DEFAULT_LOG
    ) -> None:
        self.cache_dir = cache_dir
        self.version = version
        self.grace_seconds = grace_seconds
        self.log = log

    def _of_file(self, stretch: Stretch, identity: Identity | None) -> bool:
        """Whether ``stretch`` is of this log's file ``identity`` (by inode: see the module)."""
        return identity is not None and stretch.log == self.log and stretch.ino == identity[1]

    def target(self, identity: Identity, start: int, end: int) -> Path:
        """Where the stretch ``[start, end)`` of the file ``identity`` is written."""
        return self.cache_dir / f"live-{identity[0]}-{identity[1]}-{start}-{end}.parquet"

    def chain(self, fd: int, identity: Identity, size: int) -> list[Stretch]:
        """The longest run of stretches covering the open file from byte 0, in order."""
        heads: dict[int, str] = {}
        by_start: dict[int, list[Stretch]] = {}
        for stretch in self._load():
            if (
                self._of_file(stretch, identity)
                and stretch.retired_at is None
                and stretch.end <= size
                and (self.cache_dir / stretch.parquet).is_file()
            ):
                by_start.setdefault(stretch.start, []).append(stretch)
        chain: list[Stretch] = []
        position = 0
        while by_start.get(position):
            candidates = sorted(by_start.pop(position), key=lambda s: s.end, reverse=True)
            for stretch in candidates:
                length = min(stretch.end, HEAD_BYTES)
                if length not in heads:
                    heads[length] = _head_hash(fd, length)
                if heads[length] == stretch.head:
                    chain.append(stretch)
                    position = stretch.end
                    break
            else:
                break
        return chain

    def record(self, stretch: Stretch) -> None:
        """Add a written stretch to ``live.json`` (and delete stretches retired long ago)."""
        now = time.time()
        with self._locked() as stretches:
            for key, old in list(stretches.items()):
                if old.retired_at is not None and now - old.retired_at >= self.grace_seconds:
                    (self.cache_dir / old.parquet).unlink(missing_ok=True)
                    del stretches[key]
            stretches[stretch.key] = stretch

    def retire_others(self, live: Identity | None) -> None:
        """Mark the stretches of this log's files but ``live`` retired (other logs' are left
        alone); delete those retired long ago."""
        now = time.time()
        stretches = self._load()
        if all(s.log != self.log or self._of_file(s, live) for s in stretches):
            return
        with self._locked() as current:
            for key, stretch in list(current.items()):
                if stretch.log != self.log or self._of_file(stretch, live):
                    continue
                if stretch.retired_at is None:
                    current[key] = replace(stretch, retired_at=now)
                elif now - stretch.retired_at >= self.grace_seconds:
                    (self.cache_dir / stretch.parquet).unlink(missing_ok=True)
                    del current[key]

    def retire_file(self, identity: Identity) -> int:
        """Retire the stretches of a file that is being deleted (retention): without a grace
        their files go at once, else ``grace_seconds`` later like any retired stretch. Returns
        how many stretches the file had."""
        now = time.time()
        with self._locked() as current:
            mine = [key for key, s in current.items() if self._of_file(s, identity)]
            for key in mine:
                if self.grace_seconds <= 0:
                    (self.cache_dir / current.pop(key).parquet).unlink(missing_ok=True)
                elif current[key].retired_at is None:
                    current[key] = replace(current[key], retired_at=now)
        return len(mine)

    @staticmethod
    def head(fd: int, end: int) -> str:
        """The hash a stretch ending at ``end`` records of the file's first bytes."""
        return _head_hash(fd, min(end, HEAD_BYTES))

    def _load(self) -> list[Stretch]:
        try:
            data = json.loads((self.cache_dir / LIVE_MANIFEST_NAME).read_text())
            if data.get("version") != self.version:
                return []
            return [Stretch(**item) for item in data["stretches"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # no or unreadable manifest: parsing the file again is always safe

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Stretch]]:
        with (self.cache_dir / LOCK_NAME).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stretches = {s.key: s for s in self._load()}
            yield stretches
            payload = {
                "version": self.version,
                "stretches": [asdict(s) for s in stretches.values()],
            }
            temporary = self.cache_dir / f".{LIVE_MANIFEST_NAME}.{os.getpid()}.tmp"
            temporary.write_text(json.dumps(payload, indent=1))
            os.replace(temporary, self.cache_dir / LIVE_MANIFEST_NAME)


def _head_hash(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()[:24]
