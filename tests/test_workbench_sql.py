"""The workbench's query engine: typed relations over a snapshot, the sandbox, limits and errors.

Every database test runs on SQLite and (with NEXUS_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, insert, select

from nexus_core.analytics.log_store import CACHE_DIR_NAME, EventStore
from nexus_core.app_context import AppContext
from nexus_core.compare.checks import TestCase
from nexus_core.db.engine import Database
from nexus_core.db.models import User
from nexus_core.errors import (
    ConfigError,
    DatabaseUnavailable,
    QueryError,
    QueryRefused,
    QueryTimeout,
)
from nexus_core.ops.events import ApiEventLogger, log_files
from nexus_core.workbench.data import read_only_snapshot, view_schemas
from nexus_core.workbench.notebooks import NotebookService
from nexus_core.workbench.results import DISPLAY_LIMIT
from nexus_core.workbench.sandbox import Workbench, WorkbenchSession

SHORT_LIMIT_SECONDS = 1.0
ROTATE_BYTES = 3_000  # a rotation every dozen events or so
START = datetime(2026, 11, 27, 9, 0, 0)
QUESTION = '=HYPERLINK("http://x") what is our SLO?'


class StepClock:
    """A clock for the logger that moves forward by seven seconds on every call."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now


def emit_requests(logger: ApiEventLogger, count: int) -> None:
    for n in range(count):
        logger.emit("request_start", request_id=f"r{n}", attempt=1, model="m", provider="p")
        logger.emit("request_success", request_id=f"r{n}", attempt=1, latency_ms=100.0 + n)


@pytest.fixture
def app(ctx: AppContext) -> AppContext:
    """A fresh install: schema, default personas, an admin, one renamed chat with a message."""
    ctx.init()
    admin = ctx.users.get("admin")
    chat = ctx.chat.create_session(admin, ctx.personas.list()[0].name)
    ctx.chat.add_user_message(chat.public_id, admin, QUESTION)
    ctx.chat.rename(chat.public_id, admin, "Private title")
    return ctx


@pytest.fixture
def store(app: AppContext) -> Iterator[EventStore]:
    """History in three shapes: compacted Parquet files, frozen live stretches, hot live rows."""
    logger = ApiEventLogger(app.settings.event_log_path, max_bytes=ROTATE_BYTES, clock=StepClock())
    emit_requests(logger, 40)
    cache = app.settings.data_dir / CACHE_DIR_NAME
    with EventStore(app.settings.event_log_path, cache, segment_rows=2) as event_store:
        event_store.refresh()  # the live rows so far become frozen stretches
        logger.emit("job_start", job_id="late")  # one hot row
        logger.close()
        yield event_store


@pytest.fixture
def workbench(app: AppContext, store: EventStore) -> Workbench:
    return Workbench(app.settings, app.db, events=store)


@pytest.fixture
def session(workbench: Workbench) -> Iterator[WorkbenchSession]:
    with workbench.open(include_message_content=False) as opened:
        yield opened


def column_types(session: WorkbenchSession, relation: str) -> dict[str, str]:
    described = session.run(f"DESCRIBE {relation}").frame
    return dict(zip(described["column_name"], described["column_type"], strict=True))


# --- the relations --------------------------------------------------------------------------


def test_events_read_compacted_history_and_the_live_log_as_one_typed_relation(
    session: WorkbenchSession, store: EventStore, app: AppContext
) -> None:
    assert len(log_files(app.settings.event_log_path)) > 2  # rotated files plus the live one
    snapshot = store.refresh()
    live = {piece.key.startswith("live-") for piece in snapshot.pieces}
    assert live == {True, False}  # compacted files and the live file's frozen stretches
    assert snapshot.hot_rows == 1
    result = session.run("SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY event")
    assert result.frame.rows() == [("job_start", 1), ("request_start", 40), ("request_success", 40)]
    first = session.run("SELECT min(ts) AS first, max(latency_ms) AS slowest FROM events").frame
    assert first["first"].dtype == pl.Datetime("us")
    assert first.row(0) == (START + timedelta(seconds=7), 139.0)


def test_every_relation_has_the_documented_columns_and_types(session: WorkbenchSession) -> None:
    for relation, columns in view_schemas(include_message_content=False).items():
        assert column_types(session, relation) == columns, relation
    events = column_types(session, "events")
    assert events["ts"] == "TIMESTAMP" and events["latency_ms"] == "DOUBLE"
    assert column_types(session, "sessions")["created_at"] == "TIMESTAMP"
    assert column_types(session, "users")["features"] == "JSON"
    assert column_types(session, "messages")["session_id"] == "BIGINT"


def test_database_rows_arrive_with_times_in_utc_and_json_queryable(
    session: WorkbenchSession, app: AppContext
) -> None:
    frame = session.run("SELECT username, created_at FROM users").frame
    with app.db.session() as db_session:
        stored = db_session.scalar(select(User.created_at).where(User.username == "admin"))
    assert stored is not None and stored.tzinfo is not None
    assert frame["created_at"].dtype == pl.Datetime("us")  # naive UTC, like events.ts
    assert frame.row(0) == ("admin", stored.astimezone(UTC).replace(tzinfo=None))
    created = session.run(
        "SELECT details->>'persona' AS persona FROM audit_events WHERE action = 'session.created'"
    )
    assert created.frame["persona"].to_list() == [app.personas.list()[0].name]


def test_users_relation_has_no_password_hash_or_sign_in_internals(
    workbench: Workbench,
) -> None:
    for admin in (False, True):
        with workbench.open(include_message_content=admin) as opened:
            columns = set(column_types(opened, "users"))
            assert columns.isdisjoint(
                {
                    "password_hash",
                    "cookies_valid_after",
                    "failed_logins",
                    "locked_until",
                    "must_change_password",
                }
            )
            assert {"username", "role", "email", "features"} <= columns


def test_message_content_and_session_titles_are_for_admins_only(workbench: Workbench) -> None:
    with workbench.open(include_message_content=False) as analyst:
        assert "content" not in column_types(analyst, "messages")
        assert "title" not in column_types(analyst, "sessions")
        with pytest.raises(QueryError, match='Referenced column "content" not found'):
            analyst.run("SELECT content FROM messages")
        lengths = analyst.run("SELECT content_chars FROM messages").frame
        assert lengths["content_chars"].to_list() == [len(QUESTION)]
        renamed = analyst.run(
            "SELECT details::VARCHAR AS d FROM audit_events WHERE action = 'session.renamed'"
        )
        assert "Private title" not in renamed.frame["d"][0]
    admin = workbench.run(
        "SELECT m.content, s.title, a.details->>'to' AS renamed_to FROM messages m "
        "JOIN sessions s ON s.id = m.session_id "
        "JOIN audit_events a ON a.target_id = s.public_id AND a.action = 'session.renamed'",
        include_message_content=True,
    )
    assert admin.frame.row(0) == (QUESTION, "Private title", "Private title")


def test_notebook_titles_and_test_set_names_in_audit_details_are_for_admins_only(
    app: AppContext, store: EventStore
) -> None:
    admin = app.users.get("admin")
    NotebookService(app.db).create(admin, "Secret launch metrics", [])
    app.test_sets.create(admin, "Acquisition prompts", [TestCase("Hello")])
    sql = (
        "SELECT action, details::VARCHAR AS d FROM audit_events "
        "WHERE action IN ('notebook.created', 'test_set.created') ORDER BY action"
    )
    workbench = Workbench(app.settings, app.db, events=store)
    analyst = workbench.run(sql, include_message_content=False).frame
    assert analyst["action"].to_list() == ["notebook.created", "test_set.created"]
    hidden = " ".join(analyst["d"].to_list())
    assert "Secret launch" not in hidden and "Acquisition" not in hidden
    assert '"cases": 1' in hidden or '"cases":1' in hidden  # the rest of the details stay
    shown = " ".join(workbench.run(sql, include_message_content=True).frame["d"].to_list())
    assert "Secret launch metrics" in shown and "Acquisition prompts" in shown


def test_tables_are_read_in_one_read_only_snapshot_that_never_waits_for_a_writer(
    workbench: Workbench, db: Database
) -> None:
    with db.engine.connect() as writer:
        pending = writer.begin()
        writer.execute(insert(User).values(username="pending", display_name="P", password_hash="x"))
        started = time.monotonic()
        result = workbench.run("SELECT count(*) AS n FROM users", include_message_content=False)
        assert time.monotonic() - started < 3  # a write lock would make it wait 5 s, then fail
        assert result.frame["n"].to_list() == [1]  # the uncommitted user is not in the snapshot
        pending.rollback()
    with db.session() as check:
        assert check.scalar(select(func.count()).select_from(User)) == 1


# --- the sandbox ----------------------------------------------------------------------------

LOCKED_DOWN = {
    "allowed_directories": "[]",
    "enable_external_access": "false",
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
    "allow_community_extensions": "false",
    "allow_persistent_secrets": "false",
    "python_enable_replacements": "false",
    "threads": "2",
    "temp_directory": "",
    "lock_configuration": "true",
}
ESCAPES = {
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_text": "SELECT * FROM read_text('/etc/passwd')",
    "read_blob": "SELECT * FROM read_blob('/etc/hostname')",
    "glob": "SELECT * FROM glob('/*')",
    "url": "SELECT * FROM read_parquet('https://example.com/data.parquet')",
    "copy": "COPY (SELECT * FROM users) TO '{tmp}/stolen.csv'",
    "export": "EXPORT DATABASE '{tmp}/exported'",
    "attach": "ATTACH '{tmp}/attached.duckdb' AS other",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "set": "SET enable_external_access = true",
    "pragma": "PRAGMA threads = 64",
    "reset": "RESET memory_limit",
    "getenv": "SELECT getenv('HOME') AS home",
    "create": "CREATE TABLE loot AS SELECT * FROM users",
    "insert": "INSERT INTO users (id, username) VALUES (99, 'mallory')",
    "drop": "DROP TABLE users",
    "update": "UPDATE users SET role = 'admin'",
    "two statements": "SELECT 1; DROP TABLE users",
    "call": "CALL pragma_version()",
}


def test_escape_attempts_are_refused_with_a_clear_message_and_touch_nothing(
    session: WorkbenchSession, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    before = session.run("SELECT count(*) AS users, min(role) AS role FROM users").frame
    for name, attempt in ESCAPES.items():
        with pytest.raises(QueryError) as refused:
            session.run(attempt.format(tmp=outside))
        message = str(refused.value)
        assert "Traceback" not in message, name
        if name == "getenv":  # not even there: this DuckDB has no environment function
            assert "Scalar Function with name getenv does not exist" in message
            continue
        assert isinstance(refused.value, QueryRefused), f"{name}: {message}"
        assert (
            "Only one SELECT (or WITH … SELECT) statement per cell" in message
            or "files, URLs, extensions and settings are off limits" in message
        ), f"{name}: {message}"
    assert list(outside.iterdir()) == []  # nothing copied, exported or attached
    after = session.run("SELECT count(*) AS users, min(role) AS role FROM users").frame
    assert after.equals(before)
    assert session.run("SELECT current_setting('threads') AS t").frame["t"][0] == 2


def test_the_sandbox_is_locked_down_and_may_open_only_the_compacted_event_files(
    session: WorkbenchSession, app: AppContext
) -> None:
    settings = dict(session.run("SELECT name, value FROM duckdb_settings()").frame.rows())
    assert {name: settings[name] for name in LOCKED_DOWN} == LOCKED_DOWN
    paths = session.run("SELECT unnest(current_setting('allowed_paths')) AS path").frame["path"]
    cache = (app.settings.data_dir / CACHE_DIR_NAME).resolve()
    assert paths.len() > 0
    parquet = [p for p in paths if Path(p).parent == cache and p.endswith(".parquet")]
    # DuckDB also allows its own database file (and WAL names): the snapshot, already deleted.
    own = [p for p in paths if p not in parquet]
    assert parquet and all(Path(p).name.startswith("snapshot.duckdb") for p in own)
    assert not any(Path(p).exists() for p in own)
    first = session.run(f"SELECT count(*) AS n FROM read_parquet('{parquet[0]}')").frame["n"][0]
    assert first > 0  # exactly what ``events`` reads, nothing more


def test_refusals_name_what_the_cell_holds(session: WorkbenchSession) -> None:
    with pytest.raises(QueryRefused, match="this cell holds 2 statements"):
        session.run("SELECT 1; SELECT 2")
    with pytest.raises(QueryRefused, match="this cell holds a COPY statement"):
        session.run("COPY users TO 'users.csv'")
    with pytest.raises(QueryRefused, match="The cell is empty"):
        session.run("  -- nothing but a comment\n")


def test_files_of_the_app_cannot_be_read_by_path(
    session: WorkbenchSession, app: AppContext
) -> None:
    data_dir = app.settings.data_dir.resolve()
    targets = [*log_files(app.settings.event_log_path), data_dir / CACHE_DIR_NAME / "manifest.json"]
    database = app.db.engine.url.database
    if app.db.dialect == "sqlite" and database:
        targets.append(Path(database))
    for target in targets:
        assert target.is_file(), target
        for reader in ("read_text", "read_blob", "read_csv", "read_json"):
            with pytest.raises(QueryRefused, match="off limits"):
                session.run(f"SELECT * FROM {reader}('{target.resolve()}')")
    with pytest.raises(QueryRefused, match="off limits"):
        session.run(f"SELECT * FROM glob('{data_dir}/**')")


def test_a_query_cannot_see_python_variables_of_the_caller(session: WorkbenchSession) -> None:
    secret_frame = pl.DataFrame({"password": ["hunter2"]})
    assert secret_frame.height == 1
    with pytest.raises(QueryError, match="secret_frame does not exist"):
        session.run("SELECT * FROM secret_frame")


@pytest.mark.parametrize(
    ("runaway", "keep"),
    [
        ("SELECT count(*) FROM range(1000000000000)", None),
        ("SELECT count(*) FROM range(1000000) AS a CROSS JOIN range(1000000) AS b", None),
        # rows streaming in for the screen: counted past the display limit until stopped
        ("SELECT range AS n FROM range(1000000000000)", DISPLAY_LIMIT),
    ],
)
def test_a_runaway_query_is_stopped_within_the_time_limit(
    runaway: str, keep: int | None, app: AppContext, store: EventStore
) -> None:
    settings = dataclasses.replace(app.settings, sql_timeout_seconds=SHORT_LIMIT_SECONDS)
    with Workbench(settings, app.db, events=store).open(include_message_content=False) as quick:
        started = time.monotonic()
        with pytest.raises(QueryTimeout) as stopped:
            quick.run(runaway, keep=keep)
        assert time.monotonic() - started < SHORT_LIMIT_SECONDS + 1
        assert str(stopped.value) == (
            "The query ran longer than 1 s and was stopped. Narrow it down (a WHERE on ts, "
            "a LIMIT) and run it again."
        )
        assert quick.run("SELECT 42 AS answer").frame["answer"].to_list() == [42]


def test_memory_and_time_settings_that_cannot_work_say_which_setting(
    app: AppContext, store: EventStore
) -> None:
    with pytest.raises(ConfigError, match="NEXUS_SQL_TIMEOUT_SECONDS"):
        Workbench(dataclasses.replace(app.settings, sql_timeout_seconds=0), app.db, store)
    lots = dataclasses.replace(app.settings, sql_memory_limit="lots")
    with pytest.raises(ConfigError, match="NEXUS_SQL_MEMORY_LIMIT must be a DuckDB memory size"):
        Workbench(lots, app.db, store).open(include_message_content=False)
    tiny = dataclasses.replace(app.settings, sql_memory_limit="64KB")
    with pytest.raises(QueryError, match=r"does not fit .* raise NEXUS_SQL_MEMORY_LIMIT"):
        Workbench(tiny, app.db, store).open(include_message_content=False)


def test_a_query_that_needs_too_much_memory_says_which_setting(
    app: AppContext, store: EventStore
) -> None:
    small = dataclasses.replace(app.settings, sql_memory_limit="16MB")
    with Workbench(small, app.db, events=store).open(include_message_content=False) as tight:
        with pytest.raises(QueryError, match=r"more memory than the workbench has \(16MB"):
            tight.run("SELECT range % 1000000 AS k, list(range) FROM range(10000000) GROUP BY k")
        assert tight.run("SELECT count(*) AS n FROM users").frame["n"][0] == 1


# --- results and errors ---------------------------------------------------------------------


def test_the_display_is_limited_and_the_full_result_downloads(session: WorkbenchSession) -> None:
    rows = DISPLAY_LIMIT + 2_500
    result = session.run(
        f"SELECT range AS n, '=1+1' AS formula FROM range({rows})", keep=DISPLAY_LIMIT
    )
    assert (result.row_count, result.display.height, result.truncated) == (
        rows,
        DISPLAY_LIMIT,
        True,
    )
    assert result.frame.height == DISPLAY_LIMIT  # what the page keeps between reruns
    assert result.frame["n"].to_list() == list(range(DISPLAY_LIMIT))
    with pytest.raises(QueryError, match="Only the first rows of this result were kept"):
        dataclasses.replace(result, export=None).to_csv()  # never a cut-off file as the full one
    csv = result.to_csv()
    assert csv.startswith(b"\xef\xbb\xbfn,formula\n0,'=1+1\n")  # BOM; formulas neutralised
    assert len(csv.splitlines()) == rows + 1
    parquet = pl.read_parquet(io.BytesIO(result.to_parquet()))
    assert parquet.height == rows and parquet["formula"][0] == "=1+1"
    small = session.run("SELECT 1 AS n", keep=DISPLAY_LIMIT)
    assert (small.row_count, small.truncated, small.frame.rows()) == (1, False, [(1,)])
    empty = session.run("SELECT 1 AS n WHERE false", keep=DISPLAY_LIMIT)
    assert (empty.row_count, empty.frame.columns) == (0, ["n"])


def test_results_of_any_type_can_be_shown_and_downloaded(session: WorkbenchSession) -> None:
    result = session.run(
        "SELECT max(ts) - min(ts) AS span, [1, 2] AS list, {'a': 1} AS struct, "
        "'\\x01'::BLOB AS blob, 1::HUGEINT AS huge, NULL AS nothing FROM events"
    )
    assert result.frame["span"].dtype == pl.String  # an INTERVAL, as DuckDB writes it
    assert result.frame["span"][0] == "00:09:20"
    assert b'00:09:20,"[1, 2]","{""a"": 1}",01,1,\n' in result.to_csv()
    assert pl.read_parquet(io.BytesIO(result.to_parquet()))["list"].to_list() == [[1, 2]]


def test_errors_carry_duckdbs_message_and_where_it_is(session: WorkbenchSession) -> None:
    with pytest.raises(QueryError) as syntax:
        session.run("SELECT event,\n       count(*\nFROM events")
    assert str(syntax.value).startswith('Parser Error: syntax error at or near "FROM"')
    assert "LINE 3: FROM events\n        ^" in str(syntax.value)
    assert (syntax.value.line, syntax.value.column) == (3, 1)
    assert syntax.value.summary == (
        'Parser Error: syntax error at or near "FROM" (line 3, column 1)'
    )
    with pytest.raises(QueryError) as missing:
        session.run("SELECT ts, latency FROM events")
    assert str(missing.value).startswith('Binder Error: Referenced column "latency" not found')
    assert "LINE 1: SELECT ts, latency FROM events\n                   ^^^^^^^" in str(
        missing.value
    )
    with pytest.raises(QueryError) as conversion:
        session.run("SELECT 'é' AS letter, 'x'::INTEGER AS n")
    assert (conversion.value.line, conversion.value.column) == (1, 26)  # characters, not bytes
    assert str(conversion.value).endswith(
        "LINE 1: SELECT 'é' AS letter, 'x'::INTEGER AS n\n" + " " * (8 + 25) + "^" * 9
    )
    with pytest.raises(QueryError, match="Table with name sesions does not exist"):
        session.run("SELECT * FROM sesions")


def test_an_error_met_while_rows_stream_in_is_duckdbs_message(session: WorkbenchSession) -> None:
    late = (
        "SELECT CAST(CASE WHEN range < 50000 THEN '1' ELSE 'x' END AS INTEGER) AS n "
        "FROM range(100000)"
    )
    with pytest.raises(QueryError) as streamed:
        session.run(late, keep=DISPLAY_LIMIT)
    assert not isinstance(streamed.value, QueryTimeout)
    assert str(streamed.value).startswith("Conversion Error: Could not convert string 'x'")


def test_a_workbench_snapshot_leaves_its_pooled_connection_to_the_databases_own_read_only_rule(
    database_url: str, read_only_url: Callable[[Database], str]
) -> None:
    """On PostgreSQL the snapshot's read-only transaction is said inside the transaction: a
    connection option would come back from the pool reset explicitly to read-write, and so let
    writes through to a database made read-only."""
    setup = Database(database_url)
    url = read_only_url(setup)
    setup.dispose()
    db = Database(url, pool_size=1, max_overflow=0)  # one connection: the snapshot's, reused
    try:
        with read_only_snapshot(db) as conn:
            assert conn.execute(select(func.count()).select_from(User)).scalar() is not None
        with pytest.raises(DatabaseUnavailable), db.session() as session:
            session.execute(insert(User).values(username="sneaky", password_hash="x"))
    finally:
        db.dispose()
