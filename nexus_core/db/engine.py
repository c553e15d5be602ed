"""Engine and session setup; SQLite gets WAL, a busy timeout, foreign keys and BEGIN IMMEDIATE.

Two units of work: ``Database.session()`` for the ORM, and ``Database.transaction()``, a plain Core
connection for hot paths that run statements built once (the AI reply pipeline): those skip the
ORM's unit of work and identity map, which cost more than SQLite itself on every statement.

Writers and readers on SQLite: a file has one write lock. Every transaction that may write takes
it when it begins (``BEGIN IMMEDIATE``): a transaction that read first and then asked for it would
fail at once with ``database is locked`` whenever another writer had committed meanwhile, without
waiting for the busy timeout. So the write lock is held from a writing unit of work's first
statement to its commit — and work that only reads says so (``session(read_only=True)``,
``reading()``): it takes no lock, never waits for one, and SQLite refuses it any write
(``query_only``), which would otherwise skip the lock. With many people signing in at
once, page reads that took the write lock queued behind every sign-in, and the queue outlasted
the busy timeout (see README "Benchmarks": sign-in bursts).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from nexus_core.errors import ConfigError, DatabaseUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL's read_only_sql_transaction (a read-only replica or default_transaction_read_only).
READ_ONLY_SQLSTATE = "25006"
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)
READ_ONLY_OPTION = "nexus_read_only"  # execution option of read-only connections and sessions
# Where a SQLite connection remembers whether ``PRAGMA query_only`` is on (set only on a change).
QUERY_ONLY_KEY = "nexus.query_only"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; for SQLite, create the folder and set the pragmas."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL is not a valid SQLAlchemy URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not _is_uri(parsed.database):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _is_uri(database: str) -> bool:
    """Whether a SQLite database is named by a ``file:`` URI (``?mode=ro&uri=true``)."""
    return database.startswith("file:")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = bool(conn.get_execution_options().get(READ_ONLY_OPTION))
        _set_query_only(conn, read_only)
        if read_only:
            return  # reads only: each statement reads on its own, taking no write lock
        # A WAL read that later writes fails with SQLITE_BUSY at once; take the lock up front.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _set_query_only(conn: Connection, on: bool) -> None:
    """Have SQLite refuse writes on a read-only connection (and allow them again when the pooled
    connection next writes); a statement only when the connection changes side."""
    info = conn.connection.info
    if info.get(QUERY_ONLY_KEY, False) != on:
        conn.exec_driver_sql(f"PRAGMA query_only={int(on)}")
        info[QUERY_ONLY_KEY] = on


@contextmanager
def unavailable_as_nexus_error() -> Iterator[None]:
    """Translate "the database cannot be reached or written" into ``DatabaseUnavailable``:
    a lost connection, a locked or read-only SQLite file, a full disk, a read-only PostgreSQL,
    every pooled connection still busy after the pool's timeout."""
    try:
        yield
    except PoolTimeout as exc:
        raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc
    except (OperationalError, InternalError) as exc:
        if isinstance(exc, InternalError) and _sqlstate(exc) != READ_ONLY_SQLSTATE:
            raise
        raise DatabaseUnavailable(_first_line(exc)) from exc


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _first_line(exc: DBAPIError) -> str:
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _rollback(session: Session) -> None:
    """Roll back; on a dead connection that can fail too, and the first error is the one."""
    with suppress(OperationalError, InternalError):
        session.rollback()


def _read_only(engine: Engine) -> Engine:
    """``engine`` for reads only: on SQLite no write lock, and no write (``query_only``).

    PostgreSQL needs neither: its reads take no lock that writers wait for. (Not its
    ``postgresql_readonly`` option: handing the connection back to the pool sets it to read-write
    explicitly, which would override a database made read-only.)"""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


class Database:
    """The engine plus a session factory; ``session()`` is a commit-or-rollback unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = make_session_factory(self.engine)
        self._read_engine = _read_only(self.engine)
        self._read_sessions = make_session_factory(self._read_engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back on an exception.

        ``read_only``: for work that only reads, which then neither takes nor waits for SQLite's
        write lock (and SQLite refuses it any write). A database that cannot be reached or
        written raises ``DatabaseUnavailable``.
        """
        session = (self._read_sessions if read_only else self._sessions)()
        try:
            with unavailable_as_nexus_error():
                yield session
                session.commit()
        except BaseException:
            _rollback(session)
            raise
        finally:
            session.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in a transaction that commits when the block ends (rolls back on an
        exception); a database that cannot be reached or written raises ``DatabaseUnavailable``."""
        with unavailable_as_nexus_error(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A Core connection for reads only, which on SQLite never waits for the write lock
        (probes such as the health check must not queue behind writers)."""
        with self._read_engine.connect() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
