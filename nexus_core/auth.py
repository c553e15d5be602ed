"""Sign-in hardening around streamlit-authenticator.

The authenticator draws the login form and writes the login cookie (a JWT holding the username
and its expiry). It keeps failed attempts in memory and never revokes a cookie, so this module
keeps the rest in the database:

- failed attempts and a timed lock-out (``LOCKOUT_THRESHOLD`` failures → ``LOCKOUT_MINUTES``);
- one message for an unknown user, a wrong password and a locked account;
- ``cookies_valid_after`` per user: logout, password change and disabling move it to *now*, and a
  cookie issued before it (issue time = expiry − lifetime) no longer signs anyone in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
from sqlalchemy import select

from nexus_core import audit
from nexus_core.db.engine import Database
from nexus_core.db.models import User
from nexus_core.db.types import utc_now
from nexus_core.settings import Settings
from nexus_core.users import UserView, to_view

LOCKOUT_THRESHOLD = 5
LOCKOUT_MINUTES = 15
COOKIE_NAME = "nexus_auth"
COOKIE_KEY_FILE = ".cookie_key"
SIGN_IN_FAILED_MESSAGE = (
    "Incorrect username or password. After "
    f"{LOCKOUT_THRESHOLD} failed attempts an account is locked for {LOCKOUT_MINUTES} minutes."
)
# A valid bcrypt hash of a random secret nobody knows: a locked account's password never matches.
_UNMATCHABLE_HASH = bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(4)).decode("ascii")


def resolve_cookie_key(settings: Settings) -> str:
    """The cookie signing key: the setting, or (outside production) a random key in the data dir."""
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


def cookie_issued_at(expires_at: float, expiry_days: float) -> datetime:
    """When a cookie that expires at ``expires_at`` (epoch seconds) was issued."""
    return datetime.fromtimestamp(expires_at, UTC) - timedelta(days=expiry_days)


class SignInService:
    """Keeps sign-in attempts, lock-outs and cookie revocation in the database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self.db = db
        self.clock = clock

    def credentials(self) -> dict[str, Any]:
        """The credentials dict the authenticator reads: enabled users, locked ones unmatchable."""
        now = self.clock()
        users: dict[str, Any] = {}
        with self.db.session() as session:
            for user in session.scalars(select(User).where(~User.disabled)):
                locked = user.locked_until is not None and user.locked_until > now
                users[user.username] = {
                    "name": user.display_name,
                    "email": user.email or "",
                    "password": _UNMATCHABLE_HASH if locked else user.password_hash,
                    "roles": [user.role],
                    "failed_login_attempts": 0,
                }
        return {"usernames": users}

    def record_failure(self, username: str | None) -> bool:
        """Count a failed attempt; returns True when the account is (now) locked."""
        now = self.clock()
        with self.db.session() as session:
            user = (
                session.scalar(select(User).where(User.username == username)) if username else None
            )
            if user is None:
                audit.record(
                    session,
                    audit.SIGN_IN_FAILED,
                    actor_name=username,
                    details={"reason": "unknown user"},
                )
                return False
            if user.locked_until is not None and user.locked_until > now:
                audit.record(
                    session,
                    audit.SIGN_IN_FAILED,
                    actor_id=user.id,
                    actor_name=user.username,
                    details={"reason": "locked"},
                )
                return True
            if user.locked_until is not None:  # an expired lock-out starts a fresh count
                user.locked_until = None
                user.failed_logins = 0
            user.failed_logins += 1
            audit.record(
                session,
                audit.SIGN_IN_FAILED,
                actor_id=user.id,
                actor_name=user.username,
                details={"failures": user.failed_logins},
            )
            if user.failed_logins >= LOCKOUT_THRESHOLD:
                user.locked_until = now + timedelta(minutes=LOCKOUT_MINUTES)
                audit.record(
                    session,
                    audit.LOCKED_OUT,
                    actor_id=user.id,
                    actor_name=user.username,
                    details={"until": user.locked_until.isoformat()},
                )
                return True
            return False

    def record_success(self, username: str) -> UserView:
        """Reset the failure count and note the sign-in."""
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise LookupError(username)
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = self.clock()
            audit.record(session, audit.SIGN_IN, actor_id=user.id, actor_name=user.username)
            return to_view(user)

    def record_sign_out(self, username: str) -> None:
        """Note the sign-out and revoke every cookie issued so far."""
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                return
            user.cookies_valid_after = self.clock()
            audit.record(session, audit.SIGN_OUT, actor_id=user.id, actor_name=user.username)

    def is_locked(self, username: str) -> bool:
        """Whether the account is locked out right now."""
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == username))
            return bool(user and user.locked_until and user.locked_until > self.clock())

    def active_user(self, username: str) -> UserView | None:
        """The user if they exist and are enabled, else None."""
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None or user.disabled:
                return None
            return to_view(user)

    def cookie_accepted(self, username: str, issued_at: datetime) -> bool:
        """Whether a cookie for ``username`` issued at ``issued_at`` may still sign them in."""
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None or user.disabled:
                return False
            return user.cookies_valid_after is None or issued_at > user.cookies_valid_after
