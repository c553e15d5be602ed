"""Single sign-on: an OpenID Connect identity becomes a Nexus user.

Streamlit's ``st.login`` runs the OIDC round trip (Authlib checks the ID token's signature
against the provider's JWKS, its issuer, audience, expiry and nonce); what arrives here is the
verified claims. Nexus then decides, in the database, who that is:

- **One user per identity.** The ID token's issuer and subject (``iss``, ``sub``) name a person;
  they are stored on the user, and the next sign-in finds the same user whatever the e-mail or
  name say by then. An identity never takes over an existing account by e-mail (a provider that
  lets people set their own address could otherwise sign in as anyone): a first sign-in creates a
  new user, named after the e-mail's local part, made to pass the username rules and
  deduplicated (``ann``, ``ann-2``, ...).
- **Roles from the provider.** When ``NEXUS_OIDC_ROLE_CLAIM`` is set, the claim's values are
  read at every sign-in: any of ``NEXUS_OIDC_ADMIN_VALUES`` makes an admin, else any of
  ``NEXUS_OIDC_ANALYST_VALUES`` an analyst, else a member. A change is an audit event. The last
  active admin is not demoted (the same rule as on the Users page). Without the setting, roles
  are managed in Nexus and a new user is a member.
- **Nexus has the last word.** A disabled user stays out whatever the provider says, and an
  identity is taken only while it is fresh (``IDENTITY_MAX_AGE``, from the ID token's ``iat``),
  so an identity left behind in a browser cannot sign in again later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.models import User
from nexus_core.errors import ValidationError
from nexus_core.settings import Settings
from nexus_core.users import NO_PASSWORD_PREFIX, USERNAME_PATTERN, active_admins

METHOD = "oidc"
# An identity older than this (by its ID token's ``iat``) is not taken: sign in again.
IDENTITY_MAX_AGE = timedelta(minutes=10)
# How far ahead of this server's clock a provider's ``iat`` may be.
CLOCK_LEEWAY = timedelta(minutes=2)
# Stored instead of a password hash for users made by single sign-on: no password matches it.
NO_PASSWORD = NO_PASSWORD_PREFIX + "sso"
FALLBACK_USERNAME = "user"
USERNAME_MAX_CHARS = 64
MAX_DUPLICATES = 1000
_NOT_ALLOWED = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class OidcIdentity:
    """A person as the provider vouched for them: the verified claims of one sign-in."""

    issuer: str
    subject: str
    issued_at: datetime | None
    email: str | None = None
    name: str | None = None
    preferred_username: str | None = None
    claims: Mapping[str, Any] | None = None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> OidcIdentity:
        """The identity of an ID token's claims (``st.user``); refuses one without iss or sub."""
        issuer, subject = claims.get("iss"), claims.get("sub")
        if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
            raise ValidationError("The sign-in provider did not say who you are (iss and sub).")
        iat = claims.get("iat")
        issued_at = (
            datetime.fromtimestamp(iat, UTC)
            if isinstance(iat, int | float) and not isinstance(iat, bool)
            else None
        )
        return cls(
            issuer=issuer,
            subject=subject,
            issued_at=issued_at,
            email=_text(claims.get("email")),
            name=_text(claims.get("name")),
            preferred_username=_text(claims.get("preferred_username")),
            claims=dict(claims),
        )

    def is_fresh(self, now: datetime) -> bool:
        """Whether the ID token was issued recently enough to sign in with."""
        if self.issued_at is None:
            return False
        return now - IDENTITY_MAX_AGE <= self.issued_at <= now + CLOCK_LEEWAY


@dataclass(frozen=True)
class RoleMapping:
    """Which claim decides the role, and which of its values make an admin or an analyst."""

    claim: str = ""
    admin_values: frozenset[str] = frozenset()
    analyst_values: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> RoleMapping:
        """The mapping of ``NEXUS_OIDC_ROLE_CLAIM`` and ``NEXUS_OIDC_*_VALUES``."""
        return cls(
            claim=settings.oidc_role_claim.strip(),
            admin_values=_comma_set(settings.oidc_admin_values),
            analyst_values=_comma_set(settings.oidc_analyst_values),
        )

    def role_for(self, claims: Mapping[str, Any]) -> str | None:
        """The role the claims give, or None when no claim is configured (Nexus decides)."""
        if not self.claim:
            return None
        values = _claim_values(claims.get(self.claim))
        if values & self.admin_values:
            return "admin"
        if values & self.analyst_values:
            return "analyst"
        return "member"


@dataclass(frozen=True)
class MappedUser:
    """The user an identity signed in as, and what the sign-in changed about them."""

    user: User
    created: bool
    old_role: str | None  # the role before a claim changed it
    role_not_applied: str | None  # a claimed role withheld (it would demote the last admin)


def find_or_create_user(session: Session, identity: OidcIdentity, mapping: RoleMapping) -> User:
    """The user of ``identity`` (locked for this transaction), made on first sign-in."""
    user = session.scalar(
        select(User)
        .where(User.oidc_issuer == identity.issuer, User.oidc_subject == identity.subject)
        .with_for_update()
    )
    if user is not None:
        return user
    user = User(
        username=_free_username(session, identity),
        display_name=_display_name(identity),
        email=identity.email,
        password_hash=NO_PASSWORD,
        role=mapping.role_for(identity.claims or {}) or "member",
        features={},
        oidc_issuer=identity.issuer,
        oidc_subject=identity.subject,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        audit.USER_CREATED,
        target_type="user",
        target_id=user.id,
        actor_name=user.username,
        details={"username": user.username, "role": user.role, "method": METHOD},
    )
    return user


def apply_claims(
    session: Session, user: User, identity: OidcIdentity, mapping: RoleMapping
) -> MappedUser:
    """Bring an enabled user in line with what the provider says now: e-mail, name, role."""
    if identity.email and identity.email != user.email:
        user.email = identity.email
    if identity.name and identity.name.strip()[:120] != user.display_name:
        user.display_name = identity.name.strip()[:120]
    role = mapping.role_for(identity.claims or {})
    if role is None or role == user.role:
        return MappedUser(user, created=False, old_role=None, role_not_applied=None)
    if user.role == "admin" and active_admins(session) <= 1:
        return MappedUser(user, created=False, old_role=None, role_not_applied=role)
    old, user.role = user.role, role
    audit.record(
        session,
        audit.USER_ROLE_CHANGED,
        target_type="user",
        target_id=user.id,
        actor_name=METHOD,
        details={"from": old, "to": role, "by": f"{METHOD} claim {mapping.claim}"},
    )
    return MappedUser(user, created=False, old_role=old, role_not_applied=None)


def username_candidates(identity: OidcIdentity) -> Iterable[str]:
    """Usernames to try for a new user, best first: the e-mail's local part (else the preferred
    username, else the name) cleaned to the username rules, then ``-2``, ``-3``, ..."""
    base = _clean_username(identity)
    yield base
    for n in range(2, MAX_DUPLICATES):
        suffix = f"-{n}"
        yield base[: USERNAME_MAX_CHARS - len(suffix)] + suffix


def _free_username(session: Session, identity: OidcIdentity) -> str:
    for candidate in username_candidates(identity):
        taken = session.scalar(select(User.id).where(User.username == candidate))
        if taken is None:
            return candidate
    raise ValidationError("No free username for this sign-in; ask an administrator.")


def _clean_username(identity: OidcIdentity) -> str:
    sources = (
        identity.email.split("@", 1)[0] if identity.email else None,
        identity.preferred_username,
        identity.name,
    )
    for source in sources:
        if not source:
            continue
        name = _NOT_ALLOWED.sub("-", source.strip().lower()).strip("._-")[:USERNAME_MAX_CHARS]
        name = name.rstrip("._-")
        if USERNAME_PATTERN.match(name):
            return name
    return FALLBACK_USERNAME


def _display_name(identity: OidcIdentity) -> str:
    name = (identity.name or "").strip() or (identity.email or "").strip()
    return (name or _clean_username(identity))[:120]


def _claim_values(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple | set | frozenset):
        return {str(item) for item in value}
    return set()


def _comma_set(text: str) -> frozenset[str]:
    return frozenset(v.strip() for v in text.split(",") if v.strip())


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
