"""The workbench's query engine, app side: a snapshot of the data, a query process, deadlines.

User SQL never runs in the app's process. Each run (one query, or one "run all") takes a
snapshot of the data (``data``) into a DuckDB file of its own and starts a query process
(``query_process``, where the sandbox is described) that opens it read-only. The process is
started first, so its start-up overlaps the snapshot.

This side holds the limits that do not depend on the process's cooperation: a request that
outlives the time limit (and a short grace for DuckDB's own interrupt) gets the process killed;
a process that dies — past its address-space limit, its CPU time, or on a crash inside DuckDB
— is a clear error, never the app's problem. After either, the session starts a fresh process
on a fresh snapshot for its next query.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl
import pyarrow as pa

import nexus_core
from nexus_core.analytics.log_store import EventStore
from nexus_core.db.engine import Database
from nexus_core.errors import ConfigError, QueryError, QueryTimeout
from nexus_core.settings import Settings
from nexus_core.workbench.data import load_snapshot, take_snapshot
from nexus_core.workbench.parameters import Bound, bound_to_json
from nexus_core.workbench.query_process import (
    CONNECT_CONFIG,
    FRAME_HEADER,
    SANDBOX_THREADS,
    SESSION_SQL,
    TIMEOUT_MESSAGE,
    ProcessConfig,
    error_from_header,
)
from nexus_core.workbench.results import QueryResult

START_TIMEOUT_SECONDS: Final = 60.0  # importing DuckDB and Polars on a busy machine, then opening
KILL_GRACE_SECONDS: Final = 0.5  # past the time limit, for DuckDB's own interrupt to land
STOP_WAIT_SECONDS: Final = 2.0
SNAPSHOT_FILE: Final = "snapshot.duckdb"
QUERY_PROCESS_MODULE: Final = "nexus_core.workbench.query_process"
# The only environment the query process gets: no keys, no database URL.
CHILD_ENVIRONMENT: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
MEMORY_SIZE: Final = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*(b|bytes|[kmgt]i?b)\s*$")
MEMORY_UNITS: Final = {
    "b": 1,
    "bytes": 1,
    **{f"{p}b": 1000**n for n, p in enumerate("kmgt", start=1)},
    **{f"{p}ib": 1024**n for n, p in enumerate("kmgt", start=1)},
}
DATA_MEMORY_MESSAGE: Final = (
    "The app's data does not fit in the workbench's memory ({limit}); an admin can raise "
    "NEXUS_SQL_MEMORY_LIMIT."
)
MEMORY_SETTING_MESSAGE: Final = (
    "NEXUS_SQL_MEMORY_LIMIT must be a DuckDB memory size such as 512MB or 2GB, not {value!r}."
)
TIMEOUT_SETTING_MESSAGE: Final = "NEXUS_SQL_TIMEOUT_SECONDS must be above 0, not {value!r}."
DOWNLOAD_SETTING_MESSAGE: Final = "NEXUS_SQL_DOWNLOAD_MAX_BYTES must be above 0, not {value!r}."
PROCESS_ENDED_MESSAGE: Final = (
    "The query was stopped: it needed more memory than the workbench allows ({limit}, "
    "NEXUS_SQL_MEMORY_LIMIT) or more CPU time than its time limit. Filter or aggregate more."
)
START_FAILED_MESSAGE: Final = "The workbench could not start its query process ({reason})."


def memory_bytes(value: str) -> int:
    """A DuckDB memory size (``512MB``, ``2GiB``) in bytes; ``ConfigError`` when it is not one."""
    match = MEMORY_SIZE.match(value)
    if match is None:
        raise ConfigError(MEMORY_SETTING_MESSAGE.format(value=value))
    return int(float(match[1]) * MEMORY_UNITS[match[2].lower()])


class QueryProcess:
    """One query process over one snapshot: requests in, answers out, within deadlines."""

    def __init__(self, process: subprocess.Popen[bytes], memory_limit: str) -> None:
        self._process = process
        self._memory_limit = memory_limit
        assert process.stdin is not None and process.stdout is not None
        self._requests = process.stdin
        self._replies = process.stdout.fileno()
        os.set_blocking(self._replies, False)

    @classmethod
    def spawn(cls, memory_limit: str) -> QueryProcess:
        """Start a query process; it imports DuckDB, then waits for its ``ProcessConfig``."""
        package_root = str(Path(nexus_core.__file__).resolve().parents[1])
        env = {name: os.environ[name] for name in CHILD_ENVIRONMENT if name in os.environ}
        env["PYTHONPATH"] = package_root  # the same code as this process runs
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", QUERY_PROCESS_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=package_root,
                start_new_session=True,
            )
        except OSError as exc:
            raise QueryError(START_FAILED_MESSAGE.format(reason=exc.strerror)) from exc
        return cls(process, memory_limit)

    @property
    def pid(self) -> int:
        """The process id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self._process.poll() is None

    def configure(self, config: ProcessConfig) -> None:
        """Hand over the snapshot and wait until the process has opened and locked it down."""
        self._send(config.to_json())
        header, _ = self._receive(START_TIMEOUT_SECONDS, on_timeout=self._start_timed_out)
        if not header.get("ok"):
            raise error_from_header(header)

    def request(self, message: dict[str, Any], timeout: float) -> tuple[dict[str, Any], bytes]:
        """Send one request; its answer, or ``QueryTimeout`` once the deadline passed (the
        process is then killed), or ``QueryError`` when the process died."""
        self._send(json.dumps({**message, "timeout": timeout}).encode() + b"\n")
        header, payload = self._receive(
            timeout + KILL_GRACE_SECONDS,
            on_timeout=lambda: QueryTimeout(TIMEOUT_MESSAGE.format(seconds=timeout)),
        )
        if not header.get("ok"):
            raise error_from_header(header)
        return header, payload

    def kill(self) -> None:
        """End the process and every thread in it at once."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._close_pipes()

    def close(self) -> None:
        """Let the process finish (it exits when its input closes); kill it if it lingers."""
        with contextlib.suppress(OSError):
            self._requests.close()
        try:
            self._process.wait(STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _send(self, line: bytes) -> None:
        try:
            self._requests.write(line)
            self._requests.flush()
        except OSError as exc:  # it died before reading
            raise self._ended() from exc

    def _receive(
        self, seconds: float, *, on_timeout: Callable[[], QueryError]
    ) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + seconds
        size = FRAME_HEADER.unpack(self._read(FRAME_HEADER.size, deadline, on_timeout))[0]
        header = json.loads(self._read(size, deadline, on_timeout))
        payload = self._read(int(header.get("payload_bytes", 0)), deadline, on_timeout)
        return header, payload

    def _read(self, count: int, deadline: float, on_timeout: Callable[[], QueryError]) -> bytearray:
        """Exactly ``count`` bytes from the process, or ``on_timeout()`` past ``deadline``."""
        data = bytearray(count)
        view = memoryview(data)
        filled = 0
        with selectors.DefaultSelector() as selector:
            selector.register(self._replies, selectors.EVENT_READ)
            while filled < count:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    self.kill()
                    raise on_timeout()
                read = os.readv(self._replies, [view[filled:]])
                if not read:
                    raise self._ended()
                filled += read
        return data

    def _ended(self) -> QueryError:
        """The error for a process that died under a query (memory, CPU time, a crash)."""
        self.kill()
        return QueryError(PROCESS_ENDED_MESSAGE.format(limit=self._memory_limit))

    def _start_timed_out(self) -> QueryError:
        return QueryError(START_FAILED_MESSAGE.format(reason="it did not start in time"))

    def _close_pipes(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class WorkbenchSession:
    """Queries over one snapshot in one query process; close it when done.

    After a query was killed (time limit) or its process died (memory), the next query starts a
    fresh process on a fresh snapshot.
    """

    def __init__(
        self,
        start: Callable[[], QueryProcess],
        settings: Settings,
        export: Callable[[str, str, dict[str, Bound] | None], bytes] | None = None,
    ) -> None:
        self._start = start
        self._settings = settings
        self._export = export
        self._process: QueryProcess | None = None
        self.generation = 0  # how many query processes (snapshots) this session started

    def open(self) -> WorkbenchSession:
        """Take the snapshot and start the process now (rather than at the first query)."""
        self._running()
        return self

    def run(
        self,
        sql: str,
        *,
        keep: int | None = None,
        params: dict[str, Bound] | None = None,
        name: str | None = None,
    ) -> QueryResult:
        """Run one read-only statement; raises ``QueryError`` (or a subclass) when it fails.

        ``keep`` bounds the rows held in memory (the rest are counted, not kept); the result can
        then build the full file by running ``sql`` again on a fresh snapshot. ``params`` are
        bound to its ``$names``; with ``name`` the whole result is kept in the query process as a
        table of that name, which later queries of this session read.
        """
        bound = {key: bound_to_json(value) for key, value in (params or {}).items()}
        message = {"op": "run", "sql": sql, "keep": keep, "params": bound, "name": name}
        header, payload = self._ask(message)
        frame = pl.from_arrow(pa.ipc.open_file(pa.py_buffer(payload)).read_all())  # no copy
        assert isinstance(frame, pl.DataFrame)
        export = self._export
        # A fresh snapshot lacks this session's named results: the runner re-runs the cells a
        # chained cell reads (``runs``); a plain query is simply run again.
        again = None if export is None else (lambda fmt: export(sql, fmt, params))
        return QueryResult(frame, int(header["row_count"]), float(header["elapsed_ms"]), again)

    def export(self, sql: str, fmt: str, *, params: dict[str, Bound] | None = None) -> bytes:
        """Every row of ``sql``'s result as a file (``results.FILE_FORMATS``)."""
        limit = self._settings.sql_download_max_bytes
        bound = {key: bound_to_json(value) for key, value in (params or {}).items()}
        message = {"op": "export", "sql": sql, "format": fmt, "max_bytes": limit, "params": bound}
        _, payload = self._ask(message)
        return payload

    def _ask(self, message: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        process = self._running()
        try:
            return process.request(message, self._settings.sql_timeout_seconds)
        finally:
            if not process.alive:
                self._process = None

    def _running(self) -> QueryProcess:
        if self._process is None or not self._process.alive:
            self._process = self._start()
            self.generation += 1
        return self._process

    def close(self) -> None:
        """End the query process."""
        if self._process is not None:
            self._process.close()
            self._process = None

    def __enter__(self) -> WorkbenchSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Workbench:
    """The query engine of the Analytics workbench and `nexus sql`; build one per process."""

    def __init__(self, settings: Settings, db: Database, events: EventStore | None = None) -> None:
        if settings.sql_timeout_seconds <= 0:
            raise ConfigError(TIMEOUT_SETTING_MESSAGE.format(value=settings.sql_timeout_seconds))
        if settings.sql_download_max_bytes <= 0:
            raise ConfigError(
                DOWNLOAD_SETTING_MESSAGE.format(value=settings.sql_download_max_bytes)
            )
        self.memory_limit_bytes = memory_bytes(settings.sql_memory_limit)
        self.settings = settings
        self.db = db
        self._events = events
        self._owns_events = events is None
        self._lock = threading.Lock()

    @property
    def events(self) -> EventStore:
        """The event store the ``events`` relation reads (built on first use when not given)."""
        with self._lock:
            if self._events is None:
                self._events = EventStore.from_settings(self.settings)
            return self._events

    def open(self, *, include_message_content: bool) -> WorkbenchSession:
        """A session over a fresh snapshot; message content only when asked (admins)."""

        def export(sql: str, fmt: str, params: dict[str, Bound] | None) -> bytes:
            return self.export(
                sql, fmt, include_message_content=include_message_content, params=params
            )

        session = WorkbenchSession(
            lambda: self._start(include_message_content=include_message_content),
            self.settings,
            export=export,
        )
        return session.open()

    def run(
        self, sql: str, *, include_message_content: bool, keep: int | None = None
    ) -> QueryResult:
        """Open a session, run one query (keeping at most ``keep`` rows), close it."""
        with self.open(include_message_content=include_message_content) as session:
            return session.run(sql, keep=keep)

    def export(
        self,
        sql: str,
        fmt: str,
        *,
        include_message_content: bool,
        params: dict[str, Bound] | None = None,
    ) -> bytes:
        """Every row of one query's result as a file, on a fresh snapshot."""
        with self.open(include_message_content=include_message_content) as session:
            return session.export(sql, fmt, params=params)

    def _start(self, *, include_message_content: bool) -> QueryProcess:
        process = QueryProcess.spawn(self.settings.sql_memory_limit)  # imports meanwhile
        try:
            with tempfile.TemporaryDirectory(prefix="nexus-workbench-") as folder:
                path = str(Path(folder) / SNAPSHOT_FILE)
                event_files = self._write_snapshot(path, include_message_content)
                process.configure(
                    ProcessConfig(
                        snapshot_path=path,
                        event_files=event_files,
                        memory_limit=self.settings.sql_memory_limit,
                        memory_limit_bytes=self.memory_limit_bytes,
                    )
                )
        except BaseException:
            process.kill()
            raise
        return process

    def _write_snapshot(self, path: str, include_message_content: bool) -> tuple[str, ...]:
        """The run's data in a DuckDB file at ``path``; the Parquet files ``events`` reads."""
        memory = self.settings.sql_memory_limit
        config = {**CONNECT_CONFIG, "memory_limit": memory, "threads": SANDBOX_THREADS}
        try:
            con = duckdb.connect(path, config=config)
        except duckdb.Error as exc:
            raise ConfigError(MEMORY_SETTING_MESSAGE.format(value=memory)) from exc
        try:
            data = take_snapshot(
                self.db, self.events, include_message_content=include_message_content
            )
            for statement in SESSION_SQL:
                con.execute(statement)
            load_snapshot(con, data)
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(DATA_MEMORY_MESSAGE.format(limit=memory)) from exc
        finally:
            con.close()
        return data.event_files

    def close(self) -> None:
        """Close the event store if this workbench built it."""
        with self._lock:
            if self._owns_events and self._events is not None:
                self._events.close()
                self._events = None

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
