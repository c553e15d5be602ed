"""Accounts: creation rules, passwords, roles, feature flags, the last-admin guard and the sign-in
sessions that disabling and password changes end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from nexus_core.auth import SignInService
from nexus_core.db.models import AuditEvent, AuthSession, User
from nexus_core.errors import PermissionDenied, ValidationError
from nexus_core.users import (
    FEATURE_BY_DEVELOPMENT,
    FEATURE_BY_ROLE,
    FEATURE_OFF,
    FEATURE_SET,
    KNOWN_FEATURES,
    UserService,
    UserView,
    check_password,
    feature_enabled,
    feature_state,
    pages_for,
    pages_for_role,
    validate_password,
)

GOOD = "correct-horse-1"


@pytest.fixture
def users(db) -> UserService:  # type: ignore[no-untyped-def]
    return UserService(db)


def test_a_created_user_is_stored_lowercase_with_a_bcrypt_hash(users: UserService, db) -> None:  # type: ignore[no-untyped-def]
    user = users.create("Alice", GOOD, role="analyst", email="a@example.com")
    assert user.username == "alice" and user.role == "analyst"
    with db.session() as session:
        row = session.scalars(select(User)).one()
        assert row.password_hash.startswith("$2") and GOOD not in row.password_hash
        assert check_password(GOOD, row.password_hash)
        assert session.scalars(select(AuditEvent.action)).all() == ["user.created"]


def test_duplicate_usernames_are_refused(users: UserService) -> None:
    users.create("bob", GOOD)
    with pytest.raises(ValidationError, match="already exists"):
        users.create("BOB", GOOD)


def test_unknown_roles_are_refused(users: UserService) -> None:
    with pytest.raises(ValidationError, match="Unknown role"):
        users.create("carol", GOOD, role="superuser")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-pw1", "at least 10"),
        ("x" * 73, "72 bytes"),
        ("é" * 37, "72 bytes"),  # 37 characters but 74 bytes
        (" padded-password ", "space"),
    ],
)
def test_weak_or_unusable_passwords_are_refused(password: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_password(password)


def test_a_72_byte_password_is_accepted() -> None:
    validate_password("x" * 72)


def test_feature_flags_are_off_for_members_until_turned_on(users: UserService) -> None:
    users.create("dave", GOOD)
    dave = users.get("dave")
    assert not feature_enabled(dave, "pro_session_analytics", env="production")
    dave = users.set_feature("dave", "pro_session_analytics", True)
    assert feature_enabled(dave, "pro_session_analytics", env="production")
    assert dave.features == {"pro_session_analytics": True}


def test_admins_and_development_have_every_feature() -> None:
    admin = UserView(id=1, username="a", display_name="A", email=None, role="admin")
    member = UserView(id=2, username="m", display_name="M", email=None, role="member")
    for name in KNOWN_FEATURES:
        assert feature_enabled(admin, name, env="production")
        assert feature_enabled(member, name, env="development")
        assert not feature_enabled(member, name, env="test")


@pytest.mark.parametrize(
    ("role", "flags", "env", "enabled", "reason"),
    [
        ("admin", {}, "production", True, FEATURE_BY_ROLE),
        ("admin", {"prompt_compare": False}, "development", True, FEATURE_BY_ROLE),
        ("member", {"prompt_compare": True}, "production", True, FEATURE_SET),
        ("member", {"prompt_compare": True}, "development", True, FEATURE_SET),
        ("member", {}, "development", True, FEATURE_BY_DEVELOPMENT),
        ("member", {"prompt_compare": False}, "development", True, FEATURE_BY_DEVELOPMENT),
        ("analyst", {}, "test", False, FEATURE_OFF),
        ("member", {"prompt_compare": False}, "production", False, FEATURE_OFF),
    ],
)
def test_a_feature_state_says_whether_the_user_has_it_and_why(
    role: str, flags: dict[str, bool], env: str, enabled: bool, reason: str
) -> None:
    user = UserView(id=3, username="u", display_name="U", email=None, role=role, features=flags)
    state = feature_state(user, "prompt_compare", env=env)
    assert (state.enabled, state.reason) == (enabled, reason)
    assert state.stored is flags.get("prompt_compare", False)
    assert feature_enabled(user, "prompt_compare", env=env) is enabled


def test_unknown_feature_names_are_an_error_not_false(users: UserService) -> None:
    member = UserView(id=2, username="m", display_name="M", email=None, role="member")
    with pytest.raises(ValidationError, match="Unknown feature"):
        feature_enabled(member, "time_travel", env="production")
    users.create("erin", GOOD)
    with pytest.raises(ValidationError, match="Unknown feature"):
        users.set_feature("erin", "time_travel", True)


def test_roles_see_their_pages_only() -> None:
    # Everyone browses personas; only admins may change them (the service checks the actor).
    assert pages_for_role("member") == ("chat", "compare", "feedback", "personas", "usage")
    assert "usage" in pages_for_role("analyst") and "usage" in pages_for_role("admin")
    assert "workbench" in pages_for_role("analyst") and "personas" in pages_for_role("analyst")
    admin_only = {"dashboard", "audit", "users"}
    assert not admin_only & set(pages_for_role("analyst") + pages_for_role("member"))
    assert admin_only | {"personas"} <= set(pages_for_role("admin"))


def test_the_compare_page_needs_the_prompt_compare_feature_outside_development() -> None:
    member = UserView(id=2, username="m", display_name="M", email=None, role="member")
    flagged = UserView(
        id=3,
        username="f",
        display_name="F",
        email=None,
        role="member",
        features={"prompt_compare": True},
    )
    admin = UserView(id=1, username="a", display_name="A", email=None, role="admin")
    assert "compare" not in pages_for(member, env="production")
    assert pages_for(member, env="production") == ("chat", "feedback", "personas", "usage")
    assert "compare" in pages_for(flagged, env="production")
    assert "compare" in pages_for(admin, env="production")
    assert "compare" in pages_for(member, env="development")


def test_the_last_active_admin_cannot_be_disabled_or_demoted(users: UserService) -> None:
    users.create("root1", GOOD, role="admin")
    with pytest.raises(PermissionDenied):
        users.set_disabled("root1", True)
    with pytest.raises(PermissionDenied):
        users.set_role("root1", "member")
    users.create("root2", GOOD, role="admin")
    assert users.set_disabled("root1", True).disabled
    with pytest.raises(PermissionDenied):
        users.set_role("root2", "analyst")


def test_ensure_admin_creates_one_admin_once(users: UserService) -> None:
    created, password = users.ensure_admin()
    assert created and password and len(password) >= 10
    assert users.ensure_admin() == (False, None)
    assert [u.username for u in users.list()] == ["admin"]


def test_changing_your_own_password_checks_the_current_one(users: UserService) -> None:
    users.create("fay", GOOD)
    with pytest.raises(ValidationError, match="current password"):
        users.change_own_password("fay", "wrong-password", "another-pass-2")
    users.change_own_password("fay", GOOD, "another-pass-2")


def test_disabling_or_setting_a_password_ends_that_users_sessions_only(
    users: UserService, db
) -> None:  # type: ignore[no-untyped-def]
    sign_in = SignInService(db, token_key="a-test-key-for-hashes", lifetime=timedelta(days=7))
    users.create("gil", GOOD)
    users.create("hal", GOOD)
    users.create("ida", GOOD)
    gil, hal, ida = (sign_in.open_session(users.get(name).id) for name in ("gil", "hal", "ida"))

    users.set_disabled("gil", True)
    users.set_password("hal", "a-reset-password-1", actor=users.get("ida"))

    with db.session() as session:
        ended = {
            row.user_id: (row.ended_at is not None, row.end_reason)
            for row in session.scalars(select(AuthSession))
        }
    assert ended == {
        gil.user.id: (True, "disabled"),
        hal.user.id: (True, "password"),
        ida.user.id: (False, None),
    }
    users.set_disabled("gil", False)  # enabling again revives no session
    assert sign_in.check_session(gil.session_id).ended == "disabled"
