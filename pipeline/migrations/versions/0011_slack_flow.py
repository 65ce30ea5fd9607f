"""storms without floods, asking the user, approval SLA

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.add_column(sa.Column("thread_event_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("digest_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("approval_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("approval_stage", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("user_answers", sa.JSON(), nullable=True))
    op.create_table(
        "user_check",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incident.id"), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("slack_user", sa.String(length=64), nullable=True),
        sa.Column("dm_channel", sa.String(length=64), nullable=True),
        sa.Column("dm_ts", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("incident_id", "account", name="uq_user_check"),
    )
    op.create_index("ix_user_check_incident_id", "user_check", ["incident_id"])
    op.create_index("ix_user_check_status", "user_check", ["status"])


def downgrade() -> None:
    op.drop_index("ix_user_check_status", table_name="user_check")
    op.drop_index("ix_user_check_incident_id", table_name="user_check")
    op.drop_table("user_check")
    with op.batch_alter_table("incident") as batch:
        batch.drop_column("user_answers")
        batch.drop_column("approval_stage")
        batch.drop_column("approval_since")
        batch.drop_column("digest_at")
        batch.drop_column("thread_event_id")
