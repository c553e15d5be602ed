"""The audit trail's hash chain: each event's place, previous hash and hash, and the chain's head.

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_audit_events_seq", ["seq"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    from nexus_core.audit_chain import GENESIS, HEAD_ID, link_all_unlinked

    # The head exists from the start, so concurrent first writers queue on its lock.
    op.bulk_insert(head, [{"id": HEAD_ID, "seq": 0, "hash": GENESIS}])
    # The events written before the chain existed are linked now, oldest first.
    link_all_unlinked(op.get_bind())


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint("uq_audit_events_seq", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
