"""The data model: migrations match the models, SQLite pragmas, UTC times and JSON columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nexus_core.db.engine import SQLITE_BUSY_TIMEOUT_MS, Database
from nexus_core.db.migrate import current_revision, head_revision, upgrade_to_head
from nexus_core.db.models import AuditEvent, Base, User
from nexus_core.errors import DatabaseUnavailable


def test_a_blank_sqlite_database_migrates_to_head_and_matches_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'blank.db'}")
    assert current_revision(db.engine) is None
    upgrade_to_head(db.engine)
    assert current_revision(db.engine) == head_revision()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_migrated_database_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_upgrading_twice_changes_nothing(db: Database) -> None:
    upgrade_to_head(db.engine)
    assert current_revision(db.engine) == head_revision()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def _user(**kw: object) -> User:
    return User(username="u1", display_name="U", password_hash="x", role="member", **kw)


def test_times_come_back_as_aware_utc(db: Database) -> None:
    local = datetime(2026, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as session:
        session.add(_user(locked_until=local))
    with db.session() as session:
        user = session.scalars(select(User)).one()
        assert user.locked_until == local
        assert user.locked_until.tzinfo == UTC
        assert user.created_at.tzinfo == UTC


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="aware"), db.session() as session:
        session.add(_user(locked_until=datetime(2026, 1, 1)))
        session.flush()


def test_json_columns_round_trip(db: Database) -> None:
    with db.session() as session:
        session.add(_user(features={"pro_session_analytics": True}))
        session.add(AuditEvent(action="x.y", details={"nested": {"a": [1, 2]}}))
    with db.session() as session:
        assert session.scalars(select(User)).one().features == {"pro_session_analytics": True}
        assert session.scalars(select(AuditEvent)).one().details == {"nested": {"a": [1, 2]}}


def test_foreign_keys_are_enforced(db: Database) -> None:
    from nexus_core.db.models import ChatSession

    with pytest.raises(Exception, match=r"(?i)foreign key"), db.session() as session:
        session.add(ChatSession(user_id=999, persona_id=999, persona_version=1))
        session.flush()


def test_a_database_that_cannot_be_written_is_a_clear_nexus_error(
    db: Database, read_only_url: Callable[[Database], str]
) -> None:
    with db.session() as session:
        session.add(User(username="kept", display_name="K", password_hash="x", role="member"))
    frozen = Database(read_only_url(db))
    try:
        for unit in (frozen.session, frozen.transaction):
            with pytest.raises(DatabaseUnavailable) as refused, unit() as work:
                if isinstance(work, Session):
                    work.add(User(username="lost", display_name="L", password_hash="x"))
                else:
                    work.execute(
                        insert(User).values(username="lost", display_name="L", password_hash="x")
                    )
            assert "nothing was saved" in str(refused.value) and refused.value.reason
    finally:
        frozen.dispose()
    with db.session() as session:
        assert session.scalars(select(User.username)).all() == ["kept"]


def test_a_read_only_session_reads_but_sqlite_refuses_it_any_write(tmp_path: Path) -> None:
    """Work that says it only reads takes no write lock; so that it cannot write by mistake either
    (a write there would skip the lock every other writer queues for), SQLite itself refuses
    (``query_only``)."""
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade_to_head(db.engine)
    with db.session() as session:
        session.add(_user())
    with db.session(read_only=True) as session:
        assert session.scalars(select(User.username)).all() == ["u1"]
    with pytest.raises(DatabaseUnavailable), db.session(read_only=True) as session:
        session.add(User(username="u2", display_name="U", password_hash="x", role="member"))
    with db.session() as session:
        assert session.scalars(select(User.username)).all() == ["u1"]
    db.dispose()


def test_a_read_only_database_refuses_writes_on_a_connection_that_served_reads(
    db: Database, read_only_url: Callable[[Database], str]
) -> None:
    """Reading leaves a pooled connection as it found it: a database made read-only (a replica,
    a full disk's remount) still refuses its next write, as "database unavailable"."""
    frozen = Database(read_only_url(db), pool_size=1, max_overflow=0)
    try:
        with frozen.session(read_only=True) as session:
            assert session.scalars(select(User)).all() == []
        with pytest.raises(DatabaseUnavailable), frozen.session() as session:
            session.add(_user())
    finally:
        frozen.dispose()
    with db.session() as session:
        assert session.scalars(select(User)).all() == []


def test_a_pooled_connection_writes_again_after_serving_a_read_only_session(
    database_url: str,
) -> None:
    db = Database(database_url, pool_size=1, max_overflow=0)
    try:
        for n in range(2):
            with db.session(read_only=True) as session:
                session.scalars(select(User)).all()
            with db.session() as session:
                session.add(
                    User(username=f"u{n}", display_name="U", password_hash="x", role="member")
                )
        with db.session() as session:
            assert session.scalars(select(User.username).order_by("username")).all() == [
                "u0",
                "u1",
            ]
    finally:
        db.dispose()


def test_every_pooled_connection_busy_is_database_unavailable(database_url: str) -> None:
    """A burst that outlasts the pool's wait is "database unavailable", like a lock held too long,
    not an unexplained crash of the page."""
    db = Database(database_url, pool_size=1, max_overflow=0, pool_timeout=0.01)
    try:
        with db.session() as holding:
            holding.scalars(select(User)).all()
            with pytest.raises(DatabaseUnavailable), db.session(read_only=True) as waiting:
                waiting.scalars(select(User)).all()
    finally:
        db.dispose()
