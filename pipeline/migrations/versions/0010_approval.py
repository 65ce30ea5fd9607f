"""approval that holds: decision versions, approvals, expiring actions, controls

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.add_column(
            sa.Column("decision_version", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("action") as batch:
        # an action run from the command line (fido respond) belongs to no incident
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("approvals", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_action_expires_at", ["expires_at"])
    op.create_table(
        "control",
        sa.Column("key", sa.String(length=96), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("control")
    with op.batch_alter_table("action") as batch:
        batch.drop_index("ix_action_expires_at")
        batch.drop_column("expires_at")
        batch.drop_column("approvals")
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("incident") as batch:
        batch.drop_column("decision_version")
