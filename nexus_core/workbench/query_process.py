"""The workbench's query process: user SQL runs here, never in the app's own process.

``python -m nexus_core.workbench.query_process`` is started by ``sandbox.QueryProcess`` for
each workbench run. DuckDB's own limits are defence in depth, not a boundary — its memory limit
does not cover every allocation (one ``repeat('x', 2000000000)`` is a 2 GB string) and its
interrupt is only seen between steps of execution — so the hard limits come from the operating
system and the parent:

1. **Its own process.** Started with no secrets in its environment, in a session of its own;
   its only channel is a pipe (JSON requests in, framed JSON + bytes out; nothing is unpickled).
2. **A read-only snapshot.** The parent writes the run's data to a DuckDB file; this process
   opens it ``read_only`` and unlinks it at once, so no statement — whatever the parser lets
   through, a ``DELETE`` inside a ``WITH`` or SQL run from a string — can change it, and
   nothing stays on disk when the process dies.
3. **The lock-down**, in the order the DuckDB 2.0 notes give: the only files it may open are the
   compacted Parquet files behind ``events``; external access, extension installs and loads,
   persistent secrets and Python replacement scans off; memory and thread limits; no spill
   files; the configuration locked.
4. **Operating-system limits.** Address space (``RLIMIT_AS``: what it has after opening, plus
   the memory limit and a margin for results), no file writes (``RLIMIT_FSIZE`` 0), and CPU
   time per query (``RLIMIT_CPU``, a backstop should the parent be gone). An allocation past
   the limit fails inside DuckDB or ends this process; the app's memory is never touched.
5. **Deadlines.** A timer interrupts DuckDB at the time limit (the process lives on for the next
   cell); the parent kills the process shortly after if the query did not stop.
6. **The statement check.** Exactly one statement, a SELECT, whose parsed tree
   (``json_serialize_sql``) holds only query nodes that read: a ``DELETE``/``INSERT``/``UPDATE``
   anywhere in it is refused with a message before it runs.
7. **Bounded results.** The rows kept for the screen stop at ``DISPLAY_LIMIT`` rows and
   ``DISPLAY_MAX_BYTES``; a download is refused past its byte limit.

Errors are DuckDB's message, never a traceback, with the position (``LINE n:`` and a caret) when
DuckDB gives one or the message names something that occurs once in the query.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

import duckdb
import polars as pl
import pyarrow as pa

from nexus_core.analytics.event_snapshot import quote
from nexus_core.errors import QueryError, QueryRefused, QueryTimeout
from nexus_core.workbench.parameters import Bound, bound_from_json
from nexus_core.workbench.results import DISPLAY_MAX_BYTES, file_bytes

FETCH_BATCH_ROWS: Final = 8_192
RESULT_HEADROOM_BYTES: Final = 512 * 1024 * 1024  # results, conversion and Python above DuckDB
CPU_GRACE_SECONDS: Final = 5
INTERRUPTED: Final = "INTERRUPT Error"
OUT_OF_MEMORY: Final = "Out of Memory Error"
SANDBOX_THREADS: Final = 2
FRAME_HEADER: Final = struct.Struct(">I")
CONNECT_CONFIG: Final = {"temp_directory": ""}  # no spill files, and no temp dir to read
# A named cell's result, kept for the later cells of the run (in memory: temp objects are the
# only ones a read-only connection may create, and they go with the process).
MATERIALISE_SQL: Final = "CREATE OR REPLACE TEMP TABLE {name} AS\n"
NAMED_RESULT_SQL: Final = "SELECT * FROM {name}"
SESSION_SQL: Final = (
    "SET TimeZone = 'UTC'",
    "SET errors_as_json = true",
    "SET enable_progress_bar = false",  # it would write to the terminal
)
LOCKDOWN_SQL: Final = (
    "SET allowed_directories = []",
    "SET allowed_paths = [{paths}]",
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_persistent_secrets = false",
    "SET python_enable_replacements = false",
    f"SET threads = {SANDBOX_THREADS}",
    "SET max_temp_directory_size = '0KB'",
    "SET lock_configuration = true",
)
# Query nodes of a statement that only reads; anything else (DELETE_QUERY_NODE, …) is refused.
READING_NODES: Final = frozenset(
    {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
)
NODE_SUFFIX: Final = "_NODE"
READ_ONLY_REFUSAL: Final = "attached in read-only mode"
TEXT_CAST: Final = "CAST(#{position} AS VARCHAR) AS {name}"
KEEP: Final = "#{position} AS {name}"
# Result types Polars cannot take from Arrow: shown as DuckDB's text for them.
NEEDS_TEXT: Final = re.compile(r"\b(INTERVAL|UNION|BIT|BIGNUM|VARINT)\b")
# Types whose values can lie outside what Polars takes ('infinity'::TIMESTAMP): text on retry.
TEMPORAL: Final = re.compile(r"\b(TIMESTAMP|DATE|TIME)")
# Seconds since 1970 of datetime(1, 1, 1) and datetime(9999, 12, 31, 23, 59, 59); days for dates.
DATETIME_SECONDS: Final = (-62_135_596_800, 253_402_300_799)
DATE_BOUNDS: Final = (-719_162, 2_932_896)

RELATIONS: Final = "events, sessions, messages, feedback, audit_events, personas, users"
EMPTY_MESSAGE: Final = "The cell is empty; write one SELECT statement."
ONE_SELECT_MESSAGE: Final = (
    "Only one SELECT (or WITH … SELECT) statement per cell; this cell holds {what}."
)
WRITES_MESSAGE: Final = (
    "The workbench only reads: this statement holds {what}. Write one SELECT (or WITH … SELECT) "
    "that changes nothing."
)
UNCHECKABLE_MESSAGE: Final = (
    "Only one SELECT (or WITH … SELECT) statement per cell; the workbench cannot check this "
    "statement ({reason})."
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
CONVERSION_MESSAGE: Final = "The result has a column the workbench cannot show; cast it to VARCHAR."
TOO_WIDE_MESSAGE: Final = (
    "A single row of this result is larger than the {limit} the workbench shows; select fewer "
    "or shorter columns (for example left(content, 500))."
)
DOWNLOAD_TOO_LARGE_MESSAGE: Final = (
    "The full result is larger than {limit} (NEXUS_SQL_DOWNLOAD_MAX_BYTES); filter or "
    "aggregate it, or download fewer columns."
)
# Messages that name what is wrong without a position: where it occurs once, we point at it.
NAMED_IN_MESSAGE: Final = (
    re.compile(r'with name "?([\w.]+)"? does not exist'),
    re.compile(r'Referenced (?:column|table) "([^"]+)" not found'),
)
ERROR_TYPES: Final[dict[str, type[QueryError]]] = {
    cls.__name__: cls for cls in (QueryError, QueryRefused, QueryTimeout)
}


@dataclass(frozen=True)
class ProcessConfig:
    """What a query process is told at start: its snapshot file and its limits."""

    snapshot_path: str
    event_files: tuple[str, ...]
    memory_limit: str
    memory_limit_bytes: int

    def to_json(self) -> bytes:
        """The config as one JSON line, as the process reads it from its standard input."""
        data = {**self.__dict__, "event_files": list(self.event_files)}
        return json.dumps(data).encode() + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> ProcessConfig:
        """The config the parent sent."""
        data = json.loads(line)
        return cls(**{**data, "event_files": tuple(data["event_files"])})


# --- frames on the pipe -----------------------------------------------------------------------


def write_frame(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    """One message: a length-prefixed JSON header (naming the payload's size), then the payload."""
    encoded = json.dumps({**header, "payload_bytes": len(payload)}).encode()
    stream.write(FRAME_HEADER.pack(len(encoded)) + encoded)
    stream.write(payload)
    stream.flush()


def error_header(error: QueryError) -> dict[str, Any]:
    """A failure as the header the parent turns back into the same ``QueryError``."""
    kind = type(error).__name__ if type(error).__name__ in ERROR_TYPES else "QueryError"
    return {
        "ok": False,
        "error": kind,
        "message": str(error),
        "line": error.line,
        "column": error.column,
    }


def error_from_header(header: dict[str, Any]) -> QueryError:
    """The ``QueryError`` a failure header describes."""
    cls = ERROR_TYPES.get(str(header.get("error")), QueryError)
    return cls(str(header.get("message", "")), line=header.get("line"), column=header.get("column"))


# --- the process ------------------------------------------------------------------------------


def main() -> int:
    """Open the snapshot, lock down, then answer requests until the parent closes the pipe."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray output never reaches the pipe
    config = ProcessConfig.from_json(requests.readline())
    try:
        con = open_snapshot(config)
    except QueryError as exc:
        write_frame(replies, error_header(exc))
        return 1
    limit_resources(config.memory_limit_bytes + RESULT_HEADROOM_BYTES)
    write_frame(replies, {"ok": True, "ready": True})
    for line in requests:
        request = json.loads(line)
        header, payload = answer(con, config, request)
        write_frame(replies, header, payload)
    return 0


def open_snapshot(config: ProcessConfig) -> duckdb.DuckDBPyConnection:
    """The snapshot file opened read-only and locked down; the file itself is unlinked."""
    try:
        con = duckdb.connect(
            config.snapshot_path,
            read_only=True,
            config={**CONNECT_CONFIG, "memory_limit": config.memory_limit},
        )
    except duckdb.Error as exc:
        raise QueryError(f"The workbench could not open its snapshot: {exc}") from exc
    finally:
        _unlink(config.snapshot_path)
    for statement in SESSION_SQL:
        con.execute(statement)
    paths = ", ".join(quote(path) for path in config.event_files)
    for statement in LOCKDOWN_SQL:
        con.execute(statement.format(paths=paths))
    return con


def limit_resources(extra_bytes: int) -> None:
    """Cap the address space at what the process has now plus ``extra_bytes``; no file writes."""
    ceiling = address_space_bytes() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def address_space_bytes() -> int:
    """This process's virtual memory size (``VmSize``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def answer(
    con: duckdb.DuckDBPyConnection, config: ProcessConfig, request: dict[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """Run one request; every failure is a ``QueryError`` header, never a traceback."""
    timeout = float(request["timeout"])
    _limit_cpu(timeout)
    sql = str(request["sql"])
    params = {k: bound_from_json(v) for k, v in (request.get("params") or {}).items()}
    try:
        check_statement(con, sql)
        if request["op"] == "export":
            return {"ok": True}, export(con, sql, request, config, timeout, params)
        name = request.get("name")
        if name:
            started = time.perf_counter()
            materialise(con, sql, str(name), params, config, timeout)
            header, payload = run(
                con,
                NAMED_RESULT_SQL.format(name=_identifier(str(name))),
                request,
                config,
                timeout,
                {},
            )
            header["elapsed_ms"] = (time.perf_counter() - started) * 1000
            return header, payload
        return run(con, sql, request, config, timeout, params)
    except QueryError as exc:
        return error_header(exc), b""
    except MemoryError:
        return error_header(QueryError(MEMORY_MESSAGE.format(limit=config.memory_limit))), b""


def materialise(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    name: str,
    params: dict[str, Bound],
    config: ProcessConfig,
    timeout: float,
) -> None:
    """Keep a checked SELECT's whole result as a temporary table ``name`` for later cells."""
    prefix = MATERIALISE_SQL.format(name=_identifier(name))
    deadline = _Deadline(con, timeout)
    try:
        with deadline:
            con.execute(prefix + sql, params or None)
    except duckdb.Error as exc:
        raise _failure(exc, sql, config, deadline, timeout, offset=len(prefix.encode())) from exc


def run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    request: dict[str, Any],
    config: ProcessConfig,
    timeout: float,
    params: dict[str, Bound],
) -> tuple[dict[str, Any], bytes]:
    """The first rows of the result for the screen (as Arrow IPC), and how many there were."""
    keep = request.get("keep")
    started = time.perf_counter()
    frame, count, capped = _query(
        con, sql, config, timeout, keep=keep, max_bytes=DISPLAY_MAX_BYTES, params=params
    )
    if capped and frame.height == 0 and count:
        raise QueryError(TOO_WIDE_MESSAGE.format(limit=_size(DISPLAY_MAX_BYTES)))
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    elapsed_ms = (time.perf_counter() - started) * 1000
    header = {"ok": True, "row_count": count, "elapsed_ms": elapsed_ms, "byte_capped": capped}
    return header, buffer.getvalue()


def export(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    request: dict[str, Any],
    config: ProcessConfig,
    timeout: float,
    params: dict[str, Bound],
) -> bytes:
    """Every row of the result as a file (``results.FILE_FORMATS``), within its byte limit."""
    limit = int(request["max_bytes"])
    frame, _, capped = _query(con, sql, config, timeout, keep=None, max_bytes=limit, params=params)
    if capped:
        raise QueryError(DOWNLOAD_TOO_LARGE_MESSAGE.format(limit=_size(limit)))
    data = file_bytes(frame, str(request["format"]))
    if len(data) > limit:
        raise QueryError(DOWNLOAD_TOO_LARGE_MESSAGE.format(limit=_size(limit)))
    return data


def check_statement(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse all but one SELECT that only reads (``QueryRefused``; bad syntax: ``QueryError``)."""
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
    writes = sorted({node for node in statement_nodes(con, sql) if node not in READING_NODES})
    if writes:
        what = " and ".join(_node_name(node) for node in writes)
        raise QueryRefused(WRITES_MESSAGE.format(what=what))


def statement_nodes(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[str]:
    """The type of every query node in the parsed statement (``SELECT_NODE``, …)."""
    try:
        rows = con.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()
    except duckdb.Error as exc:
        raise query_error(exc, sql) from exc
    tree = parse_tree(rows[0][0] if rows else None)
    if tree.get("error"):
        reason = str(tree.get("error_message") or "it cannot be parsed as one SELECT")
        raise QueryRefused(UNCHECKABLE_MESSAGE.format(reason=reason))
    for node in tree_nodes(tree["statements"]):
        kind = node.get("type")
        if isinstance(kind, str) and kind.endswith(NODE_SUFFIX):
            yield kind


TOO_DEEP: Final = {"error": True, "error_message": "it is nested too deeply to check"}


def parse_tree(text: str | None) -> dict[str, Any]:
    """DuckDB's JSON parse tree of a statement (``json_serialize_sql``); an ``error`` tree when
    there is none or it is nested deeper than Python's decoder goes."""
    if not text:
        return {"error": True}
    try:
        tree = json.loads(text)
    except RecursionError:
        return TOO_DEEP
    return tree if isinstance(tree, dict) else {"error": True}


def tree_nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a parse tree, walked with a stack of its own (no recursion: a statement of
    a thousand nested terms must not overflow Python's)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _node_name(node: str) -> str:
    """``DELETE_QUERY_NODE`` → "a DELETE"."""
    return "a " + node.removesuffix(NODE_SUFFIX).removesuffix("_QUERY").replace("_", " ")


# --- running a query --------------------------------------------------------------------------


def _query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    config: ProcessConfig,
    timeout: float,
    *,
    keep: int | None,
    max_bytes: int,
    params: dict[str, Bound],
) -> tuple[pl.DataFrame, int, bool]:
    """The result's first rows (at most ``keep`` and ``max_bytes``), the row count, and whether
    the byte limit cut it. Temporal values Polars cannot take are retried as text."""
    for as_text in (NEEDS_TEXT, re.compile(f"{NEEDS_TEXT.pattern}|{TEMPORAL.pattern}")):
        deadline = _Deadline(con, timeout)
        try:
            with deadline:
                relation = con.sql(sql, params=params or None)
                table, count, capped = fetch(relation, keep, max_bytes, as_text)
        except (duckdb.Error, OSError) as exc:
            # Errors met while rows stream in arrive through Arrow as OSError, DuckDB's text kept.
            raise _failure(exc, sql, config, deadline, timeout) from exc
        except pa.ArrowException as exc:
            raise QueryError(f"{CONVERSION_MESSAGE} ({exc})") from exc
        try:
            frame = pl.from_arrow(table)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            continue
        assert isinstance(frame, pl.DataFrame)
        if in_python_range(frame):
            return frame, count, capped
    raise QueryError(CONVERSION_MESSAGE)


def in_python_range(frame: pl.DataFrame) -> bool:
    """Whether every date and time in ``frame`` is one Python can hold (years 1 to 9999);
    ``'infinity'::TIMESTAMP`` is not, and Polars panics when it meets one."""
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            low, high = _datetime_bounds(dtype.time_unit)
        elif dtype == pl.Date:
            low, high = DATE_BOUNDS
        else:
            continue
        physical = frame.get_column(name).to_physical()
        smallest, largest = physical.min(), physical.max()
        if smallest is not None and not (low <= smallest and largest <= high):  # type: ignore[operator]
            return False
    return True


def _datetime_bounds(unit: str) -> tuple[int, int]:
    per_second = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    if unit == "ns":  # int64 nanoseconds cannot reach years 1 or 9999
        return -(2**63) + 1, 2**63 - 1
    return DATETIME_SECONDS[0] * per_second, (DATETIME_SECONDS[1] + 1) * per_second - 1


def fetch(
    relation: duckdb.DuckDBPyRelation | None,
    keep: int | None,
    max_bytes: int,
    as_text: re.Pattern[str] = NEEDS_TEXT,
) -> tuple[pa.Table, int, bool]:
    """The relation's first ``keep`` rows (all when None) within ``max_bytes``, how many rows
    there were, and whether the byte limit cut the kept rows short.

    Rows stream in batches; those past the limits are counted and dropped. Columns whose type
    ``as_text`` matches arrive as DuckDB's text for them.
    """
    if relation is None:
        return pa.table({}), 0, False
    relation = _with_text_columns(relation, as_text)
    reader = relation.to_arrow_reader(FETCH_BATCH_ROWS)
    kept: list[pa.RecordBatch] = []
    held_rows = held_bytes = count = 0
    capped = False
    for batch in reader:
        count += batch.num_rows
        room = batch.num_rows if keep is None else max(0, keep - held_rows)
        if capped or room == 0:
            continue
        part = _fitting(batch.slice(0, room), max_bytes - held_bytes)
        capped = part.num_rows < min(room, batch.num_rows)
        if part.num_rows:
            kept.append(part)
            held_rows += part.num_rows
            held_bytes += part.nbytes
    return pa.Table.from_batches(kept, schema=reader.schema), count, capped


def _fitting(batch: pa.RecordBatch, room_bytes: int) -> pa.RecordBatch:
    """The longest head of ``batch`` whose size fits ``room_bytes``."""
    if batch.nbytes <= room_bytes:
        return batch
    low, high = 0, batch.num_rows  # low fits, high does not
    while high - low > 1:
        middle = (low + high) // 2
        if batch.slice(0, middle).nbytes <= room_bytes:
            low = middle
        else:
            high = middle
    return batch.slice(0, low)


def _with_text_columns(
    relation: duckdb.DuckDBPyRelation, as_text: re.Pattern[str]
) -> duckdb.DuckDBPyRelation:
    types = [str(kind) for kind in relation.types]
    if not any(as_text.search(kind) for kind in types):
        return relation
    columns = enumerate(zip(relation.columns, types, strict=True), start=1)
    return relation.project(
        ", ".join(
            (TEXT_CAST if as_text.search(kind) else KEEP).format(
                position=position, name=_identifier(name)
            )
            for position, (name, kind) in columns
        )
    )


def _failure(
    exc: Exception,
    sql: str,
    config: ProcessConfig,
    deadline: _Deadline,
    timeout: float,
    *,
    offset: int = 0,
) -> QueryError:
    """The error to show for a query DuckDB stopped: time limit, memory, or its message."""
    kind = _duckdb_text(exc)[0]
    if deadline.fired and (isinstance(exc, duckdb.InterruptException) or kind == INTERRUPTED):
        return QueryTimeout(TIMEOUT_MESSAGE.format(seconds=timeout))
    if isinstance(exc, duckdb.OutOfMemoryException) or kind == OUT_OF_MEMORY:
        memory = MEMORY_MESSAGE.format(limit=config.memory_limit)
        reason = _duckdb_text(exc)[1].splitlines()[0]  # the rest is advice for DuckDB's owner
        return QueryError(f"{memory}\n\n{OUT_OF_MEMORY}: {reason}")
    return query_error(exc, sql, offset=offset)


def query_error(exc: Exception, sql: str, *, offset: int = 0) -> QueryError:
    """DuckDB's error as a ``QueryError`` whose message shows where in ``sql`` it is
    (``offset``: how many bytes of SQL ran before ``sql``, for a position DuckDB counted)."""
    prefix, message, position, length = _duckdb_text(exc)
    if position is not None:
        position = position - offset if position >= offset else None
    if isinstance(exc, duckdb.PermissionException):
        return QueryRefused(f"{ACCESS_MESSAGE}\n\n{prefix}: {message}")
    if READ_ONLY_REFUSAL in message:  # a write that got past the statement check, from a string
        return QueryRefused(WRITES_MESSAGE.format(what="a change to the data"))
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


# --- small helpers ----------------------------------------------------------------------------


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _limit_cpu(timeout: float) -> None:
    """At most the time limit on every thread, and a grace, of CPU time for the next query."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    budget = int(spent + timeout * SANDBOX_THREADS + CPU_GRACE_SECONDS)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        budget = min(budget, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (budget, hard))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _size(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / 1024 / 1024:,.0f} MB"
    return f"{limit / 1024:,.0f} KB"


if __name__ == "__main__":
    sys.exit(main())
