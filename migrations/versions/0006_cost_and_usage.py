"""cost and usage: full token counts and the cost on each reply, the channel of each job, a
versioned price table, monthly budgets and the thresholds they crossed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import nexus_core.db.columns

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("cached_input_tokens", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("reasoning_tokens", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("cost_usd", sa.Float(), nullable=True))
    op.add_column(
        "ai_jobs",
        sa.Column("channel", sa.String(length=16), nullable=False, server_default="chat"),
    )
    op.create_table(
        "model_prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=120), nullable=False),
        sa.Column("input_usd", sa.Float(), nullable=False),
        sa.Column("cached_input_usd", sa.Float(), nullable=True),
        sa.Column("output_usd", sa.Float(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_prices")),
        sa.UniqueConstraint("model", "effective_from", name="uq_model_prices_model_effective_from"),
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("monthly_usd", sa.Float(), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=80), nullable=True),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.Column("updated_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("scope", "target_id", name="uq_budgets_scope_target_id"),
    )
    op.create_table(
        "budget_crossings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("budget_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name=op.f("fk_budget_crossings_budget_id_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_crossings")),
        sa.UniqueConstraint("budget_id", "month", "percent", name="uq_budget_crossings_once"),
    )


def downgrade() -> None:
    op.drop_table("budget_crossings")
    op.drop_table("budgets")
    op.drop_table("model_prices")
    op.drop_column("ai_jobs", "channel")
    op.drop_column("messages", "cost_usd")
    op.drop_column("messages", "reasoning_tokens")
    op.drop_column("messages", "cached_input_tokens")
