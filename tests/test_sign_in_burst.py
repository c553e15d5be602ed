"""Many people signing in at once on one database (issue #15): every sign-in, cookie claim and
page read answers — none meets "database unavailable" — whether they are threads of one app
process or spread over several processes, and the audit chain verifies afterwards. Page reads and
the password check never wait for SQLite's write lock, which writers queue for."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from sqlalchemy import event, select

from nexus_core import audit, audit_chain
from nexus_core.auth import LAST_SEEN_EVERY, BcryptHasher, SignInService
from nexus_core.chat import ChatService
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AuthSession, User
from nexus_core.errors import DatabaseUnavailable
from nexus_core.users import UserService
from tests.constants import PASSWORD

ROOT = Path(__file__).resolve().parents[1]
TOKEN_KEY = "a-test-key-for-session-token-hashes"
# Real bcrypt on the real path, at the cheapest cost: the burst is about the database, not hashing.
TEST_ROUNDS = 4
USERS = 24
PAGE_RUNS = 3
PROCESSES = 2
# Each process signs in its share of the users, as a replica of the app would; prints failures.
BURST_SCRIPT = """
import json, sys
from tests.test_sign_in_burst import sign_in_all
print(json.dumps(sign_in_all(sys.argv[1], sys.argv[2:])))
"""


def add_users(db: Database, names: list[str]) -> None:
    """Members whose password hash is a cheap bcrypt hash (the check is the real one)."""
    cheap = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(TEST_ROUNDS)).decode("ascii")
    with db.session() as session:
        for name in names:
            session.add(User(username=name, display_name=name, password_hash=cheap, role="member"))


def sign_in_service(db: Database) -> SignInService:
    return SignInService(
        db, token_key=TOKEN_KEY, lifetime=timedelta(days=7), hasher=BcryptHasher(TEST_ROUNDS)
    )


def one_person(db: Database, name: str, start: threading.Barrier) -> list[str]:
    """What the sign-in page and the next page runs do for one person: sign in, claim the login
    cookie, then run pages (session check, chat list, the audit trail); the failures met."""
    sign_in, chats = sign_in_service(db), ChatService(db)
    start.wait()
    try:
        grant = sign_in.attempt(name, PASSWORD)
        if grant is None:
            return [f"{name}: refused"]
        if sign_in.claim_cookie(grant.handoff_code) is None:
            return [f"{name}: no cookie"]
        for _ in range(PAGE_RUNS):
            check = sign_in.check_session(grant.session_id)
            if check.user is None:
                return [f"{name}: signed out ({check.ended})"]
            chats.list_sessions(check.user)
            audit.search(db, audit.AuditQuery(actor=name), limit=20)
    except DatabaseUnavailable as exc:
        return [f"{name}: {exc.reason}"]
    return []


def sign_in_all(url: str, names: list[str]) -> list[str]:
    """Everyone in ``names`` signs in at the same moment, each on a thread of this process (as
    the app serves each browser on a thread); the failures met."""
    db = Database(url)
    start = threading.Barrier(len(names))
    failures: list[str] = []
    threads = [
        threading.Thread(target=lambda n=name: failures.extend(one_person(db, n, start)))
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.dispose()
    return failures


def signed_in(db: Database) -> set[str]:
    """Who has a sign-in session with its cookie claimed."""
    with db.session() as session:
        return set(
            session.scalars(
                select(User.username)
                .join(AuthSession, AuthSession.user_id == User.id)
                .where(AuthSession.token_hash.is_not(None))
            )
        )


def test_people_signing_in_at_once_on_threads_all_get_in_and_the_chain_verifies(
    db: Database,
) -> None:
    names = [f"member{i:02d}" for i in range(USERS)]
    add_users(db, names)

    failures = sign_in_all(db.url, names)

    assert failures == []
    assert signed_in(db) == set(names)
    report = audit_chain.verify(db)
    assert report.intact, report.problem
    assert report.events == USERS  # one sign-in event each, in one unbroken chain


def test_people_signing_in_at_once_in_several_processes_all_get_in_and_the_chain_verifies(
    db: Database,
) -> None:
    names = [f"member{i:02d}" for i in range(USERS)]
    add_users(db, names)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shares = [names[p::PROCESSES] for p in range(PROCESSES)]

    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BURST_SCRIPT, db.url, *share],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for share in shares
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]

    assert [p.returncode for p in processes] == [0] * PROCESSES
    assert [failure for out in outputs for failure in json.loads(out)] == []
    assert signed_in(db) == set(names)
    report = audit_chain.verify(db)
    assert report.intact, report.problem
    assert report.events == USERS


@contextmanager
def writer_mid_transaction(db: Database) -> Iterator[None]:
    """Another writer — a sign-in of another process, say — holding SQLite's write lock until the
    block ends."""
    database = db.engine.url.database
    assert database
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A fresh migrated SQLite file (the write lock is SQLite's)."""
    path = tmp_path / "nexus.db"
    path.write_bytes(sqlite_template.read_bytes())
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def test_a_valid_session_stays_signed_in_when_its_last_seen_time_cannot_be_written(
    sqlite_db: Database,
) -> None:
    """The last-seen write is best effort: a lock held past the busy timeout (shortened here)
    leaves it for a later run instead of failing a page whose session was found valid."""
    db = sqlite_db
    add_users(db, ["hal"])
    now = [utc_now()]
    sign_in = SignInService(
        db,
        token_key=TOKEN_KEY,
        lifetime=timedelta(days=7),
        hasher=BcryptHasher(TEST_ROUNDS),
        clock=lambda: now[0],
    )
    grant = sign_in.attempt("hal", PASSWORD)
    assert grant is not None

    @event.listens_for(db.engine, "connect")
    def short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=100")

    db.engine.dispose()  # new connections get the short timeout
    now[0] += LAST_SEEN_EVERY * 2  # the last-seen time is due
    with writer_mid_transaction(db):
        check = sign_in.check_session(grant.session_id)
    assert check.user is not None and check.user.username == "hal"
    with db.session(read_only=True) as session:
        seen = session.get(AuthSession, grant.session_id)
        assert seen is not None and seen.last_seen_at < now[0]  # left for a later run
    assert sign_in.check_session(grant.session_id).user is not None  # and written then
    with db.session(read_only=True) as session:
        seen = session.get(AuthSession, grant.session_id)
        assert seen is not None and seen.last_seen_at == now[0]


def test_page_reads_answer_while_another_writer_holds_the_write_lock(sqlite_db: Database) -> None:
    """A signed-in person's page run reads without queueing behind writers: while another
    process holds the write lock, the session check, the chat list and the audit trail answer."""
    db = sqlite_db
    add_users(db, ["gina"])
    sign_in = sign_in_service(db)
    grant = sign_in.attempt("gina", PASSWORD)
    assert grant is not None

    with writer_mid_transaction(db):
        check = sign_in.check_session(grant.session_id)
        assert check.user is not None and check.user.username == "gina"
        assert ChatService(db).list_sessions(check.user) == []
        assert [e.action for e in audit.search(db, audit.AuditQuery(actor="gina"), limit=5)] == [
            audit.SIGN_IN
        ]
        assert UserService(db).get("gina").username == "gina"
        assert audit_chain.verify(db).intact


class WriteLockProbe:
    """The real bcrypt check, which first finds out whether anyone holds SQLite's write lock (a
    second connection that will not wait takes it and lets go)."""

    def __init__(self, db: Database) -> None:
        self.real = BcryptHasher(TEST_ROUNDS)
        self.database = db.engine.url.database
        self.lock_was_free: list[bool] = []

    def check(self, password: str, password_hash: str) -> bool:
        probe = sqlite3.connect(self.database or "", isolation_level=None, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            self.lock_was_free.append(True)
        except sqlite3.OperationalError:
            self.lock_was_free.append(False)
        finally:
            probe.close()
        return self.real.check(password, password_hash)

    def dummy_hash(self) -> str:
        return self.real.dummy_hash()


def test_the_password_check_runs_while_no_write_lock_is_held(sqlite_db: Database) -> None:
    """bcrypt (a quarter of a second at the real cost) never runs inside a write transaction: a
    burst of sign-ins would otherwise queue every writer behind each password check."""
    db = sqlite_db
    add_users(db, ["gina"])
    probe = WriteLockProbe(db)
    sign_in = SignInService(db, token_key=TOKEN_KEY, lifetime=timedelta(days=7), hasher=probe)

    assert sign_in.attempt("gina", PASSWORD) is not None
    assert sign_in.attempt("gina", "a-wrong-password") is None
    assert sign_in.attempt("nobody", PASSWORD) is None

    assert probe.lock_was_free == [True, True, True]
