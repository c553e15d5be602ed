"""boards: pages of pinned workbench results, the pins (a cell and the named cells it reads, its
parameters' values, chart and refresh interval) and each pin's last result per visibility

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-09 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import nexus_core.db.columns

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, nexus_core.db.columns.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "boards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_boards_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_boards")),
    )
    op.create_index("ix_boards_owner_id", "boards", ["owner_id"], unique=False)
    op.create_table(
        "board_pins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("board_id", sa.Integer(), nullable=False),
        sa.Column("pinned_by_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("cells", _json(), nullable=False),
        sa.Column("cell_id", sa.String(length=64), nullable=False),
        sa.Column("parameters", _json(), nullable=False),
        sa.Column("chosen", _json(), nullable=False),
        sa.Column("chart", _json(), nullable=True),
        sa.Column("refresh", sa.String(length=16), nullable=False),
        sa.Column("notebook_id", sa.Integer(), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["board_id"],
            ["boards.id"],
            name=op.f("fk_board_pins_board_id_boards"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pinned_by_id"],
            ["users.id"],
            name=op.f("fk_board_pins_pinned_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["notebook_id"],
            ["notebooks.id"],
            name=op.f("fk_board_pins_notebook_id_notebooks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_pins")),
    )
    op.create_index("ix_board_pins_board_id", "board_pins", ["board_id"], unique=False)
    op.create_table(
        "board_pin_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pin_id", sa.Integer(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        _when("refreshed_at"),
        sa.Column("rows", sa.LargeBinary(), nullable=True),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("elapsed_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pin_id"],
            ["board_pins.id"],
            name=op.f("fk_board_pin_results_pin_id_board_pins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_pin_results")),
        sa.UniqueConstraint("pin_id", "visibility", name=op.f("uq_board_pin_results_pin_id")),
    )


def downgrade() -> None:
    op.drop_table("board_pin_results")
    op.drop_index("ix_board_pins_board_id", table_name="board_pins")
    op.drop_table("board_pins")
    op.drop_index("ix_boards_owner_id", table_name="boards")
    op.drop_table("boards")
