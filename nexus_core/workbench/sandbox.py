"""The workbench's query engine: one read-only statement at a time in a locked-down DuckDB.

Defence in depth (DuckDB's own words for its settings: they are not a full sandbox):

1. **The statement check.** A cell holds exactly one statement (``extract_statements``) and it
   parses as a SELECT — ``WITH … SELECT``, ``FROM …``, ``VALUES``, ``DESCRIBE``/``SHOW``/
   ``SUMMARIZE`` too. Anything else is refused before it reaches the connection.
2. **Copies only.** Each run (one query, or one "run all") gets a fresh in-memory connection
   holding a snapshot of the data (``data``); nothing it does can reach the app's database.
3. **The lock-down**, in the order the DuckDB 2.0 notes give: the only files it may open are the
   compacted Parquet files behind ``events`` (``allowed_paths``; no directory at all, so never
   the data dir with ``nexus.db`` or the logs), external access off, no extension installs or
   loads, no persistent secrets, no Python replacement scans (a query cannot see the caller's
   variables), memory and thread limits, no spill files, and the configuration locked.
4. **A time limit.** A timer interrupts the connection; the query fails with ``QueryTimeout``.

Errors are DuckDB's message, never a traceback, with the position (``LINE n:`` and a caret) when
DuckDB gives one or the message names something that occurs once in the query.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Final

import duckdb
import polars as pl
import pyarrow as pa

from nexus_core.analytics.event_snapshot import quote
from nexus_core.analytics.log_store import EventStore
from nexus_core.db.engine import Database
from nexus_core.errors import ConfigError, QueryError, QueryRefused, QueryTimeout
from nexus_core.settings import Settings
from nexus_core.workbench.data import TABLE_VIEWS, load_snapshot, take_snapshot
from nexus_core.workbench.results import QueryResult, fetch

INTERRUPTED: Final = "INTERRUPT Error"
OUT_OF_MEMORY: Final = "Out of Memory Error"
SANDBOX_THREADS: Final = 2
CONNECT_CONFIG: Final = {"temp_directory": ""}  # no spill files, and no temp dir to read
SESSION_SQL: Final = ("SET TimeZone = 'UTC'", "SET errors_as_json = true")
LOCKDOWN_SQL: Final = (
    "SET allowed_directories = []",
    "SET allowed_paths = [{paths}]",
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_persistent_secrets = false",
    "SET python_enable_replacements = false",
    "SET memory_limit = {memory_limit}",
    f"SET threads = {SANDBOX_THREADS}",
    "SET max_temp_directory_size = '0KB'",
    "SET lock_configuration = true",
)

RELATIONS: Final = ", ".join(["events", *(view.name for view in TABLE_VIEWS)])
EMPTY_MESSAGE: Final = "The cell is empty; write one SELECT statement."
ONE_SELECT_MESSAGE: Final = (
    "Only one SELECT (or WITH … SELECT) statement per cell; this cell holds {what}."
)
ACCESS_MESSAGE: Final = (
    f"The workbench reads only its own relations ({RELATIONS}); files, URLs, extensions and "
    "settings are off limits."
)
TIMEOUT_MESSAGE: Final = (
    "The query ran longer than {seconds:g} s and was stopped. Narrow it down (a WHERE on ts, "
    "a LIMIT) and run it again."
)
MEMORY_MESSAGE: Final = (
    "The query needs more memory than the workbench has ({limit}, NEXUS_SQL_MEMORY_LIMIT); "
    "filter or aggregate more."
)
DATA_MEMORY_MESSAGE: Final = (
    "The app's data does not fit in the workbench's memory ({limit}); an admin can raise "
    "NEXUS_SQL_MEMORY_LIMIT."
)
CONVERSION_MESSAGE: Final = "The result has a column the workbench cannot show; cast it to VARCHAR."
MEMORY_SETTING_MESSAGE: Final = (
    "NEXUS_SQL_MEMORY_LIMIT must be a DuckDB memory size such as 512MB or 2GB, not {value!r}."
)
TIMEOUT_SETTING_MESSAGE: Final = "NEXUS_SQL_TIMEOUT_SECONDS must be above 0, not {value!r}."
# Messages that name what is wrong without a position: where it occurs once, we point at it.
NAMED_IN_MESSAGE: Final = (
    re.compile(r'with name "?([\w.]+)"? does not exist'),
    re.compile(r'Referenced (?:column|table) "([^"]+)" not found'),
)


class WorkbenchSession:
    """One data snapshot in one sandboxed DuckDB connection; run queries on it, then close it."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: Settings,
        rerun: Callable[[str], QueryResult] | None = None,
    ) -> None:
        self._con = con
        self._settings = settings
        self._rerun = rerun

    def run(self, sql: str, *, keep: int | None = None) -> QueryResult:
        """Run one read-only statement; raises ``QueryError`` (or a subclass) when it fails.

        ``keep`` bounds the rows held in memory (the rest are counted, not kept); the result can
        then fetch every row again by running ``sql`` on a fresh snapshot.
        """
        check_statement(self._con, sql)
        started = time.perf_counter()
        deadline = _Deadline(self._con, self._settings.sql_timeout_seconds)
        try:
            with deadline:
                frame, row_count = fetch(self._con.sql(sql), keep)
        except (duckdb.Error, OSError) as exc:
            # Errors met while rows stream in arrive through Arrow as OSError, DuckDB's text kept.
            raise self._failure(exc, sql, deadline) from exc
        except (pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise QueryError(f"{CONVERSION_MESSAGE} ({exc})") from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        rerun = self._rerun
        again = None if rerun is None else (lambda: rerun(sql).frame)
        return QueryResult(frame, row_count, elapsed_ms, rerun=again)

    def _failure(self, exc: Exception, sql: str, deadline: _Deadline) -> QueryError:
        """The error to show for a query DuckDB stopped: time limit, memory, or its message."""
        kind = _duckdb_text(exc)[0]
        if deadline.fired and (isinstance(exc, duckdb.InterruptException) or kind == INTERRUPTED):
            seconds = self._settings.sql_timeout_seconds
            return QueryTimeout(TIMEOUT_MESSAGE.format(seconds=seconds))
        if isinstance(exc, duckdb.OutOfMemoryException) or kind == OUT_OF_MEMORY:
            memory = MEMORY_MESSAGE.format(limit=self._settings.sql_memory_limit)
            reason = _duckdb_text(exc)[1].splitlines()[0]  # the rest is advice for DuckDB's owner
            return QueryError(f"{memory}\n\n{OUT_OF_MEMORY}: {reason}")
        return query_error(exc, sql)

    def close(self) -> None:
        """Drop the connection and its copy of the data."""
        self._con.close()

    def __enter__(self) -> WorkbenchSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Workbench:
    """The query engine of the Analytics workbench and `nexus sql`; build one per process."""

    def __init__(self, settings: Settings, db: Database, events: EventStore | None = None) -> None:
        if settings.sql_timeout_seconds <= 0:
            raise ConfigError(TIMEOUT_SETTING_MESSAGE.format(value=settings.sql_timeout_seconds))
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
        """A sandboxed session over a fresh snapshot; message content only when asked (admins)."""
        memory = self.settings.sql_memory_limit
        config = {**CONNECT_CONFIG, "memory_limit": memory, "threads": SANDBOX_THREADS}
        try:
            con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            raise ConfigError(MEMORY_SETTING_MESSAGE.format(value=memory)) from exc
        try:
            data = take_snapshot(
                self.db, self.events, include_message_content=include_message_content
            )
            for statement in SESSION_SQL:
                con.execute(statement)
            load_snapshot(con, data)
            _lock_down(con, data.event_files, memory)
        except duckdb.OutOfMemoryException as exc:
            con.close()
            raise QueryError(DATA_MEMORY_MESSAGE.format(limit=memory)) from exc
        except BaseException:
            con.close()
            raise
        return WorkbenchSession(
            con,
            self.settings,
            rerun=lambda sql: self.run(sql, include_message_content=include_message_content),
        )

    def run(
        self, sql: str, *, include_message_content: bool, keep: int | None = None
    ) -> QueryResult:
        """Open a session, run one query (keeping at most ``keep`` rows), close it."""
        with _parser() as parser:  # refuse before copying any data
            check_statement(parser, sql)
        with self.open(include_message_content=include_message_content) as session:
            return session.run(sql, keep=keep)

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


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse all but exactly one SELECT (``QueryRefused``; a syntax error: ``QueryError``)."""
    if not sql.strip():
        raise QueryRefused(EMPTY_MESSAGE)
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise query_error(exc, sql) from exc
    if not statements:
        raise QueryRefused(EMPTY_MESSAGE)
    if len(statements) > 1:
        raise QueryRefused(ONE_SELECT_MESSAGE.format(what=f"{len(statements)} statements"))
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(ONE_SELECT_MESSAGE.format(what=f"a {kind.name} statement"))


def query_error(exc: Exception, sql: str) -> QueryError:
    """DuckDB's error as a ``QueryError`` whose message shows where in ``sql`` it is."""
    prefix, message, position, length = _duckdb_text(exc)
    if isinstance(exc, duckdb.PermissionException):
        return QueryRefused(f"{ACCESS_MESSAGE}\n\n{prefix}: {message}")
    if position is None:
        position, length = _named_position(message, sql)
    text = f"{prefix}: {message}" if prefix else message
    if position is None:
        return QueryError(text)
    line, column, source = _line_of(sql, position)
    indent = "".join(ch if ch == "\t" else " " for ch in source[: column - 1])
    caret = " " * len(f"LINE {line}: ") + indent + "^" * max(1, length)
    return QueryError(f"{text}\n\nLINE {line}: {source}\n{caret}", line=line, column=column)


def _duckdb_text(exc: Exception) -> tuple[str, str, int | None, int]:
    """(kind, message, byte position or None, length) of a DuckDB error, JSON or plain."""
    prefix, _, rest = str(exc).partition(": ")
    if not rest:
        return "", prefix, None, 1
    try:
        data = json.loads(rest)
    except ValueError:
        return prefix, rest.strip(), None, 1
    if not isinstance(data, dict):
        return prefix, rest.strip(), None, 1
    message = str(data.get("exception_message", rest))
    match = re.fullmatch(r"\[(\d+),(\d+)\]", str(data.get("location", "")))
    if match:
        return prefix, message, int(match[1]), int(match[2])
    position = str(data.get("position", ""))
    return prefix, message, int(position) if position.isdigit() else None, 1


def _named_position(message: str, sql: str) -> tuple[int | None, int]:
    for pattern in NAMED_IN_MESSAGE:
        named = pattern.search(message)
        if named is None:
            continue
        name = named[1]
        found = list(
            re.finditer(rf'(?<![\w."]){re.escape(name)}(?![\w"])|"{re.escape(name)}"', sql, re.I)
        )
        if len(found) == 1:
            return len(sql[: found[0].start()].encode()), len(found[0][0])
    return None, 1


def _line_of(sql: str, byte_position: int) -> tuple[int, int, str]:
    """1-based line and column of a byte offset into ``sql``, and that line's text."""
    offset = len(sql.encode()[:byte_position].decode(errors="ignore"))
    line_start = sql.rfind("\n", 0, offset) + 1
    line_end = sql.find("\n", offset)
    source = sql[line_start : line_end if line_end >= 0 else len(sql)].rstrip("\r")
    return sql.count("\n", 0, offset) + 1, offset - line_start + 1, source


def _parser() -> duckdb.DuckDBPyConnection:
    """An empty connection to check a statement with, its errors in the sandbox's format."""
    con = duckdb.connect(":memory:", config=dict(CONNECT_CONFIG))
    for statement in SESSION_SQL:
        con.execute(statement)
    return con


def _lock_down(con: duckdb.DuckDBPyConnection, files: tuple[str, ...], memory: str) -> None:
    paths = ", ".join(quote(path) for path in files)
    for statement in LOCKDOWN_SQL:
        con.execute(statement.format(paths=paths, memory_limit=quote(memory)))


class _Deadline:
    """Interrupts a connection when a query outlives its time limit; never after it ended."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self._con = con
        self._lock = threading.Lock()
        self._running = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self.fired = False

    def _fire(self) -> None:
        with self._lock:
            if self._running:
                self.fired = True
                self._con.interrupt()

    def __enter__(self) -> _Deadline:
        self._running = True
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._running = False
        self._timer.cancel()
