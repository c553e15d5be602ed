"""Sign-in hardening: lock-out in the database, one message for every failure, cookie revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from nexus_core.auth import (
    LOCKOUT_MINUTES,
    LOCKOUT_THRESHOLD,
    SignInService,
    cookie_issued_at,
    resolve_cookie_key,
)
from nexus_core.db.models import AuditEvent
from nexus_core.errors import ConfigError
from nexus_core.settings import Settings
from nexus_core.users import UserService, check_password

PASSWORD = "correct-horse-1"


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sign_in(db, clock: Clock) -> SignInService:  # type: ignore[no-untyped-def]
    UserService(db).create("gina", PASSWORD)
    return SignInService(db, clock=clock)


def _actions(db) -> list[str]:  # type: ignore[no-untyped-def]
    with db.session() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_five_failures_lock_the_account_for_fifteen_minutes(
    sign_in: SignInService, clock: Clock, db
) -> None:  # type: ignore[no-untyped-def]
    results = [sign_in.record_failure("gina") for _ in range(LOCKOUT_THRESHOLD)]
    assert results == [False] * (LOCKOUT_THRESHOLD - 1) + [True]
    assert sign_in.is_locked("gina")
    # While locked, even the right password cannot match.
    locked_hash = sign_in.credentials()["usernames"]["gina"]["password"]
    assert not check_password(PASSWORD, locked_hash)
    clock.now += timedelta(minutes=LOCKOUT_MINUTES, seconds=1)
    assert not sign_in.is_locked("gina")
    assert check_password(PASSWORD, sign_in.credentials()["usernames"]["gina"]["password"])
    assert _actions(db)[-2:] == ["auth.sign_in_failed", "auth.locked_out"]


def test_an_expired_lockout_starts_a_fresh_count(sign_in: SignInService, clock: Clock) -> None:
    for _ in range(LOCKOUT_THRESHOLD):
        sign_in.record_failure("gina")
    clock.now += timedelta(minutes=LOCKOUT_MINUTES + 1)
    assert sign_in.record_failure("gina") is False
    assert not sign_in.is_locked("gina")


def test_success_resets_the_failure_count(sign_in: SignInService) -> None:
    for _ in range(LOCKOUT_THRESHOLD - 1):
        sign_in.record_failure("gina")
    user = sign_in.record_success("gina")
    assert user.username == "gina"
    assert sign_in.record_failure("gina") is False  # count restarted at 1


def test_failures_for_unknown_users_are_audited_without_locking_anything(
    sign_in: SignInService, db
) -> None:  # type: ignore[no-untyped-def]
    assert sign_in.record_failure(None) is False
    assert sign_in.record_failure("nobody") is False
    assert _actions(db)[-2:] == ["auth.sign_in_failed", "auth.sign_in_failed"]


def test_disabled_users_are_not_offered_to_the_login_form(sign_in: SignInService, db) -> None:  # type: ignore[no-untyped-def]
    UserService(db).create("hank", PASSWORD)
    UserService(db).set_disabled("hank", True)
    assert "hank" not in sign_in.credentials()["usernames"]
    assert sign_in.active_user("hank") is None


def test_sign_out_revokes_cookies_issued_before_it(sign_in: SignInService, clock: Clock) -> None:
    issued = clock.now - timedelta(minutes=5)
    assert sign_in.cookie_accepted("gina", issued)
    sign_in.record_sign_out("gina")
    assert not sign_in.cookie_accepted("gina", issued)
    clock.now += timedelta(seconds=1)
    assert sign_in.cookie_accepted("gina", clock.now)


def test_a_password_change_revokes_older_cookies(sign_in: SignInService, db) -> None:  # type: ignore[no-untyped-def]
    issued = datetime.now(UTC) - timedelta(seconds=1)
    UserService(db).set_password("gina", "brand-new-pass-9")
    assert not sign_in.cookie_accepted("gina", issued)


def test_cookies_of_unknown_or_disabled_users_are_refused(sign_in: SignInService, db) -> None:  # type: ignore[no-untyped-def]
    assert not sign_in.cookie_accepted("nobody", datetime.now(UTC))
    UserService(db).create("ivy", PASSWORD)
    UserService(db).set_disabled("ivy", True)
    assert not sign_in.cookie_accepted("ivy", datetime.now(UTC))


def test_cookie_issue_time_is_expiry_minus_lifetime() -> None:
    expires = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()
    assert cookie_issued_at(expires, 7) == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_development_cookie_key_is_generated_once_per_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path)
    first = resolve_cookie_key(s)
    assert len(first) >= 32 and resolve_cookie_key(s) == first
    assert (tmp_path / ".cookie_key").stat().st_mode & 0o777 == 0o600


def test_production_never_generates_a_cookie_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="NEXUS_COOKIE_KEY"):
        resolve_cookie_key(Settings(data_dir=tmp_path, env="production"))
