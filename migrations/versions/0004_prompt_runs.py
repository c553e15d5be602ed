"""prompt runs: side-by-side comparisons, their votes, test sets and their runs

Each variant's answer is a real AI job in a hidden chat session, so ``chat_sessions`` gains the run
it belongs to (``run_id``, ``variant_position``, ``case_index``) and per-session overrides of the
provider, model and temperature. ``run_id`` is an indexed column, not a foreign key: SQLite can add
a foreign key to an existing table only by rebuilding it (batch mode's copy-and-move), and dropping
the old ``chat_sessions`` with foreign keys on would cascade-delete every message.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import nexus_core.db.columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "test_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("cases", _json(), nullable=False),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.Column("updated_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_test_sets_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_sets")),
        sa.UniqueConstraint("owner_id", "name", name=op.f("uq_test_sets_owner_id")),
    )
    op.create_table(
        "prompt_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("history", _json(), nullable=False),
        sa.Column("tag", sa.String(length=40), nullable=True),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.Column("test_set_id", sa.Integer(), nullable=True),
        sa.Column("test_set_name", sa.String(length=120), nullable=True),
        sa.Column("cases", _json(), nullable=False),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_set_id"],
            ["test_sets.id"],
            name=op.f("fk_prompt_runs_test_set_id_test_sets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_prompt_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_runs")),
    )
    op.create_index("ix_prompt_runs_test_set_id", "prompt_runs", ["test_set_id"], unique=False)
    op.create_index(
        "ix_prompt_runs_user_created", "prompt_runs", ["user_id", "created_at"], unique=False
    )
    op.create_table(
        "compare_votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("best_position", sa.Integer(), nullable=True),
        sa.Column("ratings", _json(), nullable=False),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["prompt_runs.id"],
            name=op.f("fk_compare_votes_run_id_prompt_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_compare_votes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compare_votes")),
        sa.UniqueConstraint("run_id", "user_id", name=op.f("uq_compare_votes_run_id")),
    )
    op.create_index("ix_compare_votes_created", "compare_votes", ["created_at"], unique=False)
    op.create_table(
        "run_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("persona_id", sa.Integer(), nullable=False),
        sa.Column("persona_version", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=80), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["persona_id"], ["personas.id"], name=op.f("fk_run_variants_persona_id_personas")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["prompt_runs.id"],
            name=op.f("fk_run_variants_run_id_prompt_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_variants")),
        sa.UniqueConstraint("run_id", "position", name=op.f("uq_run_variants_run_id")),
    )
    op.add_column("chat_sessions", sa.Column("run_id", sa.String(length=36), nullable=True))
    op.add_column("chat_sessions", sa.Column("variant_position", sa.Integer(), nullable=True))
    op.add_column("chat_sessions", sa.Column("case_index", sa.Integer(), nullable=True))
    op.add_column("chat_sessions", sa.Column("provider", sa.String(length=32), nullable=True))
    op.add_column("chat_sessions", sa.Column("model", sa.String(length=80), nullable=True))
    op.add_column("chat_sessions", sa.Column("temperature", sa.Float(), nullable=True))
    op.create_index("ix_chat_sessions_run_id", "chat_sessions", ["run_id"], unique=False)


def downgrade() -> None:
    # Hidden sessions exist only for runs; they go with them (and their messages and jobs).
    op.execute("DELETE FROM chat_sessions WHERE run_id IS NOT NULL")
    op.drop_index("ix_chat_sessions_run_id", table_name="chat_sessions")
    for column in ("temperature", "model", "provider", "case_index", "variant_position", "run_id"):
        op.drop_column("chat_sessions", column)
    op.drop_table("run_variants")
    op.drop_index("ix_compare_votes_created", table_name="compare_votes")
    op.drop_table("compare_votes")
    op.drop_index("ix_prompt_runs_user_created", table_name="prompt_runs")
    op.drop_index("ix_prompt_runs_test_set_id", table_name="prompt_runs")
    op.drop_table("prompt_runs")
    op.drop_table("test_sets")
