"""The workbench's query process under hostile SQL: the app's memory and time are never at stake.

Each query runs in a process of its own over a read-only snapshot; these tests throw the worst
queries we could think of at it — allocations DuckDB's memory limit does not cover, single
function calls its interrupt never sees, writes hidden inside a SELECT or run from a string,
values Polars cannot convert, results too large to keep — and check that each ends as a clear
``QueryError`` while this process stays small and the data stays as it was.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_core.app_context import AppContext
from nexus_core.errors import ConfigError, QueryError, QueryRefused, QueryTimeout
from nexus_core.settings import Settings
from nexus_core.workbench.results import DISPLAY_LIMIT, DISPLAY_MAX_BYTES
from nexus_core.workbench.sandbox import Workbench, WorkbenchSession, memory_bytes

SHORT_LIMIT_SECONDS = 1.0
# Killing, reporting and (for the next query) a fresh process: well inside this on a busy machine;
# the unguarded engine ran such queries for 25 s and more.
STOP_ALLOWANCE_SECONDS = 4.0
# What this process may grow by while a query runs elsewhere (the result frames themselves).
APP_GROWTH_LIMIT_BYTES = 200 * 1024 * 1024
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

# Each allocates far past a 256 MB limit in a way DuckDB's buffer manager does not see, or
# spends its time inside one function call that DuckDB's interrupt is not checked in.
MEMORY_HOGS = {
    "a 2 GB string": "SELECT length(repeat('x', 2000000000)) AS n",
    "a string of strings": "SELECT length(repeat(repeat('x', 100000000), 30)) AS n",
    "a 300 M element list": "SELECT len(list(range(300000000))) AS n",
    "a sorted list": "SELECT len(list_sort(range(200000000))) AS n",
    "an aggregate of big strings": (
        "SELECT length(string_agg(repeat('x', 1000000), '')) AS n FROM range(3000)"
    ),
    "a sort with nowhere to spill": "SELECT * FROM range(300000000) ORDER BY random()",
    "a hash table of distinct values": "SELECT count(DISTINCT range) AS n FROM range(300000000)",
}
ONE_LONG_CALL = {
    "edit distance of two long strings": (
        "SELECT levenshtein(repeat('a', 200000), repeat('b', 200000)) AS d"
    ),
    "a lambda over 20 M elements": (
        "SELECT list_reduce(range(20000000), lambda a, b: a + b) AS total"
    ),
    "a scan of 10^11 rows": "SELECT count(*) AS n FROM range(100000000000)",
}
# Data-changing statements inside one SELECT, in every position we could think of.
HIDDEN_WRITES = {
    "DELETE in a CTE": "WITH d AS (DELETE FROM users RETURNING *) SELECT count(*) AS n FROM d",
    "INSERT in a CTE": (
        "WITH i AS (INSERT INTO users (id, username) VALUES (99, 'mallory') RETURNING id) "
        "SELECT * FROM i"
    ),
    "UPDATE in a CTE": "WITH u AS (UPDATE users SET role = 'admin' RETURNING id) SELECT * FROM u",
    "a CTE inside a subquery": (
        "SELECT * FROM (WITH d AS (DELETE FROM personas RETURNING id) SELECT * FROM d) AS x"
    ),
    "a CTE in a UNION branch": (
        "SELECT 1 AS n UNION ALL "
        "(WITH d AS (DELETE FROM users RETURNING id) SELECT count(*) FROM d)"
    ),
    "a CTE after a harmless one": (
        "WITH a AS (SELECT 1 AS n), d AS (DELETE FROM users RETURNING id) SELECT * FROM a, d"
    ),
    "a write in IN (…)": (
        "SELECT * FROM users WHERE id IN "
        "(WITH x AS (DELETE FROM users RETURNING id) SELECT id FROM x)"
    ),
}
# Writes that reach DuckDB as a string, past any statement check: the snapshot is read-only.
WRITES_FROM_STRINGS = {
    "serialized SQL": (
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql("
        "'WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d'))"
    ),
    "query()": "SELECT * FROM query('WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d')",
}
UNCHANGED = "SELECT (SELECT count(*) FROM users) AS users, (SELECT min(role) FROM users) AS role, "
UNCHANGED += "(SELECT count(*) FROM personas) AS personas"


@pytest.fixture
def app(ctx: AppContext) -> AppContext:
    ctx.init()
    return ctx


def limited(app: AppContext, **changes: object) -> Workbench:
    return Workbench(dataclasses.replace(app.settings, **changes), app.db)


@pytest.fixture
def session(app: AppContext) -> Iterator[WorkbenchSession]:
    with limited(app).open(include_message_content=True) as opened:
        yield opened


class PeakMemory:
    """This process's largest resident size while the block runs, sampled every few ms."""

    def __init__(self) -> None:
        self.peak = self.start = _rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


@pytest.mark.parametrize("query", MEMORY_HOGS.values(), ids=MEMORY_HOGS.keys())
def test_a_query_that_allocates_past_the_limit_ends_without_taking_the_apps_memory(
    app: AppContext, query: str
) -> None:
    workbench = limited(app, sql_memory_limit="256MB", sql_timeout_seconds=5.0)
    with workbench.open(include_message_content=False) as tight, PeakMemory() as memory:
        with pytest.raises(QueryError) as stopped:
            tight.run(query, keep=DISPLAY_LIMIT)
        message = str(stopped.value)
        assert "NEXUS_SQL_MEMORY_LIMIT" in message or isinstance(stopped.value, QueryTimeout)
        assert "Traceback" not in message
        # The next query works (on a fresh process when that one had to go).
        assert tight.run("SELECT count(*) AS n FROM users").frame["n"].to_list() == [1]
    assert memory.growth < APP_GROWTH_LIMIT_BYTES, f"grew {memory.growth >> 20} MB"


@pytest.mark.parametrize("query", ONE_LONG_CALL.values(), ids=ONE_LONG_CALL.keys())
def test_a_query_busy_inside_one_call_is_stopped_at_the_time_limit(
    app: AppContext, query: str
) -> None:
    workbench = limited(app, sql_timeout_seconds=SHORT_LIMIT_SECONDS)
    with workbench.open(include_message_content=False) as quick:
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match="ran longer than 1 s and was stopped"):
            quick.run(query)
        assert time.monotonic() - started < SHORT_LIMIT_SECONDS + STOP_ALLOWANCE_SECONDS
        assert quick.run("SELECT 42 AS answer").frame["answer"].to_list() == [42]


@pytest.mark.parametrize("query", HIDDEN_WRITES.values(), ids=HIDDEN_WRITES.keys())
def test_a_write_hidden_inside_a_select_is_refused_and_changes_nothing(
    session: WorkbenchSession, query: str
) -> None:
    before = session.run(UNCHANGED).frame
    with pytest.raises(QueryRefused, match="The workbench only reads: this statement holds a"):
        session.run(query)
    assert session.run(UNCHANGED).frame.equals(before)


@pytest.mark.parametrize("query", WRITES_FROM_STRINGS.values(), ids=WRITES_FROM_STRINGS.keys())
def test_a_write_run_from_a_string_meets_a_read_only_snapshot(
    session: WorkbenchSession, query: str
) -> None:
    before = session.run(UNCHANGED).frame
    with pytest.raises(QueryError):  # DuckDB's own refusal, or the read-only snapshot's
        session.run(query)
    assert session.run(UNCHANGED).frame.equals(before)


def test_reading_statements_of_every_shape_still_run(session: WorkbenchSession) -> None:
    queries = {
        "WITH a AS (SELECT 1 AS n) SELECT n FROM a": [(1,)],
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) "
        "SELECT count(*) FROM t": [(3,)],
        "SELECT 1 AS n UNION SELECT 2 ORDER BY n": [(1,), (2,)],
        "FROM (VALUES (1), (2)) AS v(n) SELECT sum(n)": [(3,)],
        "SELECT count(*) FROM users WHERE id IN (SELECT id FROM users)": [(1,)],
    }
    for query, rows in queries.items():
        assert session.run(query).frame.rows() == rows, query
    assert session.run("DESCRIBE users").row_count > 0
    assert session.run("SUMMARIZE personas").row_count > 0


def test_dates_and_times_python_cannot_hold_are_shown_as_duckdbs_text(
    session: WorkbenchSession,
) -> None:
    result = session.run(
        "SELECT 'infinity'::TIMESTAMP AS t, '-infinity'::DATE AS d, "
        "'infinity'::TIMESTAMPTZ AS tz, TIMESTAMP '2026-12-03 10:00' AS fine"
    )
    row = result.frame.row(0, named=True)
    assert (row["t"], row["d"], row["tz"]) == ("infinity", "-infinity", "infinity")
    assert str(row["fine"]).startswith("2026-12-03 10:00")
    assert b"infinity" in result.to_csv() and b"-infinity" in result.to_parquet()
    ordinary = session.run("SELECT TIMESTAMP '2026-12-03 10:00' AS fine").frame
    assert ordinary["fine"].dtype.is_temporal()  # only a result that needs it becomes text


def test_rows_kept_for_the_screen_stop_at_the_byte_limit(session: WorkbenchSession) -> None:
    third = DISPLAY_MAX_BYTES // 3 + 1
    result = session.run(f"SELECT repeat('x', {third}) AS big FROM range(5)", keep=DISPLAY_LIMIT)
    assert (result.row_count, result.frame.height, result.truncated) == (5, 2, True)
    with pytest.raises(QueryError, match="A single row of this result is larger than the 16 MB"):
        session.run(f"SELECT repeat('x', {DISPLAY_MAX_BYTES + 1}) AS huge", keep=DISPLAY_LIMIT)


def test_a_download_past_its_byte_limit_is_refused_naming_the_setting(app: AppContext) -> None:
    workbench = limited(app, sql_download_max_bytes=50_000)
    result = workbench.run(
        "SELECT range AS n FROM range(20000)", include_message_content=False, keep=10
    )
    with pytest.raises(QueryError, match="larger than 49 KB \\(NEXUS_SQL_DOWNLOAD_MAX_BYTES\\)"):
        result.to_csv()
    small = workbench.run(
        "SELECT range AS n FROM range(20)", include_message_content=False, keep=10
    )
    assert small.to_csv().count(b"\n") == 21  # all 20 rows, run again, within the limit


def test_the_query_process_holds_no_secrets_and_leaves_no_snapshot_on_disk(
    app: AppContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-secret-key-in-the-app-environment")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:db-password@host/db")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    with limited(app).open(include_message_content=False) as session:
        process = session._running()
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        assert b"secret-key" not in environ and b"db-password" not in environ
        assert session.run("SELECT count(*) AS n FROM users").frame["n"].to_list() == [1]
        assert list(temporary.iterdir()) == []  # the snapshot file went when it was opened


def test_memory_sizes_are_read_as_duckdb_reads_them() -> None:
    assert memory_bytes("512MB") == 512_000_000
    assert memory_bytes("2 GiB") == 2 * 1024**3
    assert memory_bytes("64KB") == 64_000
    for wrong in ("lots", "512", "-1GB", "1PB"):
        with pytest.raises(ConfigError, match="NEXUS_SQL_MEMORY_LIMIT must be a DuckDB memory"):
            memory_bytes(wrong)
    with pytest.raises(ConfigError, match="NEXUS_SQL_DOWNLOAD_MAX_BYTES must be above 0"):
        Workbench(Settings(sql_download_max_bytes=0), None)  # type: ignore[arg-type]


def test_csv_downloads_neutralise_enum_cells_and_headers_a_query_names(
    session: WorkbenchSession,
) -> None:
    result = session.run(
        "SELECT CAST('=cmd|calc' AS ENUM('=cmd|calc', 'ok')) AS \"=HYPERLINK(1)\", "
        "'@SUM(A1)'::VARCHAR AS text, -1 AS n, ['=x'] AS list FROM range(3)",
        keep=2,  # the file is built in the query process, from a fresh run
    )
    text = result.to_csv().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["'=HYPERLINK(1)", "text", "n", "list"]
    assert rows[1:] == [["'=cmd|calc", "'@SUM(A1)", "-1", '["=x"]']] * 3
