"""The audit trail's hash chain: every event linked in commit order, and `nexus audit verify`
naming the first event changed, deleted or inserted in the database directly."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, delete, insert, select, text, update

from nexus_core import audit, audit_chain
from nexus_core.auth import LOCKOUT_THRESHOLD, SignInService
from nexus_core.db.engine import Database
from nexus_core.db.migrate import alembic_config
from nexus_core.db.models import AuditChainHead, AuditEvent
from nexus_core.settings import Settings
from tests.test_cli import run_nexus

WRITERS = 6
EVENTS_PER_WRITER = 8


def add(db: Database, action: str, **details: object) -> None:
    with db.session() as session:
        audit.record(session, action, actor_name="ada", details=dict(details))


def event_ids(db: Database) -> list[int]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent.id).order_by(AuditEvent.seq)))


@pytest.fixture
def trail(db: Database) -> Database:
    """Five events: four from the app's sessions, one from the job pipeline's Core path."""
    for n in range(3):
        add(db, audit.SIGN_IN, n=n, note="ünïcode ✓", nested={"b": [1, 2.5], "a": None})
    with db.transaction() as conn:
        audit.record_in(conn, audit.BUDGET_THRESHOLD, target_type="user", details={"p": 80})
    add(db, audit.SIGN_OUT)
    return db


def test_every_event_is_linked_in_order_and_the_chain_verifies_intact(trail: Database) -> None:
    report = audit_chain.verify(trail)

    assert report.intact, report.problem
    assert report.events == report.head_seq == 5
    with trail.session() as session:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.prev_hash, AuditEvent.hash))
        links = sorted(rows.all())
    assert [seq for seq, _, _ in links] == [1, 2, 3, 4, 5]
    assert links[0].prev_hash == audit_chain.GENESIS
    assert all(links[i].prev_hash == links[i - 1].hash for i in range(1, 5))
    assert report.head_hash == links[-1].hash


def test_an_event_edited_in_the_database_is_named(trail: Database) -> None:
    third = event_ids(trail)[2]
    with trail.transaction() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(actor_name="mallory"))

    report = audit_chain.verify(trail)

    assert not report.intact
    assert report.event_id == third and report.seq == 3
    assert report.problem == f"event {third} was changed after it was written"


def test_editing_only_the_details_or_the_time_is_seen_too(trail: Database) -> None:
    first, second = event_ids(trail)[:2]
    with trail.transaction() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == second).values(details={"n": 99}))
    assert audit_chain.verify(trail).event_id == second
    with trail.transaction() as conn:
        conn.execute(
            update(AuditEvent)
            .where(AuditEvent.id == first)
            .values(created_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    assert audit_chain.verify(trail).event_id == first


def test_a_deleted_event_is_named_by_its_place_and_neighbours(trail: Database) -> None:
    ids = event_ids(trail)
    with trail.transaction() as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.id == ids[1]))

    report = audit_chain.verify(trail)

    assert not report.intact
    assert report.problem == (
        f"event 2 of the chain missing (deleted) after event {ids[0]}, before event {ids[2]}"
    )


def test_deleting_the_newest_events_is_seen_through_the_head(trail: Database) -> None:
    ids = event_ids(trail)
    with trail.transaction() as conn:
        conn.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids[-2:])))

    report = audit_chain.verify(trail)

    assert not report.intact
    assert "the newest events 4–5 of the chain are missing (deleted)" in (report.problem or "")


def test_an_event_inserted_in_the_database_is_reported(trail: Database) -> None:
    with trail.transaction() as conn:
        forged = conn.execute(
            insert(AuditEvent)
            .values(action=audit.USER_ENABLED, details={}, created_at=datetime.now(UTC))
            .returning(AuditEvent.id)
        ).scalar_one()

    report = audit_chain.verify(trail)

    assert not report.intact and report.event_id == forged
    assert "inserted outside Nexus" in (report.problem or "")


def test_a_deleted_head_or_an_event_placed_past_it_is_reported(trail: Database) -> None:
    with trail.transaction() as conn:
        forged = conn.execute(
            insert(AuditEvent)
            .values(action=audit.USER_ENABLED, details={}, created_at=datetime.now(UTC), seq=99)
            .returning(AuditEvent.id)
        ).scalar_one()
    beyond = audit_chain.verify(trail)
    assert not beyond.intact and beyond.event_id == forged
    with trail.transaction() as conn:
        conn.execute(delete(AuditChainHead))
    headless = audit_chain.verify(trail)
    assert not headless.intact
    assert headless.problem == "the chain's head is missing (deleted)"


def test_an_event_moved_to_another_place_in_the_chain_is_reported(trail: Database) -> None:
    ids = event_ids(trail)
    with trail.transaction() as conn:  # swap the places of events 2 and 3
        conn.execute(update(AuditEvent).where(AuditEvent.id == ids[1]).values(seq=-2))
        conn.execute(update(AuditEvent).where(AuditEvent.id == ids[2]).values(seq=2))
        conn.execute(update(AuditEvent).where(AuditEvent.id == ids[1]).values(seq=3))

    report = audit_chain.verify(trail)

    assert not report.intact and report.event_id == ids[2]
    assert "does not follow the event before it" in (report.problem or "")


def test_a_rolled_back_change_leaves_no_event_and_no_gap(trail: Database) -> None:
    with pytest.raises(RuntimeError), trail.session() as session:
        audit.record(session, audit.SESSION_DELETED, details={"never": "kept"})
        session.flush()
        raise RuntimeError("the change failed")
    add(trail, audit.SIGN_IN)

    report = audit_chain.verify(trail)

    assert report.intact and report.events == 6


def test_concurrent_writers_keep_one_unbroken_chain(db: Database) -> None:
    """Writers committing at once each take the head in turn: numbers 1…N, no fork, no gap."""
    start = threading.Barrier(WRITERS)
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for n in range(EVENTS_PER_WRITER):
                add(db, audit.SIGN_IN, writer=writer, n=n)
        except BaseException as exc:  # reported below, with the thread's own exception
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    report = audit_chain.verify(db)
    assert report.intact, report.problem
    assert report.events == WRITERS * EVENTS_PER_WRITER


def test_the_migration_links_the_events_written_before_the_chain(settings: Settings) -> None:
    url = settings.database_url
    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")  # back to before the chain (tests the way down too)
            for n in range(3):
                conn.execute(
                    text(
                        "INSERT INTO audit_events (action, metadata, created_at) "
                        "VALUES (:action, :details, :at)"
                    ),
                    {
                        "action": audit.SIGN_IN,
                        "details": json.dumps({"n": n}),
                        "at": datetime(2026, 1, 1 + n, 9, 30, 0, 123456),
                    },
                )
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
    db = Database(url)
    try:
        report = audit_chain.verify(db)
        assert report.intact and report.events == 3
        add(db, audit.SIGN_OUT)
        assert audit_chain.verify(db).events == 4
    finally:
        db.dispose()


# --- the command line, and unlocking ------------------------------------------------------


def test_nexus_audit_verify_exits_1_naming_the_edited_event(settings: Settings) -> None:
    assert run_nexus(settings, "init").returncode == 0
    intact = run_nexus(settings, "audit", "verify", "--json")
    assert intact.returncode == 0, intact.stderr
    assert json.loads(intact.stdout)["intact"] is True
    db = Database(settings.database_url)
    try:
        first = event_ids(db)[0]
        with db.transaction() as conn:
            conn.execute(update(AuditEvent).where(AuditEvent.id == first).values(target_id="x"))
    finally:
        db.dispose()

    broken = run_nexus(settings, "audit", "verify")

    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        f"nexus: the audit chain is broken: event {first} was changed after it was written"
    )


def users_listed(settings: Settings) -> dict[str, dict[str, object]]:
    listed = run_nexus(settings, "users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {u["name"]: u for u in json.loads(listed.stdout)}


def test_a_locked_user_is_listed_as_locked_and_unlocked_by_the_command(
    settings: Settings,
) -> None:
    assert run_nexus(settings, "init").returncode == 0
    added = run_nexus(settings, "users", "add", "lena", "--password-stdin", stdin="lena-pass-1\n")
    assert added.returncode == 0, added.stderr
    db = Database(settings.database_url)
    try:
        sign_in = SignInService(db, token_key="test-key", lifetime=timedelta(hours=1))
        for attempt in range(LOCKOUT_THRESHOLD):
            sign_in.attempt("lena", f"wrong-{attempt}")
        listed = users_listed(settings)
        assert listed["lena"]["status"] == "locked"
        assert listed["lena"]["locked_until"].endswith("Z")
        assert listed["admin"] == {
            "name": "admin",
            "role": "admin",
            "status": "active",
            "locked_until": None,
        }

        unlocked = run_nexus(settings, "users", "unlock", "lena")

        assert unlocked.returncode == 0, unlocked.stderr
        listed = users_listed(settings)
        assert listed["lena"]["status"] == "active" and listed["lena"]["locked_until"] is None
        assert sign_in.attempt("lena", "lena-pass-1") is not None
        actions = [e.action for e in audit.search(db, audit.AuditQuery(), limit=50)]
        assert audit.USER_UNLOCKED in actions
        assert audit_chain.verify(db).intact
    finally:
        db.dispose()
