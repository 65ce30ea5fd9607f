"""lookup cache, provider quotas, deferred lookups and the incidents waiting for them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 02:34:51.438626
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lookup_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("enricher", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("lookup_cache", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lookup_cache_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "lookup_quota",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "period", "slot"),
    )

    op.create_table(
        "deferred_lookup",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("enricher", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("deferred_lookup", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deferred_lookup_not_before"), ["not_before"], unique=False
        )

    op.create_table(
        "lookup_waiter",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("enricher", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lookup_waiter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lookup_waiter_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_lookup_waiter_key"), ["key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lookup_waiter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lookup_waiter_key"))
        batch_op.drop_index(batch_op.f("ix_lookup_waiter_incident_id"))
    op.drop_table("lookup_waiter")

    with op.batch_alter_table("deferred_lookup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deferred_lookup_not_before"))
    op.drop_table("deferred_lookup")

    op.drop_table("lookup_quota")

    with op.batch_alter_table("lookup_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lookup_cache_expires_at"))
    op.drop_table("lookup_cache")
