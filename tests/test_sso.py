"""Single sign-on: a verified OpenID Connect identity becomes one Nexus user, made on first
sign-in with a username that passes the rules, its role read from the configured claim at every
sign-in (audited), and kept out when disabled — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from nexus_core import audit
from nexus_core.auth import SignInService
from nexus_core.db.engine import Database
from nexus_core.db.models import AuditEvent, AuthSession, User
from nexus_core.errors import ValidationError
from nexus_core.settings import Settings
from nexus_core.sso import IDENTITY_MAX_AGE, OidcIdentity, RoleMapping, username_candidates
from nexus_core.users import UserService, normalize_username
from tests.constants import PASSWORD

ISSUER = "https://idp.example.com"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ROLES = RoleMapping(
    claim="groups",
    admin_values=frozenset({"nexus-admins"}),
    analyst_values=frozenset({"nexus-analysts", "data"}),
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sign_in(db: Database, clock: Clock) -> SignInService:
    return SignInService(
        db, token_key="k" * 40, lifetime=timedelta(days=7), clock=clock, roles=ROLES
    )


def identity(sub: str = "sub-ann", *, at: datetime = NOW, **claims: Any) -> OidcIdentity:
    base = {"iss": ISSUER, "sub": sub, "iat": int(at.timestamp()), "email": "ann@example.com"}
    return OidcIdentity.from_claims({**base, **claims})


def user_row(db: Database, username: str) -> User:
    with db.session() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        session.expunge(user)
        return user


def actions(db: Database, *names: str) -> list[tuple[str, dict[str, Any]]]:
    with db.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(names)).order_by(AuditEvent.id)
        )
        return [(row.action, dict(row.details or {})) for row in rows]


def test_first_sign_in_creates_the_user_with_the_role_the_claim_maps_to(
    sign_in: SignInService, db: Database
) -> None:
    grant = sign_in.sign_in_with_identity(
        identity(name="Ann Lee", groups=["staff", "nexus-analysts"])
    )

    assert grant is not None
    assert (grant.user.username, grant.user.display_name, grant.user.role) == (
        "ann",
        "Ann Lee",
        "analyst",
    )
    assert grant.user.email == "ann@example.com"
    assert grant.user.has_password is False and grant.user.sso_issuer == ISSUER
    row = user_row(db, "ann")
    assert (row.oidc_issuer, row.oidc_subject) == (ISSUER, "sub-ann")
    assert sign_in.check_session(grant.session_id).user is not None
    with db.session() as session:
        assert session.get(AuthSession, grant.session_id).method == "oidc"  # type: ignore[union-attr]
    created = actions(db, audit.USER_CREATED, audit.SIGN_IN)
    assert created == [
        (audit.USER_CREATED, {"username": "ann", "role": "analyst", "method": "oidc"}),
        (audit.SIGN_IN, {"method": "oidc", "issuer": ISSUER}),
    ]


def test_the_role_is_read_again_at_every_sign_in_and_a_change_is_audited(
    sign_in: SignInService, db: Database, clock: Clock
) -> None:
    first = sign_in.sign_in_with_identity(identity(groups=["staff"]))
    assert first is not None and first.user.role == "member"

    clock.now = NOW + timedelta(minutes=1)
    second = sign_in.sign_in_with_identity(identity(at=clock.now, groups="nexus-admins"))

    assert second is not None and second.user.role == "admin"
    assert second.user.id == first.user.id  # the same person: found by issuer and subject
    changes = actions(db, audit.USER_ROLE_CHANGED)
    assert changes == [
        (audit.USER_ROLE_CHANGED, {"from": "member", "to": "admin", "by": "oidc claim groups"})
    ]
    third = sign_in.sign_in_with_identity(identity(at=clock.now, groups=["nexus-admins"]))
    assert third is not None and len(actions(db, audit.USER_ROLE_CHANGED)) == 1  # no change


def test_without_a_role_claim_new_users_are_members_and_nexus_keeps_deciding_roles(
    db: Database, clock: Clock
) -> None:
    plain = SignInService(db, token_key="k" * 40, lifetime=timedelta(days=7), clock=clock)
    grant = plain.sign_in_with_identity(identity(groups=["nexus-admins"]))
    assert grant is not None and grant.user.role == "member"
    UserService(db).set_role("ann", "analyst")

    again = plain.sign_in_with_identity(identity(groups=["staff"]))

    assert again is not None and again.user.role == "analyst"


def test_a_disabled_user_stays_out_whatever_the_provider_says(
    sign_in: SignInService, db: Database
) -> None:
    assert sign_in.sign_in_with_identity(identity(groups=["nexus-admins"])) is not None
    UserService(db).create("boss", PASSWORD, role="admin")  # ann is not the last admin
    UserService(db).set_disabled("ann", True)

    refused = sign_in.sign_in_with_identity(identity(groups=["nexus-admins"]))

    assert refused is None
    row = user_row(db, "ann")
    assert row.disabled and row.role == "admin"
    failures = actions(db, audit.SIGN_IN_FAILED)
    assert failures[-1] == (
        audit.SIGN_IN_FAILED,
        {"reason": "disabled", "method": "oidc", "issuer": ISSUER},
    )


def test_an_identity_that_is_no_longer_fresh_signs_no_one_in(
    sign_in: SignInService, db: Database, clock: Clock
) -> None:
    old = identity(at=NOW - IDENTITY_MAX_AGE - timedelta(seconds=1))
    no_iat = OidcIdentity.from_claims({"iss": ISSUER, "sub": "x", "email": "x@example.com"})
    future = identity(at=NOW + timedelta(hours=1))

    assert sign_in.sign_in_with_identity(old) is None
    assert sign_in.sign_in_with_identity(no_iat) is None
    assert sign_in.sign_in_with_identity(future) is None
    with db.session() as session:
        assert session.scalar(select(User).where(User.oidc_subject.is_not(None))) is None


def test_an_identity_never_takes_over_a_password_account_with_the_same_name_or_email(
    sign_in: SignInService, db: Database
) -> None:
    UserService(db).create("ann", PASSWORD, role="admin", email="ann@example.com")

    grant = sign_in.sign_in_with_identity(identity(groups=[]))

    assert grant is not None and grant.user.username == "ann-2" and grant.user.role == "member"
    assert user_row(db, "ann").oidc_subject is None
    assert sign_in.attempt("ann-2", "") is None  # a single sign-on account has no password


def test_the_last_active_admin_is_not_demoted_by_a_claim(
    sign_in: SignInService, db: Database, clock: Clock
) -> None:
    assert sign_in.sign_in_with_identity(identity(groups=["nexus-admins"])) is not None

    kept = sign_in.sign_in_with_identity(identity(groups=["staff"]))

    assert kept is not None and kept.user.role == "admin"
    assert actions(db, audit.SIGN_IN)[-1][1]["role_claim_not_applied"] == "member"
    assert actions(db, audit.USER_ROLE_CHANGED) == []


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"email": "Ann.Lee+nexus@Example.com"}, "ann.lee-nexus"),
        ({"email": "Zoë Ünal@example.com"}, "zo-nal"),
        ({"email": "_@example.com", "preferred_username": "ann_l"}, "ann_l"),
        ({"email": None, "name": "Ann Lee"}, "ann-lee"),
        ({"email": "x" * 80 + "@example.com"}, "x" * 64),
        ({"email": "!!@example.com"}, "user"),
    ],
)
def test_usernames_from_single_sign_on_pass_the_username_rules(
    claims: dict[str, Any], expected: str
) -> None:
    candidates = username_candidates(identity(**claims))
    first, second = next(candidates), next(candidates)
    assert first == expected
    assert normalize_username(first) == first and normalize_username(second) == second
    assert second.endswith("-2") and len(second) <= 64


def test_usernames_are_deduplicated(sign_in: SignInService, db: Database) -> None:
    names = []
    for n in range(3):
        grant = sign_in.sign_in_with_identity(identity(f"sub-{n}"))
        assert grant is not None
        names.append(grant.user.username)
    assert names == ["ann", "ann-2", "ann-3"]


def test_parallel_first_sign_ins_of_one_person_make_one_user(
    sign_in: SignInService, db: Database
) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        results.append(sign_in.sign_in_with_identity(identity(groups=["data"])))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4 and all(r is not None for r in results)
    assert {r.user.id for r in results} == {results[0].user.id}
    with db.session() as session:
        assert len(list(session.scalars(select(User).where(User.oidc_subject == "sub-ann")))) == 1


def test_claims_without_issuer_or_subject_are_refused() -> None:
    with pytest.raises(ValidationError):
        OidcIdentity.from_claims({"iss": ISSUER, "email": "a@example.com"})
    with pytest.raises(ValidationError):
        OidcIdentity.from_claims({"sub": "x", "iss": ""})


def test_the_role_mapping_comes_from_the_settings() -> None:
    settings = Settings(
        oidc_role_claim=" roles ",
        oidc_admin_values="admins, ops ",
        oidc_analyst_values="pm",
    )
    mapping = RoleMapping.from_settings(settings)
    assert mapping == RoleMapping("roles", frozenset({"admins", "ops"}), frozenset({"pm"}))
    assert mapping.role_for({"roles": ["pm", "ops"]}) == "admin"
    assert mapping.role_for({"roles": "pm"}) == "analyst"
    assert mapping.role_for({"roles": 3}) == "member"
    assert mapping.role_for({}) == "member"
    assert RoleMapping().role_for({"roles": ["admins"]}) is None
