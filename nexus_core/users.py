"""Accounts: creating and changing users, password rules, roles and feature flags.

Usernames are lower case (the sign-in form lower-cases what people type). Passwords are bcrypt
hashes; bcrypt reads at most 72 bytes, so longer passwords are refused rather than truncated.
Disabling a user or setting their password ends every sign-in session they have open: each
browser signed in as them shows the login form at its next interaction.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

import bcrypt
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AuthSession, User
from nexus_core.errors import NotFound, PermissionDenied, ValidationError
from nexus_core.roles import ADMIN_USERNAME, ROLES

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_BYTES = 72
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
BCRYPT_ROUNDS = 12
# A stored password hash starting with this is no hash at all: no password matches it (accounts
# made by single sign-on, erased accounts).
NO_PASSWORD_PREFIX = "!"

# Every optional feature a user can be given; unknown names are an error, never silently false.
KNOWN_FEATURES: dict[str, str] = {
    "pro_session_analytics": "Timeline, insights and run metrics under each chat session.",
    "prompt_compare": "Side-by-side persona and model comparison.",
    "workbench_export": "Download full workbench results as CSV or Parquet.",
}

# Pages that also need a feature flag on for the user (the menu leaves them out otherwise).
PAGE_FEATURES: dict[str, str] = {"compare": "prompt_compare", "evals": "prompt_compare"}

# Which pages each role may open (the navigation registers only these). Everyone browses
# personas; only admins may change them (PersonaService checks the actor).
ROLE_PAGES: dict[str, tuple[str, ...]] = {
    "member": ("chat", "compare", "feedback", "personas", "usage"),
    "analyst": (
        "chat",
        "compare",
        "feedback",
        "personas",
        "usage",
        "explorer",
        "workbench",
        "boards",
        "evals",
    ),
    "admin": (
        "chat",
        "compare",
        "feedback",
        "personas",
        "usage",
        "explorer",
        "workbench",
        "boards",
        "evals",
        "dashboard",
        "alerts",
        "alert_history",
        "audit",
        "users",
    ),
}


@dataclass(frozen=True)
class UserView:
    """A user as plain data (never the password hash)."""

    id: int
    username: str
    display_name: str
    email: str | None
    role: str
    features: dict[str, bool] = field(default_factory=dict)
    disabled: bool = False
    must_change_password: bool = False
    last_login_at: datetime | None = None
    created_at: datetime | None = None
    locked_until: datetime | None = None  # set while too many failed sign-ins keep them out
    has_password: bool = True  # False for accounts made by single sign-on
    sso_issuer: str | None = None  # the single sign-on provider that vouches for them

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def status(self) -> str:
        """``disabled``, ``locked`` or ``active``."""
        if self.disabled:
            return "disabled"
        return "locked" if self.locked_until is not None else "active"


def to_view(user: User) -> UserView:
    """Copy a ``User`` row into a ``UserView``."""
    return UserView(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        email=user.email,
        role=user.role,
        features=dict(user.features or {}),
        disabled=user.disabled,
        must_change_password=user.must_change_password,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
        locked_until=_lock_in_force(user.locked_until),
        has_password=password_usable(user.password_hash),
        sso_issuer=user.oidc_issuer,
    )


def password_usable(password_hash: str) -> bool:
    """Whether a stored hash is one a password can match (not a single sign-on account's)."""
    return not password_hash.startswith(NO_PASSWORD_PREFIX)


def active_admins(session: Session) -> int:
    """How many admins may sign in (the last one is never disabled, demoted or erased)."""
    return (
        session.scalar(
            select(func.count()).select_from(User).where(User.role == "admin", ~User.disabled)
        )
        or 0
    )


def _lock_in_force(until: datetime | None) -> datetime | None:
    return until if until is not None and until > utc_now() else None


def validate_password(password: str) -> None:
    """Refuse passwords that are too short, too long for bcrypt, or padded with spaces."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(f"The password must have at least {MIN_PASSWORD_CHARS} characters.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValidationError(
            f"The password must be at most {MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest); "
            "choose a shorter one."
        )
    if password != password.strip():
        raise ValidationError("The password must not begin or end with a space.")


def normalize_username(username: str) -> str:
    """Lower-case and check a username."""
    name = username.strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise ValidationError(
            "A username has 2–64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def validate_role(role: str) -> str:
    """Check a role name."""
    if role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    return role


def hash_password(password: str) -> str:
    """A bcrypt hash of a password that passed ``validate_password``."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches ``password_hash``."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))
    except ValueError:
        return False


def end_sessions(
    session: Session, user_id: int, reason: str, *, now: datetime | None = None
) -> int:
    """End every open sign-in session of a user (``reason`` from ``SESSION_END_REASONS``)."""
    ended = session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.ended_at.is_(None))
        .values(ended_at=now or utc_now(), end_reason=reason)
    )
    return int(ended.rowcount or 0)


# Why a user has a feature or not, worded for the admin who manages flags.
FEATURE_BY_ROLE = "on — every admin has it"
FEATURE_SET = "on — set for this user"
FEATURE_BY_DEVELOPMENT = "on — default in development"
FEATURE_OFF = "off"


@dataclass(frozen=True)
class FeatureState:
    """Whether a user has a feature, and why (``reason`` is one of the ``FEATURE_*`` texts)."""

    enabled: bool
    reason: str
    stored: bool  # the user's own flag, which is what ``set_feature`` changes


def feature_state(user: UserView, name: str, *, env: str) -> FeatureState:
    """Whether ``user`` has feature ``name`` and why: admins always do, so does everyone in
    development, and otherwise the user's own flag decides."""
    if name not in KNOWN_FEATURES:
        raise ValidationError(f"Unknown feature {name!r}; known: {', '.join(KNOWN_FEATURES)}.")
    stored = bool(user.features.get(name, False))
    if user.is_admin:
        return FeatureState(True, FEATURE_BY_ROLE, stored)
    if stored:
        return FeatureState(True, FEATURE_SET, stored)
    if env == "development":
        return FeatureState(True, FEATURE_BY_DEVELOPMENT, stored)
    return FeatureState(False, FEATURE_OFF, stored)


def feature_enabled(user: UserView, name: str, *, env: str) -> bool:
    """Whether ``user`` has feature ``name`` (see ``feature_state`` for why)."""
    return feature_state(user, name, env=env).enabled


def pages_for_role(role: str) -> tuple[str, ...]:
    """The page keys a role may open (some also need a feature, see ``pages_for``)."""
    return ROLE_PAGES[validate_role(role)]


def pages_for(user: UserView, *, env: str) -> tuple[str, ...]:
    """The page keys ``user`` may open: their role's pages whose feature (if any) is on."""
    return tuple(
        page
        for page in pages_for_role(user.role)
        if page not in PAGE_FEATURES or feature_enabled(user, PAGE_FEATURES[page], env=env)
    )


class UserService:
    """Create, list and change user accounts; every change is audited."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _get(self, session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == username.strip().lower()))
        if user is None:
            raise NotFound(f"No user named {username!r}.")
        return user

    def get(self, username: str) -> UserView:
        """The user called ``username``."""
        with self.db.session(read_only=True) as session:
            return to_view(self._get(session, username))

    def get_by_id(self, user_id: int) -> UserView:
        """The user with id ``user_id``."""
        with self.db.session(read_only=True) as session:
            user = session.get(User, user_id)
            if user is None:
                raise NotFound(f"No user with id {user_id}.")
            return to_view(user)

    def list(self) -> list[UserView]:
        """All users, by username."""
        with self.db.session(read_only=True) as session:
            return [to_view(u) for u in session.scalars(select(User).order_by(User.username))]

    def create(
        self,
        username: str,
        password: str,
        *,
        role: str = "member",
        display_name: str | None = None,
        email: str | None = None,
        must_change_password: bool = False,
        actor: UserView | None = None,
    ) -> UserView:
        """Create a user; refuses duplicates, unknown roles and weak passwords."""
        name = normalize_username(username)
        validate_role(role)
        validate_password(password)
        user = User(
            username=name,
            display_name=(display_name or name).strip(),
            email=(email or None),
            password_hash=hash_password(password),
            role=role,
            features={},
            must_change_password=must_change_password,
        )
        try:
            with self.db.session() as session:
                session.add(user)
                session.flush()
                audit.record(
                    session,
                    audit.USER_CREATED,
                    target_type="user",
                    target_id=user.id,
                    actor_id=actor.id if actor else None,
                    actor_name=actor.username if actor else None,
                    details={"username": name, "role": role},
                )
        except IntegrityError as exc:
            raise ValidationError(f"A user named {name!r} already exists.") from exc
        return to_view(user)

    def set_feature(
        self, username: str, feature: str, enabled: bool, *, actor: UserView | None = None
    ) -> UserView:
        """Turn one known feature flag on or off for a user."""
        if feature not in KNOWN_FEATURES:
            raise ValidationError(
                f"Unknown feature {feature!r}; known: {', '.join(KNOWN_FEATURES)}."
            )
        with self.db.session() as session:
            user = self._get(session, username)
            user.features = {**(user.features or {}), feature: enabled}
            audit.record(
                session,
                audit.USER_FEATURE_TOGGLED,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
                details={"feature": feature, "enabled": enabled},
            )
            return to_view(user)

    def set_disabled(
        self, username: str, disabled: bool, *, actor: UserView | None = None
    ) -> UserView:
        """Disable or enable a user (disabling signs them out everywhere); the last active admin
        cannot be disabled."""
        with self.db.session() as session:
            user = self._get(session, username)
            last_admin = user.role == "admin" and active_admins(session) <= 1
            if disabled and not user.disabled and last_admin:
                raise PermissionDenied("The last active admin cannot be disabled.")
            user.disabled = disabled
            if disabled:
                end_sessions(session, user.id, "disabled")
            audit.record(
                session,
                audit.USER_DISABLED if disabled else audit.USER_ENABLED,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
            )
            return to_view(user)

    def unlock(self, username: str, *, actor: UserView | None = None) -> UserView:
        """Let a user locked out by failed sign-ins try again now (their count starts afresh)."""
        with self.db.session() as session:
            user = self._get(session, username)
            was_locked = _lock_in_force(user.locked_until)
            user.locked_until = None
            user.failed_logins = 0
            audit.record(
                session,
                audit.USER_UNLOCKED,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
                details={"was_locked_until": was_locked.isoformat() if was_locked else None},
            )
            return to_view(user)

    def set_role(self, username: str, role: str, *, actor: UserView | None = None) -> UserView:
        """Change a user's role; the last active admin cannot be demoted."""
        validate_role(role)
        with self.db.session() as session:
            user = self._get(session, username)
            last_admin = user.role == "admin" and active_admins(session) <= 1
            if role != "admin" and not user.disabled and last_admin:
                raise PermissionDenied("The last active admin cannot be demoted.")
            old = user.role
            user.role = role
            audit.record(
                session,
                audit.USER_ROLE_CHANGED,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
                details={"from": old, "to": role},
            )
            return to_view(user)

    def set_password(
        self,
        username: str,
        password: str,
        *,
        actor: UserView | None = None,
        must_change: bool = False,
    ) -> UserView:
        """Set a new password; every sign-in session of the user ends (browsers and cookies)."""
        validate_password(password)
        new_hash = hash_password(password)  # before the transaction: bcrypt holds no write lock
        with self.db.session() as session:
            user = self._get(session, username)
            user.password_hash = new_hash
            user.must_change_password = must_change
            end_sessions(session, user.id, "password")
            user.failed_logins = 0
            user.locked_until = None
            by_self = actor is not None and actor.id == user.id
            audit.record(
                session,
                audit.PASSWORD_CHANGED if by_self else audit.USER_PASSWORD_RESET,
                target_type="user",
                target_id=user.id,
                actor_id=actor.id if actor else None,
                actor_name=actor.username if actor else None,
            )
            return to_view(user)

    def ensure_admin(self, password: str | None = None) -> tuple[bool, str | None]:
        """Create the ``admin`` user when no admin exists; returns (created, generated password)."""
        with self.db.session() as session:
            if active_admins(session) > 0:
                return False, None
        generated = None
        if not password:
            generated = password = secrets.token_urlsafe(12)
        self.create(ADMIN_USERNAME, password, role="admin", display_name="Administrator")
        return True, generated

    def change_own_password(
        self, username: str, current: str, new: str, *, verify_current: bool = True
    ) -> UserView:
        """A user changing their own password (the current one is checked unless forced)."""
        with self.db.session(read_only=True) as session:
            user = self._get(session, username)
            actor = to_view(user)
            current_hash = user.password_hash
        # The bcrypt check outside any transaction: it would hold SQLite's write lock otherwise.
        if verify_current and not check_password(current, current_hash):
            raise ValidationError("The current password is not right.")
        return self.set_password(username, new, actor=actor)
