"""What the workbench's SQL sees: the app's data, copied into a fresh DuckDB as typed relations.

One run of the workbench reads a *snapshot*:

- the database tables through one read-only transaction, whatever the database — PostgreSQL
  ``REPEATABLE READ READ ONLY``; SQLite a deferred ``BEGIN`` on a ``query_only`` connection of
  its own (the app's engine starts every transaction with ``BEGIN IMMEDIATE``, which would hold
  the write lock while we read) — so every table shows the same moment;
- the event log as of one ``EventStore.refresh()``: the compacted Parquet files are read in place
  (the sandbox may open exactly those files and nothing else), the live rows are copied out of
  the store's own DuckDB connection.

The relations, every time a naive UTC ``TIMESTAMP``:

``events``        every log field (``EVENT_COLUMNS``), ``ts`` a TIMESTAMP, and ``traffic``
                  ('user', or 'synthetic' for comparisons, test sets and evaluations)
``sessions``      chat sessions with their persona's name; ``title`` for admins only (it is the
                  first line of the first message); ``run_id`` set: a comparison's or test
                  set's hidden session, with its provider / model / temperature overrides
``messages``      replies, user messages and error bubbles with latency and tokens;
                  ``content`` for admins only, ``content_chars`` for everyone
``feedback``      reports and thumbs, with their JSON ``context``
``audit_events``  the audit trail; ``details`` is JSON (session and notebook titles and test-set
                  names in it for admins only)
``personas``      personas as they are now
``users``         accounts without password hashes, cookie or lock-out internals
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Float,
    Integer,
    Select,
    String,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeEngine

from nexus_core.analytics.event_snapshot import (
    EVENT_COLUMNS,
    SYNTHETIC_SQL,
    events_relation,
    quote,
)
from nexus_core.analytics.log_store import EventStore
from nexus_core.db.columns import UTCDateTime
from nexus_core.db.engine import SQLITE_BUSY_TIMEOUT_MS, Database
from nexus_core.db.models import AuditEvent, ChatSession, Feedback, Message, Persona, User
from nexus_core.workbench.redaction import public_audit_details

# Database column type -> DuckDB type (first match wins: UTCDateTime before DateTime, ...).
DUCKDB_TYPES: Final[tuple[tuple[type[TypeEngine[Any]], str], ...]] = (
    (UTCDateTime, "TIMESTAMP"),
    (JSON, "JSON"),
    (Boolean, "BOOLEAN"),
    (Integer, "BIGINT"),
    (Float, "DOUBLE"),
    (String, "VARCHAR"),
)
# DuckDB type -> the Arrow type its values travel in.
ARROW_TYPES: Final[dict[str, pa.DataType]] = {
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
}
SQLITE_READER_PRAGMAS: Final = (
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA query_only=ON",
)
SQLITE_DEFERRED_BEGIN: Final = "BEGIN"  # a read transaction: a consistent WAL snapshot, no lock
INTERNAL_SCHEMA: Final = "nexus_internal"
LIVE_EVENTS_TABLE: Final = f"{INTERNAL_SCHEMA}.live_events"
LOAD_NAME: Final = "nexus_load"
EVENT_TYPES: Final[dict[str, str]] = {
    name: "TIMESTAMP" if name == "ts" else kind for name, kind in EVENT_COLUMNS.items()
}
_EVENT_SELECT: Final = ", ".join(EVENT_TYPES)

CREATE_SCHEMA_SQL: Final = f"CREATE SCHEMA {INTERNAL_SCHEMA}"
CREATE_TABLE_SQL: Final = "CREATE TABLE {name} ({columns})"
INSERT_LOADED_SQL: Final = f"INSERT INTO {{name}} SELECT * FROM {LOAD_NAME}"
PARQUET_EVENTS_SQL: Final = "SELECT {columns} FROM read_parquet([{files}])"
LIVE_EVENTS_SQL: Final = f"SELECT {_EVENT_SELECT} FROM {LIVE_EVENTS_TABLE}"
# ``traffic`` marks each event: 'synthetic' for jobs no user waits for (comparisons, test sets,
# evaluations), 'user' for the rest — what the dashboard's SLOs count by default.
CREATE_EVENTS_VIEW_SQL: Final = (
    "CREATE VIEW events AS SELECT *, "
    f"CASE WHEN {SYNTHETIC_SQL} THEN 'synthetic' ELSE 'user' END AS traffic "
    "FROM ({relation})"
)


@dataclass(frozen=True)
class TableView:
    """One database table as the workbench shows it: the columns to read, typed for DuckDB."""

    name: str
    statement: Select[Any]
    content_columns: tuple[str, ...] = ()  # conversation text: read for admins only

    @property
    def types(self) -> dict[str, str]:
        """Every column's name and DuckDB type, in order."""
        return {c.key: duckdb_type(c.type) for c in self.statement.selected_columns}

    def columns(self, *, include_message_content: bool) -> dict[str, str]:
        """Column name -> DuckDB type, without the content columns unless they are included."""
        hidden = () if include_message_content else self.content_columns
        return {name: kind for name, kind in self.types.items() if name not in hidden}

    def select(self, *, include_message_content: bool) -> Select[Any]:
        """The statement that reads the visible columns."""
        wanted = self.columns(include_message_content=include_message_content)
        return self.statement.with_only_columns(
            *(c for c in self.statement.selected_columns if c.key in wanted),
            maintain_column_froms=True,
        )


def duckdb_type(column_type: TypeEngine[Any]) -> str:
    """The DuckDB type a database column is copied into."""
    for python_type, duckdb_name in DUCKDB_TYPES:
        if isinstance(column_type, python_type):
            return duckdb_name
    raise TypeError(f"no DuckDB type for {column_type!r}")


SESSIONS: Final = TableView(
    "sessions",
    select(
        ChatSession.id,
        ChatSession.public_id,
        ChatSession.user_id,
        ChatSession.persona_id,
        Persona.name.label("persona"),
        ChatSession.persona_version,
        ChatSession.title,
        ChatSession.status,
        ChatSession.created_at,
        ChatSession.updated_at,
        ChatSession.deleted_at,
        ChatSession.run_id,
        ChatSession.variant_position,
        ChatSession.case_index,
        ChatSession.provider,
        ChatSession.model,
        ChatSession.temperature,
    )
    .join(Persona, Persona.id == ChatSession.persona_id)
    .order_by(ChatSession.id),
    content_columns=("title",),
)
MESSAGES: Final = TableView(
    "messages",
    select(
        Message.id,
        Message.session_id,
        Message.role,
        Message.content,
        func.length(Message.content, type_=Integer).label("content_chars"),
        Message.created_at,
        Message.reply_to_id,
        Message.model,
        Message.provider,
        Message.persona_version,
        Message.latency_ms,
        Message.ttft_ms,
        Message.tokens_in,
        Message.tokens_out,
        Message.cached_input_tokens,
        Message.reasoning_tokens,
        Message.cost_usd,
        Message.finish_reason,
    ).order_by(Message.id),
    content_columns=("content",),
)
FEEDBACK: Final = TableView(
    "feedback",
    select(
        Feedback.id,
        Feedback.user_id,
        Feedback.session_id,
        Feedback.message_id,
        Feedback.category,
        Feedback.priority,
        Feedback.status,
        Feedback.rating,
        Feedback.description,
        Feedback.context,
        Feedback.assignee_id,
        Feedback.created_at,
        Feedback.updated_at,
    ).order_by(Feedback.id),
)
AUDIT_EVENTS: Final = TableView(
    "audit_events",
    select(
        AuditEvent.id,
        AuditEvent.actor_id,
        AuditEvent.actor_name,
        AuditEvent.action,
        AuditEvent.target_type,
        AuditEvent.target_id,
        AuditEvent.details.label("details"),
        AuditEvent.created_at,
    ).order_by(AuditEvent.id),
)
PERSONAS: Final = TableView(
    "personas",
    select(
        Persona.id,
        Persona.name,
        Persona.description,
        Persona.system_instruction,
        Persona.avatar,
        Persona.color,
        Persona.model,
        Persona.temperature,
        Persona.version,
        Persona.active,
        Persona.created_at,
        Persona.updated_at,
    ).order_by(Persona.id),
)
# No password hash, cookie cut-off, failed-login count, lock-out or must-change flag.
USERS: Final = TableView(
    "users",
    select(
        User.id,
        User.username,
        User.display_name,
        User.email,
        User.role,
        User.features,
        User.disabled,
        User.last_login_at,
        User.created_at,
        User.updated_at,
    ).order_by(User.id),
)
TABLE_VIEWS: Final[tuple[TableView, ...]] = (
    SESSIONS,
    MESSAGES,
    FEEDBACK,
    AUDIT_EVENTS,
    PERSONAS,
    USERS,
)


def view_schemas(*, include_message_content: bool) -> dict[str, dict[str, str]]:
    """Every relation the workbench offers, with its columns and DuckDB types, ``events`` first."""
    schemas = {"events": {**EVENT_TYPES, "traffic": "VARCHAR"}}
    for view in TABLE_VIEWS:
        schemas[view.name] = view.columns(include_message_content=include_message_content)
    return schemas


@dataclass(frozen=True)
class DataSnapshot:
    """The data of one workbench run: database rows and live events in memory, Parquet paths."""

    tables: dict[str, pa.Table]
    live_events: pa.Table
    event_files: tuple[str, ...]  # absolute paths of the compacted Parquet files
    skipped_lines: int = 0  # lines of the log files that were not events


def take_snapshot(
    db: Database, events: EventStore, *, include_message_content: bool
) -> DataSnapshot:
    """Read the database tables in one read-only transaction and the event log as of now."""
    with read_only_snapshot(db) as conn:
        tables = {
            view.name: _arrow_table(conn, view, include_message_content=include_message_content)
            for view in TABLE_VIEWS
        }
    snapshot = events.refresh()
    files = tuple(str(Path(p.source).resolve()) for p in snapshot.pieces if p.parquet)
    in_memory = [p for p in snapshot.pieces if not p.parquet]
    with snapshot.cursor() as cur:
        live = cur.sql(events_relation(in_memory, snapshot.hot_table)).to_arrow_table()
    return DataSnapshot(tables, live, files, snapshot.skipped_lines)


def load_snapshot(con: duckdb.DuckDBPyConnection, data: DataSnapshot) -> None:
    """Create the relations of ``data`` in ``con`` (before the sandbox locks it down)."""
    for name, table in data.tables.items():
        _create_table(con, name, _types_of(name, table), table)
    con.execute(CREATE_SCHEMA_SQL)
    _create_table(con, LIVE_EVENTS_TABLE, EVENT_TYPES, data.live_events)
    selects = [LIVE_EVENTS_SQL]
    if data.event_files:
        files = ", ".join(quote(path) for path in data.event_files)
        selects.insert(0, PARQUET_EVENTS_SQL.format(columns=_EVENT_SELECT, files=files))
    con.execute(CREATE_EVENTS_VIEW_SQL.format(relation=" UNION ALL ".join(selects)))


@contextmanager
def read_only_snapshot(db: Database) -> Iterator[Connection]:
    """A connection inside one read-only transaction: every read sees the same moment."""
    if db.dialect != "sqlite":
        # Said in the transaction, not as connection options: SQLAlchemy hands a connection
        # back to the pool with those reset *explicitly* to read-write, which would then
        # override a database made read-only for every later user of that connection.
        with db.engine.connect() as conn, conn.begin() as transaction:
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn
            transaction.rollback()
        return
    engine = _sqlite_reader(db)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            yield conn
            transaction.rollback()
    finally:
        engine.dispose()


def _sqlite_reader(db: Database) -> Any:
    database = db.engine.url.database
    if not database or database == ":memory:":
        return db.engine  # nothing else can open it; its own transactions will do
    engine = create_engine(db.engine.url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say when the transaction begins
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_READER_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(SQLITE_DEFERRED_BEGIN)

    return engine


def _arrow_table(conn: Connection, view: TableView, *, include_message_content: bool) -> pa.Table:
    types = view.columns(include_message_content=include_message_content)
    rows = conn.execute(view.select(include_message_content=include_message_content)).all()
    values = list(zip(*rows, strict=True)) if rows else [() for _ in types]
    columns = dict(zip(types, values, strict=True))
    if view is AUDIT_EVENTS and not include_message_content:
        columns["details"] = public_audit_details(columns["action"], columns["details"])
    arrays = {
        name: pa.array([_prepare(kind, v) for v in columns[name]], type=ARROW_TYPES[kind])
        for name, kind in types.items()
    }
    return pa.table(arrays)


def _prepare(kind: str, value: Any) -> Any:
    """A database value as its Arrow column takes it: naive UTC times, JSON as text."""
    if value is None:
        return None
    if kind == "TIMESTAMP" and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if kind == "JSON":
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def _types_of(name: str, table: pa.Table) -> dict[str, str]:
    view = next(v for v in TABLE_VIEWS if v.name == name)
    return {column: view.types[column] for column in table.column_names}


def _create_table(
    con: duckdb.DuckDBPyConnection, name: str, types: dict[str, str], rows: pa.Table
) -> None:
    columns = ", ".join(f"{column} {kind}" for column, kind in types.items())
    con.execute(CREATE_TABLE_SQL.format(name=name, columns=columns))
    con.register(LOAD_NAME, rows)
    try:
        con.execute(INSERT_LOADED_SQL.format(name=name))
    finally:
        con.unregister(LOAD_NAME)
