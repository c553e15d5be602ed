"""Single sign-on: a user's OpenID Connect identity (issuer and subject), and how each sign-in
session was opened.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("oidc_issuer", sa.String(255), nullable=True))
        batch.add_column(sa.Column("oidc_subject", sa.String(255), nullable=True))
        batch.create_unique_constraint("uq_users_oidc", ["oidc_issuer", "oidc_subject"])
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("method", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("method")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_oidc", type_="unique")
        batch.drop_column("oidc_subject")
        batch.drop_column("oidc_issuer")
