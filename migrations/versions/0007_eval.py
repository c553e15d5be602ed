"""evaluations: eval runs, their per-case verdicts, the judge's calibration against blind votes, and
the system instruction a hidden session may set for itself (an eval judge's)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import nexus_core.db.columns

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _run_fk(table: str, column: str = "run_id") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["prompt_runs.id"],
        name=op.f(f"fk_{table}_{column}_prompt_runs"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column("chat_sessions", sa.Column("instruction", sa.Text(), nullable=True))
    op.create_table(
        "eval_runs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("baseline", sa.String(length=36), nullable=True),
        sa.Column("judge_provider", sa.String(length=32), nullable=False),
        sa.Column("judge_model", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("calibration", _json(), nullable=False),
        sa.Column("summary", _json(), nullable=False),
        sa.Column("finished_at", nexus_core.db.columns.UTCDateTime(), nullable=True),
        _run_fk("eval_runs"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_eval_runs")),
    )
    op.create_table(
        "eval_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("case_index", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("order_sensitive", sa.Boolean(), nullable=False),
        sa.Column("first", sa.String(length=16), nullable=True),
        sa.Column("second", sa.String(length=16), nullable=True),
        sa.Column("reasons", _json(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("baseline_passed", sa.Boolean(), nullable=True),
        sa.Column("failures", _json(), nullable=False),
        _run_fk("eval_verdicts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_verdicts")),
        sa.UniqueConstraint("run_id", "case_index", name=op.f("uq_eval_verdicts_run_id")),
    )
    op.create_table(
        "judge_calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("compare_run_id", sa.String(length=36), nullable=False),
        sa.Column("first", sa.Integer(), nullable=False),
        sa.Column("second", sa.Integer(), nullable=False),
        sa.Column("judge", sa.String(length=120), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("order_sensitive", sa.Boolean(), nullable=False),
        sa.Column("reasons", _json(), nullable=False),
        sa.Column("created_at", nexus_core.db.columns.UTCDateTime(), nullable=False),
        _run_fk("judge_calibrations", "compare_run_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judge_calibrations")),
        sa.UniqueConstraint(
            "compare_run_id", "first", "second", "judge", name="uq_judge_calibrations_pair"
        ),
    )


def downgrade() -> None:
    op.drop_table("judge_calibrations")
    op.drop_table("eval_verdicts")
    op.drop_table("eval_runs")
    # Judge sessions exist only for eval runs; they go with them (and their messages and jobs).
    op.execute("DELETE FROM chat_sessions WHERE instruction IS NOT NULL")
    op.drop_column("chat_sessions", "instruction")
