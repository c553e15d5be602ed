"""Sign-in: atomic lock-out under parallel attempts, one equal-cost password check on every path,
sign-in sessions that end everywhere at once, and login cookies that outlive no revocation."""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import pytest
from sqlalchemy import event, select

from nexus_core import audit
from nexus_core.auth import (
    ACTIVE_WITHIN,
    EXPIRED,
    HANDOFF_SECONDS,
    LAST_SEEN_EVERY,
    LOCKOUT_MINUTES,
    LOCKOUT_THRESHOLD,
    BcryptHasher,
    SignInService,
    resolve_cookie_key,
    session_lifetime,
)
from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent, AuthSession, User
from nexus_core.errors import ConfigError, PermissionDenied, ValidationError
from nexus_core.settings import Settings
from nexus_core.users import BCRYPT_ROUNDS, UserService
from tests.constants import PASSWORD

TOKEN_KEY = "a-test-key-for-session-token-hashes"
WEEK = timedelta(days=7)


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class CountingHasher:
    """The real bcrypt hasher, recording the cost factor of every hash it checks against."""

    def __init__(self) -> None:
        self.real = BcryptHasher()
        self.costs: list[int] = []
        self._lock = threading.Lock()

    def check(self, password: str, password_hash: str) -> bool:
        with self._lock:
            self.costs.append(bcrypt_cost(password_hash))
        return self.real.check(password, password_hash)

    def dummy_hash(self) -> str:
        return self.real.dummy_hash()


def bcrypt_cost(password_hash: str) -> int:
    """The cost factor of a bcrypt hash (``$2b$12$…`` → 12)."""
    return int(password_hash.split("$")[2])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def sign_in(db: Database, clock: Clock, hasher: CountingHasher) -> SignInService:
    UserService(db).create("gina", PASSWORD)
    return service(db, clock, hasher=hasher)


def service(
    db: Database, clock: Clock, *, lifetime: timedelta = WEEK, **kwargs: Any
) -> SignInService:
    return SignInService(db, token_key=TOKEN_KEY, lifetime=lifetime, clock=clock, **kwargs)


def trail(db: Database, name: str = "gina") -> list[AuditEvent]:
    """The sign-in audit events of ``name``, in the order they were decided."""
    with db.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.actor_name == name, AuditEvent.action.like("auth.%"))
                .order_by(AuditEvent.id)
            )
        )


def failed_logins(db: Database, name: str = "gina") -> int:
    with db.session() as session:
        return session.scalar(select(User.failed_logins).where(User.username == name)) or 0


def locked_until(db: Database, name: str = "gina") -> datetime | None:
    with db.session() as session:
        user = session.scalar(select(User).where(User.username == name))
        assert user is not None
        return user.locked_until


# --- lock-out -----------------------------------------------------------------------------


def test_five_failures_lock_the_account_and_the_lock_refuses_even_the_right_password(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    for attempt in range(LOCKOUT_THRESHOLD):
        assert sign_in.attempt("gina", f"wrong-password-{attempt}") is None
    lock_ends = clock.now + timedelta(minutes=LOCKOUT_MINUTES)
    assert locked_until(db) == lock_ends
    assert sign_in.attempt("gina", PASSWORD) is None  # right, but the lock is in force
    assert locked_until(db) == lock_ends and failed_logins(db) == LOCKOUT_THRESHOLD
    assert [e.action for e in trail(db)][-3:] == [
        audit.SIGN_IN_FAILED,
        audit.LOCKED_OUT,
        audit.SIGN_IN_FAILED,
    ]
    assert trail(db)[-1].details == {"reason": "locked"}

    clock.now += timedelta(minutes=LOCKOUT_MINUTES, seconds=1)
    granted = sign_in.attempt("gina", PASSWORD)
    assert granted is not None and granted.user.username == "gina"
    assert failed_logins(db) == 0


def test_an_expired_lockout_starts_a_fresh_count(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    for attempt in range(LOCKOUT_THRESHOLD):
        sign_in.attempt("gina", f"wrong-password-{attempt}")
    clock.now += timedelta(minutes=LOCKOUT_MINUTES + 1)
    assert sign_in.attempt("gina", "wrong-again-1") is None
    assert (locked_until(db), failed_logins(db)) == (None, 1)


def test_a_success_before_the_threshold_resets_the_count(
    sign_in: SignInService, db: Database
) -> None:
    for attempt in range(LOCKOUT_THRESHOLD - 1):
        sign_in.attempt("gina", f"wrong-password-{attempt}")
    assert sign_in.attempt("GINA ", PASSWORD) is not None  # typed as people type it
    assert failed_logins(db) == 0
    sign_in.attempt("gina", "wrong-again-1")
    assert failed_logins(db) == 1


def test_unknown_and_disabled_accounts_fail_alike_and_lock_nothing(
    sign_in: SignInService, db: Database
) -> None:
    UserService(db).create("hank", PASSWORD)
    UserService(db).set_disabled("hank", True)
    assert sign_in.attempt("nobody", PASSWORD) is None
    assert sign_in.attempt("hank", PASSWORD) is None
    assert [e.details for e in trail(db, "nobody")] == [{"reason": "unknown user"}]
    assert [e.details for e in trail(db, "hank")] == [{"reason": "disabled"}]
    assert failed_logins(db, "hank") == 0


def test_a_long_typed_username_is_audited_cut_to_the_column(sign_in: SignInService, db) -> None:  # type: ignore[no-untyped-def]
    assert sign_in.attempt("x" * 500, PASSWORD) is None
    with db.session() as session:
        names = session.scalars(select(AuditEvent.actor_name)).all()
    assert "x" * 64 in names


@dataclass(frozen=True)
class Burst:
    """Parallel sign-in attempts on one account: wrong passwords with the right one among them."""

    wrong: int
    right_at: int  # where the right password starts among the threads
    earlier_failures: int = 0  # failures already counted before the burst


BURSTS = [
    Burst(wrong=15, right_at=8),
    Burst(wrong=15, right_at=0),
    Burst(wrong=7, right_at=3, earlier_failures=LOCKOUT_THRESHOLD - 1),
    Burst(wrong=6, right_at=6),
]


@pytest.mark.parametrize("burst", BURSTS, ids=lambda b: f"{b.wrong}wrong-right@{b.right_at}")
def test_parallel_attempts_are_decided_one_at_a_time_and_none_succeeds_once_locked(
    db: Database, clock: Clock, burst: Burst
) -> None:
    UserService(db).create("gina", PASSWORD)
    sign_in = service(db, clock)
    for attempt in range(burst.earlier_failures):
        sign_in.attempt("gina", f"earlier-wrong-{attempt}")
    passwords = [f"wrong-password-{i:02d}" for i in range(burst.wrong)]
    passwords.insert(burst.right_at, PASSWORD)
    start = threading.Barrier(len(passwords))
    granted: list[bool] = []

    def attempt(password: str) -> None:
        start.wait()
        result = sign_in.attempt("gina", password)
        if password == PASSWORD:
            granted.append(result is not None)
        else:
            assert result is None

    threads = [threading.Thread(target=attempt, args=(p,)) for p in passwords]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    events = trail(db)[burst.earlier_failures :]
    actions = [e.action for e in events]
    failures = [e for e in events if e.action == audit.SIGN_IN_FAILED]
    # Every attempt was decided and recorded exactly once.
    assert len(failures) + actions.count(audit.SIGN_IN) == len(passwords)
    assert granted == [audit.SIGN_IN in actions]
    if audit.SIGN_IN in actions:  # accepted only while no lock was in force
        assert audit.LOCKED_OUT not in actions[: actions.index(audit.SIGN_IN)]
    # No failure was lost: counted failures run 1, 2, 3 … from the last reset, up to the lock,
    # and everything decided after the lock was refused as locked (the success among them).
    last_reset = actions.index(audit.SIGN_IN) + 1 if audit.SIGN_IN in actions else 0
    counted = [e.details["failures"] for e in events[last_reset:] if "failures" in e.details]
    start_count = 0 if last_reset or not burst.earlier_failures else burst.earlier_failures
    expected = list(range(start_count + 1, LOCKOUT_THRESHOLD + 1))
    assert counted == expected[: len(counted)]
    if audit.LOCKED_OUT in actions:
        after_lock = events[actions.index(audit.LOCKED_OUT) + 1 :]
        assert {e.action for e in after_lock} <= {audit.SIGN_IN_FAILED}
        assert all(e.details == {"reason": "locked"} for e in after_lock)
        assert locked_until(db) is not None and failed_logins(db) == LOCKOUT_THRESHOLD
    else:
        assert failed_logins(db) == (counted[-1] if counted else start_count)


# --- equal cost ---------------------------------------------------------------------------


def test_every_attempt_runs_exactly_one_bcrypt_check_of_the_real_cost(
    sign_in: SignInService, hasher: CountingHasher, db: Database
) -> None:
    with db.session() as session:
        real_cost = bcrypt_cost(
            session.scalar(select(User.password_hash).where(User.username == "gina")) or ""
        )
    assert real_cost == BCRYPT_ROUNDS
    UserService(db).create("hank", PASSWORD)
    UserService(db).set_disabled("hank", True)
    UserService(db).create("ivy", PASSWORD)
    for attempt in range(LOCKOUT_THRESHOLD):
        sign_in.attempt("ivy", f"wrong-password-{attempt}")
    paths = {
        "unknown user": ("nobody-at-all", PASSWORD),
        "disabled user": ("hank", PASSWORD),
        "locked user, right password": ("ivy", PASSWORD),
        "locked user, wrong password": ("ivy", "wrong-password-x"),
        "wrong password": ("gina", "wrong-password-y"),
        "password bcrypt cannot take": ("gina", "p" * 100),
        "username nobody could have": ("a b/c", PASSWORD),
        "right password": ("gina", PASSWORD),
    }
    for path, (username, password) in paths.items():
        hasher.costs.clear()
        sign_in.attempt(username, password)
        assert hasher.costs == [real_cost], path


def test_a_password_over_72_bytes_never_matches_even_its_own_first_72_bytes() -> None:
    hasher = BcryptHasher(rounds=4)
    stored = hasher.dummy_hash()
    assert not hasher.check("x" * 73, stored)
    head = "y" * 72
    stored = bcrypt.hashpw(head.encode(), bcrypt.gensalt(4)).decode()
    assert hasher.check(head, stored)
    assert not hasher.check(head + "z", stored)


# --- sessions -----------------------------------------------------------------------------


def test_signing_out_ends_every_session_of_the_user_and_says_why(
    sign_in: SignInService, db: Database
) -> None:
    UserService(db).create("hank", PASSWORD)
    laptop = sign_in.attempt("gina", PASSWORD)
    phone = sign_in.attempt("gina", PASSWORD)
    other = sign_in.attempt("hank", PASSWORD)
    assert laptop and phone and other
    assert sign_in.check_session(phone.session_id).user is not None

    sign_in.sign_out(laptop.session_id)

    for grant in (laptop, phone):
        check = sign_in.check_session(grant.session_id)
        assert check.user is None and check.ended == "sign_out"
    assert sign_in.check_session(other.session_id).user is not None  # other users stay
    assert sign_in.attempt("gina", PASSWORD) is not None  # and gina may sign in again
    assert trail(db)[-2].action == audit.SIGN_OUT


def test_a_password_change_ends_every_session_but_reissues_the_changing_one(
    sign_in: SignInService, db: Database
) -> None:
    laptop = sign_in.attempt("gina", PASSWORD)
    phone = sign_in.attempt("gina", PASSWORD)
    assert laptop and phone
    with pytest.raises(ValidationError, match="current password"):
        sign_in.change_password(laptop.session_id, "not-the-password", "brand-new-pass-9")
    assert sign_in.check_session(phone.session_id).user is not None  # a failed change ends nothing

    renewed = sign_in.change_password(laptop.session_id, PASSWORD, "brand-new-pass-9")

    assert sign_in.check_session(renewed.session_id).user is not None
    for grant in (laptop, phone):
        assert sign_in.check_session(grant.session_id).ended == "password"
    assert sign_in.attempt("gina", PASSWORD) is None
    assert sign_in.attempt("gina", "brand-new-pass-9") is not None
    with pytest.raises(PermissionDenied):  # an ended session cannot change the password again
        sign_in.change_password(phone.session_id, "brand-new-pass-9", "another-pass-10")


def test_a_temporary_password_is_changed_without_the_current_one(
    sign_in: SignInService, db: Database
) -> None:
    UserService(db).set_password("gina", "temporary-pass-1", must_change=True)
    grant = sign_in.attempt("gina", "temporary-pass-1")
    assert grant and grant.user.must_change_password
    renewed = sign_in.change_password(grant.session_id, "", "my-own-password-2")
    assert not renewed.user.must_change_password
    assert sign_in.check_session(renewed.session_id).user is not None


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (lambda users: users.set_password("gina", "reset-by-admin-1"), "password"),
        (lambda users: users.set_disabled("gina", True), "disabled"),
    ],
    ids=["password reset", "disabled"],
)
def test_an_admin_reset_or_disable_ends_every_session(
    sign_in: SignInService, db: Database, end: Any, reason: str
) -> None:
    grant = sign_in.attempt("gina", PASSWORD)
    assert grant
    code = grant.handoff_code
    end(UserService(db))
    assert sign_in.check_session(grant.session_id).ended == reason
    assert sign_in.claim_cookie(code) is None  # nor can its cookie be claimed any more


def test_the_session_check_is_one_select_and_writes_last_seen_at_most_every_five_minutes(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    grant = sign_in.attempt("gina", PASSWORD)
    assert grant
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "INSERT", "DELETE"):
            statements.append(verb)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        clock.now += LAST_SEEN_EVERY / 2
        assert sign_in.check_session(grant.session_id).user is not None
        assert statements == ["SELECT"]
        statements.clear()
        clock.now += LAST_SEEN_EVERY
        assert sign_in.check_session(grant.session_id).user is not None
        assert statements == ["SELECT", "UPDATE"]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_the_cookie_code_works_once_within_its_time_and_only_a_keyed_hash_is_stored(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    grant = sign_in.attempt("gina", PASSWORD)
    assert grant and sign_in.check_session(grant.session_id).cookie_pending
    cookie = sign_in.claim_cookie(grant.handoff_code)
    assert cookie is not None
    assert cookie.max_age_seconds == int(WEEK.total_seconds())
    assert sign_in.claim_cookie(grant.handoff_code) is None  # once
    assert not sign_in.check_session(grant.session_id).cookie_pending
    assert sign_in.resume(cookie.token).session_id == grant.session_id
    with db.session() as session:
        row = session.get(AuthSession, grant.session_id)
        assert row is not None
        keyed = hmac.new(TOKEN_KEY.encode(), cookie.token.encode(), hashlib.sha256).hexdigest()
        assert row.token_hash == keyed and cookie.token not in (row.token_hash, row.handoff_hash)

    late = sign_in.attempt("gina", PASSWORD)
    assert late
    clock.now += timedelta(seconds=HANDOFF_SECONDS)
    assert sign_in.claim_cookie(late.handoff_code) is None
    assert sign_in.claim_cookie("a-code-nobody-was-given") is None


def test_another_cookie_key_resumes_no_session(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    grant = sign_in.attempt("gina", PASSWORD)
    assert grant
    cookie = sign_in.claim_cookie(grant.handoff_code)
    assert cookie
    rotated = SignInService(db, token_key="a-rotated-key-of-the-same-length!!", lifetime=WEEK)
    assert rotated.resume(cookie.token).user is None


def test_revocation_and_expiry_do_not_move_when_the_lifetime_setting_changes(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    signed_out = sign_in.attempt("gina", PASSWORD)
    assert signed_out
    token = sign_in.claim_cookie(signed_out.handoff_code)
    assert token
    sign_in.sign_out(signed_out.session_id)
    clock.now += timedelta(hours=1)
    kept = sign_in.attempt("gina", PASSWORD)  # a new sign-in after the sign-out
    assert kept
    kept_token = sign_in.claim_cookie(kept.handoff_code)
    assert kept_token

    for days in (0.5, 1, 30, 365):  # the setting changed after these cookies were issued
        later = service(db, clock, lifetime=timedelta(days=days))
        assert later.resume(token.token).user is None, days
        assert later.resume(kept_token.token).user is not None, days

    clock.now += WEEK  # the expiry fixed when it was issued, whatever the setting says now
    check = service(db, clock, lifetime=timedelta(days=365)).resume(kept_token.token)
    assert check.user is None and check.ended == EXPIRED


def test_ended_and_expired_sessions_are_pruned_a_day_later(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    old = sign_in.attempt("gina", PASSWORD)
    assert old
    sign_in.sign_out(old.session_id)
    clock.now += timedelta(days=2)
    assert sign_in.attempt("gina", PASSWORD)
    with db.session() as session:
        assert session.get(AuthSession, old.session_id) is None


def test_active_sessions_count_valid_sign_ins_seen_lately(
    sign_in: SignInService, clock: Clock, db: Database
) -> None:
    UserService(db).create("hank", PASSWORD)
    assert sign_in.active_sessions() == 0
    laptop, phone, hank = (sign_in.attempt(n, PASSWORD) for n in ("gina", "gina", "hank"))
    assert laptop and phone and hank
    assert sign_in.active_sessions() == 3

    clock.now += ACTIVE_WITHIN - LAST_SEEN_EVERY
    assert sign_in.check_session(laptop.session_id).user  # laptop is in use: seen now
    clock.now += LAST_SEEN_EVERY + timedelta(seconds=1)
    assert sign_in.active_sessions() == 1  # phone and hank went quiet

    sign_in.sign_out(laptop.session_id)
    assert sign_in.active_sessions() == 0


def test_a_session_cannot_be_opened_for_a_disabled_user(
    sign_in: SignInService, db: Database
) -> None:
    UserService(db).create("hank", PASSWORD)
    hank = UserService(db).set_disabled("hank", True)
    with pytest.raises(PermissionDenied):
        sign_in.open_session(hank.id)


# --- settings -----------------------------------------------------------------------------


def test_development_cookie_key_is_generated_once_per_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path)
    first = resolve_cookie_key(s)
    assert len(first) >= 32 and resolve_cookie_key(s) == first
    assert (tmp_path / ".cookie_key").stat().st_mode & 0o777 == 0o600


def test_production_never_generates_a_cookie_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="NEXUS_COOKIE_KEY"):
        resolve_cookie_key(Settings(data_dir=tmp_path, env="production"))


def test_a_session_lifetime_must_be_positive() -> None:
    assert session_lifetime(Settings(cookie_expiry_days=0.5)) == timedelta(hours=12)
    with pytest.raises(ConfigError, match="NEXUS_COOKIE_EXPIRY_DAYS"):
        session_lifetime(Settings(cookie_expiry_days=0))
