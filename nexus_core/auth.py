"""Sign-in: password checks, lock-out and sign-in sessions, each decided in the database.

Nexus checks passwords itself; the login form only collects them.

- **One atomic decision per attempt.** The bcrypt check runs first, outside any transaction
  (holding SQLite's write lock for a quarter of a second per attempt would stall every other
  writer). Then one transaction locks the user's row (``SELECT … FOR UPDATE`` on PostgreSQL;
  SQLite transactions start with ``BEGIN IMMEDIATE``, see ``nexus_core.db.engine``) and decides
  against the state it now holds: a lock in force refuses even the right password, a wrong password
  is counted (``LOCKOUT_THRESHOLD`` failures lock the account for ``LOCKOUT_MINUTES``), and only a
  right password with no lock in force signs in and resets the count. An attempt whose account
  changed between the check and the decision (new password, lock) is refused and not counted.
  Parallel attempts are therefore decided one at a time, every failure counts, and no success is
  accepted once the threshold is reached.
- **Equal cost.** Every attempt runs exactly one bcrypt check of the real cost: unknown, disabled
  and locked accounts are checked against a dummy hash, so the answer time does not say which
  usernames exist or are locked. One message answers every failure.
- **Sessions.** A sign-in is an ``AuthSession`` row. The browser session that signed in keeps its
  id, and every run of the app checks it (one query by primary key, joined to the user), so
  signing out, a password change or disabling ends every open browser of that user at its next
  interaction. The login cookie holds a random token of its own (only a keyed hash is stored),
  set HttpOnly by the server in exchange for a one-time code (``nexus_core.web.session_cookie``).
  Issue and expiry times are stored when a session is issued, so changing
  ``NEXUS_COOKIE_EXPIRY_DAYS`` later moves no existing session. The old login cookie (a JWT
  holding only its expiry) is never read.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import bcrypt
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nexus_core import audit
from nexus_core.db.columns import utc_now
from nexus_core.db.engine import Database
from nexus_core.db.models import AuthSession, User
from nexus_core.errors import ConfigError, DatabaseUnavailable, PermissionDenied
from nexus_core.settings import Settings
from nexus_core.sso import OidcIdentity, RoleMapping, apply_claims, find_or_create_user
from nexus_core.users import (
    BCRYPT_ROUNDS,
    MAX_PASSWORD_BYTES,
    UserService,
    UserView,
    end_sessions,
    password_usable,
    to_view,
)

_LOG = logging.getLogger(__name__)

LOCKOUT_THRESHOLD = 5
LOCKOUT_MINUTES = 15
SESSION_COOKIE = "nexus_session"
# streamlit-authenticator's JWT cookie (username and expiry only). Never read; cleared when seen.
LEGACY_COOKIE = "nexus_auth"
COOKIE_KEY_FILE = ".cookie_key"
TOKEN_BYTES = 32
USERNAME_MAX_CHARS = 64  # the audit trail keeps at most this much of a username typed
# How long the browser has to claim the login cookie of a new session.
HANDOFF_SECONDS = 60
# A session's last-seen time is written at most this often (the check itself only reads).
LAST_SEEN_EVERY = timedelta(minutes=5)
# Ended and expired sessions stay this long, so a browser still holding one can be told why.
KEEP_ENDED = timedelta(days=1)
# A valid session seen within this long counts as active (``nexus_active_sessions``); it must be
# longer than ``LAST_SEEN_EVERY``, how stale a session's last-seen time may be while it is in use.
ACTIVE_WITHIN = timedelta(minutes=15)
# Why a session is no longer valid, beyond ``SESSION_END_REASONS``.
EXPIRED = "expired"
UNKNOWN = "unknown"
PASSWORD = "password"
OIDC = "oidc"
# A single sign-on identity may try to create an account this many times (two first sign-ins of
# one person at once: the second finds the first's account).
SSO_ATTEMPTS = 3
SIGN_IN_FAILED_MESSAGE = (
    "Incorrect username or password. After "
    f"{LOCKOUT_THRESHOLD} failed attempts an account is locked for {LOCKOUT_MINUTES} minutes."
)
# What bcrypt checks instead of a password it cannot take (over 72 bytes), at the same cost.
_OVERLONG_STAND_IN = b"password-over-72-bytes"


def resolve_cookie_key(settings: Settings) -> str:
    """The key of the session-token hashes: the setting, or (outside production) a random key kept
    in the data dir."""
    settings.require_production_secrets()
    if settings.cookie_key:
        return settings.cookie_key
    path = Path(settings.data_dir) / COOKIE_KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        if key:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def session_lifetime(settings: Settings) -> timedelta:
    """How long a new sign-in session (and its cookie) lasts."""
    if settings.cookie_expiry_days <= 0:
        raise ConfigError("NEXUS_COOKIE_EXPIRY_DAYS must be more than 0.")
    return timedelta(days=settings.cookie_expiry_days)


class PasswordHasher(Protocol):
    """Checks a password against a stored hash; the seam that tests count checks through."""

    def check(self, password: str, password_hash: str) -> bool:
        """Whether ``password`` matches ``password_hash``."""
        ...

    def dummy_hash(self) -> str:
        """A hash of the real cost that no password matches."""
        ...


class BcryptHasher:
    """bcrypt checks at the cost real hashes are made with; each check costs one bcrypt run."""

    def __init__(self, rounds: int = BCRYPT_ROUNDS) -> None:
        self.rounds = rounds
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def check(self, password: str, password_hash: str) -> bool:
        """Whether ``password`` matches; a password bcrypt refuses costs the same and fails."""
        secret = password.encode("utf-8")
        overlong = len(secret) > MAX_PASSWORD_BYTES
        try:
            matched = bcrypt.checkpw(
                _OVERLONG_STAND_IN if overlong else secret, password_hash.encode("ascii")
            )
        except ValueError:
            return False
        return matched and not overlong

    def dummy_hash(self) -> str:
        """A hash of a random secret nobody knows, made once, at this hasher's cost."""
        with self._lock:
            if self._dummy is None:
                secret = secrets.token_urlsafe(32).encode("ascii")
                self._dummy = bcrypt.hashpw(secret, bcrypt.gensalt(self.rounds)).decode("ascii")
            return self._dummy


@dataclass(frozen=True)
class SessionGrant:
    """A new sign-in session: its id, kept by the browser session, and the one-time code that
    claims its login cookie."""

    session_id: int
    handoff_code: str
    user: UserView


@dataclass(frozen=True)
class SessionCheck:
    """What a run learns about a sign-in session: the user while it is valid, else why not
    (one of ``SESSION_END_REASONS``, ``EXPIRED`` or ``UNKNOWN``)."""

    session_id: int | None
    user: UserView | None
    ended: str | None = None
    cookie_pending: bool = False  # the cookie is unclaimed and its code still works


@dataclass(frozen=True)
class IssuedCookie:
    """A login cookie to set: the session's random token and how long it lives."""

    token: str
    max_age_seconds: int


class SignInService:
    """Sign-in attempts, lock-outs and sign-in sessions, decided in the database."""

    def __init__(
        self,
        db: Database,
        *,
        token_key: str,
        lifetime: timedelta,
        clock: Callable[[], datetime] = utc_now,
        hasher: PasswordHasher | None = None,
        roles: RoleMapping | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.roles = roles or RoleMapping()
        self.hasher: PasswordHasher = hasher or BcryptHasher()
        self.lifetime = lifetime
        self._token_key = token_key.encode("utf-8")
        self._users = UserService(db)

    # --- attempts ---------------------------------------------------------------------------

    def attempt(self, username: str, password: str) -> SessionGrant | None:
        """Check a password and decide atomically: a new session when signed in, else None."""
        name = username.strip().lower()
        checked_hash = self._checkable_hash(name)
        matched = self.hasher.check(password, checked_hash or self.hasher.dummy_hash())
        return self._decide(name, checked_hash, matched and checked_hash is not None)

    def _checkable_hash(self, name: str) -> str | None:
        """The password hash to check, or None when the account cannot sign in right now."""
        with self.db.session(read_only=True) as session:
            user = session.scalar(select(User).where(User.username == name))
            if user is None or user.disabled or self._locked(user):
                return None
            return user.password_hash if password_usable(user.password_hash) else None

    def _decide(self, name: str, checked_hash: str | None, matched: bool) -> SessionGrant | None:
        now = self.clock()
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == name).with_for_update())
            refusal = self._refusal(user, checked_hash)
            if refusal is not None or user is None:
                _audit_failure(session, name, user, {"reason": refusal})
                return None
            if not matched:
                self._count_failure(session, user, now)
                return None
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            audit.record(
                session,
                audit.SIGN_IN,
                actor_id=user.id,
                actor_name=user.username,
                details={"method": PASSWORD},
            )
            return self._issue(session, user, now, method=PASSWORD)

    def sign_in_with_identity(self, identity: OidcIdentity) -> SessionGrant | None:
        """Sign in the person a single sign-on provider vouched for: their user (made on first
        sign-in, role from the configured claim), or None when Nexus keeps them out (disabled,
        or the identity is no longer fresh)."""
        for attempt in range(SSO_ATTEMPTS):
            try:
                return self._sign_in_identity(identity)
            except IntegrityError:  # a parallel first sign-in took the identity or the name
                if attempt == SSO_ATTEMPTS - 1:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    def _sign_in_identity(self, identity: OidcIdentity) -> SessionGrant | None:
        now = self.clock()
        with self.db.session() as session:
            if not identity.is_fresh(now):
                _audit_sso_failure(session, identity, None, "identity no longer fresh")
                return None
            user = find_or_create_user(session, identity, self.roles)
            if user.disabled:
                _audit_sso_failure(session, identity, user, "disabled")
                return None
            mapped = apply_claims(session, user, identity, self.roles)
            user.last_login_at = now
            details: dict[str, Any] = {"method": OIDC, "issuer": identity.issuer}
            if mapped.role_not_applied is not None:
                details["role_claim_not_applied"] = mapped.role_not_applied
            audit.record(
                session,
                audit.SIGN_IN,
                actor_id=user.id,
                actor_name=user.username,
                details=details,
            )
            return self._issue(session, user, now, method=OIDC)

    def _refusal(self, user: User | None, checked_hash: str | None) -> str | None:
        """Why this attempt fails whatever the password was, or None."""
        if user is None:
            return "unknown user"
        if user.disabled:
            return "disabled"
        if self._locked(user):
            return "locked"
        if checked_hash != user.password_hash:
            return "account changed during the attempt"
        return None

    def _count_failure(self, session: Session, user: User, now: datetime) -> None:
        if user.locked_until is not None:  # an expired lock-out starts a fresh count
            user.locked_until = None
            user.failed_logins = 0
        user.failed_logins += 1
        _audit_failure(session, user.username, user, {"failures": user.failed_logins})
        if user.failed_logins >= LOCKOUT_THRESHOLD:
            user.locked_until = now + timedelta(minutes=LOCKOUT_MINUTES)
            audit.record(
                session,
                audit.LOCKED_OUT,
                actor_id=user.id,
                actor_name=user.username,
                details={"until": user.locked_until.isoformat()},
            )

    def _locked(self, user: User) -> bool:
        return user.locked_until is not None and user.locked_until > self.clock()

    # --- sessions ---------------------------------------------------------------------------

    def open_session(self, user_id: int) -> SessionGrant:
        """A new session for an enabled user, without a password (after a password change)."""
        with self.db.session() as session:
            user = session.get(User, user_id, with_for_update=True)
            if user is None or user.disabled:
                raise PermissionDenied("This account cannot sign in.")
            return self._issue(session, user, self.clock(), method=PASSWORD)

    def _issue(self, session: Session, user: User, now: datetime, *, method: str) -> SessionGrant:
        stale = now - KEEP_ENDED
        session.execute(
            delete(AuthSession).where(
                AuthSession.user_id == user.id,
                or_(AuthSession.ended_at < stale, AuthSession.expires_at < stale),
            )
        )
        code = secrets.token_urlsafe(TOKEN_BYTES)
        row = AuthSession(
            user_id=user.id,
            handoff_hash=self._keyed(code),
            handoff_expires_at=now + timedelta(seconds=HANDOFF_SECONDS),
            issued_at=now,
            expires_at=now + self.lifetime,
            last_seen_at=now,
            method=method,
        )
        session.add(row)
        session.flush()
        return SessionGrant(session_id=row.id, handoff_code=code, user=to_view(user))

    def check_session(self, session_id: int) -> SessionCheck:
        """Whether the browser session's sign-in is still valid (one query by primary key)."""
        return self._check(AuthSession.id == session_id)

    def resume(self, token: str) -> SessionCheck:
        """The session a login cookie's token belongs to, checked like ``check_session``."""
        return self._check(AuthSession.token_hash == self._keyed(token))

    def _check(self, which: Any) -> SessionCheck:
        """Read the session (no write lock: every run of every signed-in browser does this), then
        note when it was last seen, at most every ``LAST_SEEN_EVERY``, in a write of its own."""
        now = self.clock()
        with self.db.session(read_only=True) as session:
            found = session.execute(
                select(AuthSession, User).join(User, AuthSession.user_id == User.id).where(which)
            ).one_or_none()
            if found is None:
                return SessionCheck(session_id=None, user=None, ended=UNKNOWN)
            row, user = found
            ended = _why_invalid(row, user, now)
            if ended is not None:
                return SessionCheck(session_id=row.id, user=None, ended=ended)
            pending = row.token_hash is None and (row.handoff_expires_at or now) > now
            check = SessionCheck(session_id=row.id, user=to_view(user), cookie_pending=pending)
        if now - row.last_seen_at >= LAST_SEEN_EVERY:
            self._seen(row.id, now)
        return check

    def _seen(self, session_id: int, now: datetime) -> None:
        """Move a session's last-seen time to ``now`` unless a parallel run just did. Best
        effort: the session was already found valid, so a database that cannot take the write
        now (locked past the busy timeout, read-only) leaves it for a later run."""
        try:
            with self.db.session() as session:
                session.execute(
                    update(AuthSession)
                    .where(
                        AuthSession.id == session_id,
                        AuthSession.last_seen_at <= now - LAST_SEEN_EVERY,
                    )
                    .values(last_seen_at=now)
                )
        except DatabaseUnavailable as exc:
            _LOG.warning("last-seen time of sign-in session %s not written: %s", session_id, exc)

    def active_sessions(self, within: timedelta = ACTIVE_WITHIN) -> int:
        """How many sign-in sessions are valid (not ended, not expired, user enabled) and were
        seen in the last ``within``: the ``nexus_active_sessions`` gauge."""
        now = self.clock()
        with self.db.session(read_only=True) as session:
            count = session.scalar(
                select(func.count())
                .select_from(AuthSession)
                .join(User, AuthSession.user_id == User.id)
                .where(
                    AuthSession.ended_at.is_(None),
                    AuthSession.expires_at > now,
                    AuthSession.last_seen_at >= now - within,
                    User.disabled.is_(False),
                )
            )
            return count or 0

    def claim_cookie(self, code: str) -> IssuedCookie | None:
        """Exchange a session's one-time code for its login cookie (once, within
        ``HANDOFF_SECONDS``); None when the code is unknown, used, late or its session ended."""
        now = self.clock()
        with self.db.session() as session:
            row = session.scalar(
                select(AuthSession)
                .where(AuthSession.handoff_hash == self._keyed(code))
                .with_for_update()
            )
            if row is None or row.ended_at is not None or row.expires_at <= now:
                return None
            if row.handoff_expires_at is None or row.handoff_expires_at <= now:
                return None
            token = secrets.token_urlsafe(TOKEN_BYTES)
            row.token_hash = self._keyed(token)
            row.handoff_hash = None
            row.handoff_expires_at = None
            return IssuedCookie(token, int((row.expires_at - now).total_seconds()))

    def sign_out(self, session_id: int) -> None:
        """Sign the user of a valid session out everywhere: every session of theirs ends."""
        with self.db.session() as session:
            row = session.get(AuthSession, session_id)
            if row is None or row.ended_at is not None:
                return
            user = row.user
            ended = end_sessions(session, user.id, "sign_out", now=self.clock())
            audit.record(
                session,
                audit.SIGN_OUT,
                actor_id=user.id,
                actor_name=user.username,
                details={"sessions_ended": ended, "method": row.method},
            )

    def change_password(self, session_id: int, current: str, new: str) -> SessionGrant:
        """Change the signed-in user's password: every session ends, and this browser gets a new
        one. The current password is checked unless the account must change a temporary one."""
        check = self.check_session(session_id)
        if check.user is None:
            raise PermissionDenied("Your sign-in has ended; sign in again to change the password.")
        user = self._users.change_own_password(
            check.user.username,
            current,
            new,
            verify_current=not check.user.must_change_password,
        )
        return self.open_session(user.id)

    def _keyed(self, value: str) -> str:
        """The stored form of a token or code: HMAC-SHA256 under the cookie key, in hex."""
        return hmac.new(self._token_key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _why_invalid(row: AuthSession, user: User, now: datetime) -> str | None:
    if row.ended_at is not None:
        return row.end_reason or UNKNOWN
    if user.disabled:
        return "disabled"
    if row.expires_at <= now:
        return EXPIRED
    return None


def _audit_sso_failure(
    session: Session, identity: OidcIdentity, user: User | None, reason: str
) -> None:
    _audit_failure(
        session,
        identity.email or identity.subject,
        user,
        {"reason": reason, "method": OIDC, "issuer": identity.issuer},
    )


def _audit_failure(session: Session, name: str, user: User | None, details: dict[str, Any]) -> None:
    audit.record(
        session,
        audit.SIGN_IN_FAILED,
        actor_id=user.id if user else None,
        actor_name=user.username if user else name[:USERNAME_MAX_CHARS],
        details=details,
    )
