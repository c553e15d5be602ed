"""The event log: one JSON object per line, appended by every thread and process of Nexus AI.

Where: ``<NEXUS_DATA_DIR>/logs/api_events.log`` (JSON Lines, UTF-8). Past ``NEXUS_LOG_MAX_BYTES``
the live file is rotated: ``api_events.log`` → ``.1`` → ``.2`` → … (``.1`` is the newest rotated
file, at most ``NEXUS_LOG_BACKUPS`` are kept). Readers take the rotated files oldest first, then
the live file, and skip (and count) any line that is not a complete JSON object — a torn last line
after a crash, or garbage.

Every record starts with the same four keys, then the event's own fields::

    {"ts":"2026-11-27T17:30:00.123Z","event":"job_start","chat_session_id":"…","user_id":7,"job_id":"…"}

- ``ts``: UTC, RFC 3339 with milliseconds and ``Z`` (see ``format_ts``);
- ``event``: one of ``EventName``;
- ``chat_session_id``: UUID string or null; ``user_id``: int or null.

=================================  ===========================================================
event                              extra fields
=================================  ===========================================================
``job_enqueued``, ``job_start``    ``job_id``
``request_start``                  ``request_id``, ``attempt`` (1-based), ``model``, ``provider``
``request_success``                ``request_id``, ``attempt``, ``latency_ms``, ``status_code``,
                                   ``tokens_in``, ``tokens_out``
``request_failure``                ``request_id``, ``attempt``, ``latency_ms``, ``status_code``
                                   (or null), ``error_type``, ``retryable``
``job_retry``                      ``job_id``, ``attempt`` (the one that failed), ``delay_ms``,
                                   ``error_type``
``job_success``                    ``job_id``, ``latency_ms`` (user message stored → reply
                                   stored), ``attempts``
``job_failure``                    ``job_id``, ``attempts``, ``error_type``
``evaluation_result``              ``job_id`` (the reply judged), ``run_id``, ``evaluation``,
                                   ``score_value``, ``score_label``, ``evaluator``; a vote's
                                   ``vote_id`` (and ``position`` for a rating), a judged case's
                                   ``case_index`` (never the text of a note or a reason)
=================================  ===========================================================

Other events (``error``, ``sign_in``, …) carry their own fields. Events of one AI response share a
``job_id``; events of one HTTP call share a ``request_id``.

Why lines never interleave: ``O_APPEND`` alone only protects small pipe writes, so each record is
encoded once and written with one ``os.write`` (looping on partial writes) while holding an
exclusive ``flock`` on ``api_events.log.lock`` (plus a ``threading.Lock`` in-process, since flock is
per open file). Rotation happens under the same lock; writers in other processes notice the live
file's inode changed and reopen it. A writer that finds the file not ending in a newline (torn
after a crash) writes one first. Do not delete the lock file while writers are running.

Several hosts: with ``NEXUS_LOG_HOST`` set, a process writes ``logs/<host>/api_events.log``
instead, with its own lock file and rotation in that directory, so only the processes of one host
share a lock and no lock spans machines. Readers take every log under ``logs/`` as one log: the
top-level one and one per host directory (``log_paths``), each with its rotated files. An event is
in exactly one file, so counting every file once counts every event once.

Secrets: the log writes what it is given, except that a field whose key contains ``key``,
``secret``, ``password`` or ``token`` is dropped (``tokens_in`` / ``tokens_out`` are allowed).
Logging never fails the caller: an unwritable log is reported once per outage on the stdlib
logger ``nexus.events`` (without the record's contents) and the event is dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from nexus_core.privacy.redaction import Redactor

if TYPE_CHECKING:
    from nexus_core.settings import Settings

DEFAULT_MAX_BYTES: Final = 52_428_800
DEFAULT_BACKUPS: Final = 20
FILE_MODE: Final = 0o644
LOCK_SUFFIX: Final = ".lock"
SECRET_MARKERS: Final = ("key", "secret", "password", "token")
SAFE_FIELD_NAMES: Final = frozenset(
    {
        "tokens_in",
        "tokens_out",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
    }
)
RESERVED_FIELDS: Final = ("ts", "event", "chat_session_id", "user_id")
FIELD_NAME_CACHE_SIZE: Final = 1024

_LOG = logging.getLogger("nexus.events")


# Jobs no user waits for (comparisons, test sets, evaluations) are *synthetic* traffic: every
# event of such a job carries its run's ``run_id``, and ``job_success`` names its ``channel``.
SYNTHETIC_CHANNELS: Final = ("compare", "test_set", "eval")
# Which events a query sees: user traffic, synthetic traffic or both.
TRAFFIC_KINDS: Final = ("user", "synthetic", "all")


def is_synthetic(fields: dict[str, Any]) -> bool:
    """Whether an event's fields mark it as synthetic traffic (no mark: user traffic)."""
    return fields.get("run_id") is not None or fields.get("channel") in SYNTHETIC_CHANNELS


class EventName:
    """The names of events in the log; new kinds of events add a constant here."""

    JOB_ENQUEUED: Final = "job_enqueued"
    JOB_START: Final = "job_start"
    REQUEST_START: Final = "request_start"
    REQUEST_SUCCESS: Final = "request_success"
    REQUEST_FAILURE: Final = "request_failure"
    JOB_RETRY: Final = "job_retry"
    JOB_SUCCESS: Final = "job_success"
    JOB_FAILURE: Final = "job_failure"
    ERROR: Final = "error"
    SIGN_IN: Final = "sign_in"
    BUDGET_REFUSED: Final = "budget_refused"
    EVALUATION_RESULT: Final = "evaluation_result"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_ts(dt: datetime) -> str:
    """``dt`` as ``2026-11-27T17:30:00.123Z`` (UTC, milliseconds truncated; naive means UTC)."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


@functools.lru_cache(maxsize=FIELD_NAME_CACHE_SIZE)
def is_secret_field(name: str) -> bool:
    """Whether a field name looks like it could hold a credential and must not be logged."""
    lowered = name.lower()
    return lowered not in SAFE_FIELD_NAMES and any(m in lowered for m in SECRET_MARKERS)


def build_record(
    event: str,
    *,
    ts: datetime,
    chat_session_id: str | None,
    user_id: int | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The record for one event: ts, event, chat_session_id, user_id, then the safe fields."""
    record: dict[str, Any] = {
        "ts": format_ts(ts),
        "event": event,
        "chat_session_id": None if chat_session_id is None else str(chat_session_id),
        "user_id": user_id,
    }
    for name, value in fields.items():
        if name in RESERVED_FIELDS or is_secret_field(name):
            _LOG.debug("dropped event field %r from %r", name, event)
            continue
        record[name] = value
    return record


def _json_default(value: object) -> str:
    # Datetimes inside fields get the same format as ``ts``; anything else becomes its str().
    if isinstance(value, datetime):
        return format_ts(value)
    return str(value)


def encode_record(record: dict[str, Any]) -> bytes:
    """One record as a compact UTF-8 JSON line ending in a newline."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    return (line + "\n").encode("utf-8")


class EventSink(Protocol):
    """Anything that records events: the file logger in the app, a list in tests."""

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Record one event; never raises because logging failed."""
        ...


class ListEventSink:
    """An in-memory sink for tests: ``events`` holds the records exactly as the file would."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.events: list[dict[str, Any]] = []
        self._clock = clock
        self._lock = threading.Lock()

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Append the event's record (round-tripped through JSON, as a reader would see it)."""
        record = build_record(
            event, ts=self._clock(), chat_session_id=chat_session_id, user_id=user_id, fields=fields
        )
        stored = json.loads(encode_record(record))
        with self._lock:
            self.events.append(stored)

    def named(self, event: str) -> list[dict[str, Any]]:
        """The recorded events with this name, in order."""
        with self._lock:
            return [e for e in self.events if e["event"] == event]


_OPEN_LOGGERS: weakref.WeakSet[ApiEventLogger] = weakref.WeakSet()


def _forget_fds_after_fork() -> None:
    # A forked child shares its parent's open file descriptions, and flock belongs to those,
    # so the child must open its own lock file; its thread lock may have been held at fork.
    for logger in list(_OPEN_LOGGERS):
        logger._lock = threading.Lock()
        logger._close_fds()


os.register_at_fork(after_in_child=_forget_fds_after_fork)


class ApiEventLogger:
    """Appends events to the JSON-lines log, safely across threads and processes, with rotation."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        clock: Callable[[], datetime] = utc_now,
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._scrub = scrub  # NEXUS_REDACT: masks text fields (never ids) before they are written
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self.max_bytes = max_bytes
        self.backups = backups
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._fd_identity = (0, 0)
        self._lock_fd: int | None = None
        self._failing = False
        _OPEN_LOGGERS.add(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiEventLogger:
        """The logger at ``settings.own_event_log_path`` (this host's file when
        ``NEXUS_LOG_HOST`` is set) with the configured rotation."""
        redactor = Redactor.of(settings.redacted_kinds)
        return cls(
            settings.own_event_log_path,
            max_bytes=settings.log_max_bytes,
            backups=settings.log_backups,
            scrub=redactor.redact if redactor else None,
        )

    def emit(
        self,
        event: str,
        *,
        chat_session_id: str | None = None,
        user_id: int | None = None,
        **fields: Any,
    ) -> None:
        """Append one event; a failure to log is reported on ``nexus.events`` and swallowed."""
        try:
            if self._scrub is not None:
                fields = {k: self._scrubbed(k, v) for k, v in fields.items()}
            record = build_record(
                event,
                ts=self._clock(),
                chat_session_id=chat_session_id,
                user_id=user_id,
                fields=fields,
            )
            data = encode_record(record)
            with self._lock:
                self._append(data)
                recovered, self._failing = self._failing, False
        except Exception as exc:
            self._report_failure(exc)
        else:
            if recovered:
                _LOG.warning("event log %s is writable again", self.path)

    def _scrubbed(self, name: str, value: Any) -> Any:
        if isinstance(value, str) and not name.endswith("_id") and self._scrub is not None:
            return self._scrub(value)
        return value

    def close(self) -> None:
        """Close the log and lock file descriptors (a later emit reopens them)."""
        with self._lock:
            self._close_fds()

    def __enter__(self) -> ApiEventLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", None) is not None or getattr(self, "_fd", None) is not None:
            self._close_fds()

    def _append(self, data: bytes) -> None:
        lock_fd = self._open_lock()
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            fd, size = self._live_file()
            if size > 0 and size + len(data) > self.max_bytes:
                self._rotate()
                fd, size = self._live_file()
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            _write_all(fd, data)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _open_lock(self) -> int:
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._lock_fd = os.open(self.lock_path, flags, FILE_MODE)
        return self._lock_fd

    def _live_file(self) -> tuple[int, int]:
        """The live file's fd and size, reopened if another writer rotated it (call under flock)."""
        if self._fd is not None:
            try:
                on_disk = os.stat(self.path)
            except FileNotFoundError:
                on_disk = None
            # Our open fd pins the inode, so its number cannot be reused by a new live file.
            if on_disk is not None and (on_disk.st_ino, on_disk.st_dev) == self._fd_identity:
                return self._fd, on_disk.st_size
            os.close(self._fd)
            self._fd = None
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC  # read: torn-line check
        self._fd = os.open(self.path, flags, FILE_MODE)
        opened = os.fstat(self._fd)
        self._fd_identity = (opened.st_ino, opened.st_dev)
        return self._fd, opened.st_size

    def _rotate(self) -> None:
        """Shift ``.N-1`` → ``.N`` … live → ``.1``, dropping the oldest (call under flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        rotate_log(self.path, self.backups)

    def _close_fds(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None

    def _report_failure(self, exc: Exception) -> None:
        with self._lock:
            self._close_fds()  # start afresh next time: the directory may be back
            if self._failing:
                return
            self._failing = True
        # Only the kind of failure, never the record: it may hold user content.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        _LOG.warning("cannot write event log %s (%s); dropping events", self.path, reason)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _rotated_files(path: Path) -> list[tuple[int, Path]]:
    """``(N, path.N)`` for every rotated file next to ``path``, in no particular order."""
    prefix = path.name + "."
    numbered: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            suffix = candidate.name[len(prefix) :]
            if candidate.name.startswith(prefix) and suffix.isdigit() and candidate.is_file():
                numbered.append((int(suffix), candidate))
    return numbered


@contextlib.contextmanager
def writers_lock(path: Path) -> Iterator[None]:
    """Hold the lock every writer of the log at ``path`` takes: meanwhile no line is written and
    no file rotated (what deleting a rotated file needs). Keep it briefly."""
    path = Path(path)
    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def rotate_log(path: Path, backups: int | None = None) -> None:
    """Shift ``.N-1`` → ``.N`` … live → ``.1``, dropping files past ``backups`` (None: keep
    every one). Call under ``writers_lock(path)``; writers elsewhere find the live file's inode
    changed and open a new one."""
    if backups is not None and backups <= 0:
        path.unlink(missing_ok=True)
        return
    for n, older in sorted(_rotated_files(path), reverse=True):
        if backups is not None and n >= backups:
            older.unlink()
        else:
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def log_files(path: Path) -> list[Path]:
    """The rotated files (oldest first) and then the live file, as far as they exist."""
    path = Path(path)
    files = [p for _, p in sorted(_rotated_files(path), reverse=True)]
    if path.is_file():
        files.append(path)
    return files


def log_paths(path: Path) -> list[Path]:
    """The live file of every log under ``path``'s directory: ``path`` itself, then
    ``<dir>/<host>/<path.name>`` for each host directory (one level down) holding that file or
    its rotated siblings, by name. Each is listed whether or not its live file exists now."""
    path = Path(path)
    hosts: list[Path] = []
    # A host directory may be a link (to a host's local disk, say): followed, but each real
    # directory read once and never ``logs/`` itself again.
    seen: set[tuple[int, int]] = set()
    with contextlib.suppress(OSError):
        top = os.stat(path.parent)
        seen.add((top.st_dev, top.st_ino))
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(path.parent) as it:
        for entry in sorted(it, key=lambda e: (e.is_symlink(), e.name)):
            try:
                if not entry.is_dir():
                    continue
                real = entry.stat()
            except OSError:
                continue
            if (real.st_dev, real.st_ino) in seen:
                continue
            seen.add((real.st_dev, real.st_ino))
            if _holds_log(Path(entry.path), path.name):
                hosts.append(Path(entry.path) / path.name)
    return [path, *sorted(hosts)]


def _holds_log(directory: Path, name: str) -> bool:
    prefix = name + "."
    with contextlib.suppress(OSError), os.scandir(directory) as it:
        return any(
            entry.name == name
            or (entry.name.startswith(prefix) and entry.name[len(prefix) :].isdigit())
            for entry in it
        )
    return False


def all_log_files(path: Path) -> list[Path]:
    """Every file of every log under ``path``'s directory (see ``log_paths``), log by log."""
    return [file for live in log_paths(path) for file in log_files(live)]


def read_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All events in the rotated and live files, oldest first, and the count of skipped lines."""
    events: list[dict[str, Any]] = []
    skipped = 0
    for file in log_files(path):
        with file.open("rb") as fh:
            for raw in fh:  # binary lines split on b"\n" only, not on U+2028 and friends
                try:
                    value = json.loads(raw)
                except ValueError:  # includes UnicodeDecodeError
                    skipped += 1
                    continue
                if isinstance(value, dict):
                    events.append(value)
                else:
                    skipped += 1
    return events, skipped
