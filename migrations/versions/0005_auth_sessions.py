"""sign-in sessions: one row per sign-in, replacing the per-user cookie cut-off

A login cookie used to be a JWT holding only its expiry; revocation compared the issue time derived
from it (expiry minus the *current* lifetime setting) with ``users.cookies_valid_after``, so changing
the setting moved every cookie's issue time, and an open browser tab was never rechecked. Now every
sign-in is an ``auth_sessions`` row (keyed hashes of the cookie token and of its one-time claim
code, issue and expiry times fixed when issued, when it ended and why), checked on every run of the
app. ``users.cookies_valid_after`` goes: old cookies are no longer read at all.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import nexus_core.db.columns

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("handoff_hash", sa.String(length=64), nullable=True),
        sa.Column("handoff_expires_at", nexus_core.db.columns.UTCDateTime(), nullable=True),
        sa.Column("issued_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.Column("expires_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.Column("ended_at", nexus_core.db.columns.UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("handoff_hash", name=op.f("uq_auth_sessions_handoff_hash")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_sessions_token_hash")),
        sqlite_autoincrement=True,  # ids never reused: a stale id must not find a newer session
    )
    op.create_index("ix_auth_sessions_user_id", "auth_sessions", ["user_id"], unique=False)
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+ and PostgreSQL): batch mode would rebuild
    # ``users``, and dropping the old table with foreign keys on would cascade to every chat.
    op.drop_column("users", "cookies_valid_after")


def downgrade() -> None:
    op.add_column(
        "users",
        sa.Column("cookies_valid_after", nexus_core.db.columns.UTCDateTime(), nullable=True),
    )
    # The old code accepts any unexpired cookie after a null cut-off: refuse every earlier one.
    op.get_bind().execute(
        sa.text("UPDATE users SET cookies_valid_after = :now"),
        {"now": datetime.now(UTC).replace(tzinfo=None)},
    )
    op.drop_index("ix_auth_sessions_user_id", table_name="auth_sessions")
    op.drop_table("auth_sessions")
