"""decision core: neutral message reference, incident lifecycle, suppressions, history

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.alter_column(
            "slack_channel", new_column_name="message_channel", type_=sa.String(length=64)
        )
        batch.alter_column("slack_ts", new_column_name="message_ts", type_=sa.String(length=64))
        batch.add_column(sa.Column("detectors", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("history", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("suppressed_by", sa.String(length=160), nullable=True))
        batch.add_column(sa.Column("verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("closed_at", _TS, nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("close_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("previous_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_incident_previous_id", "incident", ["previous_id"], ["id"])
    with op.batch_alter_table("event") as batch:
        batch.add_column(sa.Column("suppressed_by", sa.String(length=160), nullable=True))
    # existing incidents start with no recorded detectors or history
    op.execute(
        "UPDATE incident SET detectors = '[]', history = '{}'"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE incident SET detectors = '[]'::json, history = '{}'::json"
    )
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("match", sa.JSON(), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("removed_at", _TS, nullable=True),
        sa.Column("removed_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "suppression_hit",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("last_hit_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("suppression_hit")
    op.drop_table("suppression")
    with op.batch_alter_table("event") as batch:
        batch.drop_column("suppressed_by")
    with op.batch_alter_table("incident") as batch:
        batch.drop_constraint("fk_incident_previous_id", type_="foreignkey")
        for column in (
            "previous_id", "close_reason", "closed_by", "closed_at", "verdict",
            "suppressed_by", "history", "detectors",
        ):  # fmt: skip
            batch.drop_column(column)
        batch.alter_column(
            "message_channel", new_column_name="slack_channel", type_=sa.String(length=32)
        )
        batch.alter_column("message_ts", new_column_name="slack_ts", type_=sa.String(length=32))
