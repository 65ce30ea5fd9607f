"""incident keys for indexed correlation

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _account(user: str) -> str:
    return user.rsplit("\\", 1)[-1].split("@", 1)[0].strip().casefold()


def upgrade() -> None:
    op.create_table(
        "incident_key",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("key", "incident_id"),
    )
    op.create_index("ix_incident_key_incident_id", "incident_key", ["incident_id"])
    # backfill the open incidents, which are the only ones correlation looks at
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, observables FROM incident WHERE status = 'open'"))
    keys = set()
    for incident_id, observables in rows:
        data = json.loads(observables) if isinstance(observables, str) else observables or {}
        for user in data.get("users", []):
            keys.add((f"user:{_account(user)}"[:320], incident_id))
        for host in data.get("hosts", []):
            keys.add((f"host:{host.casefold()}"[:320], incident_id))
    if keys:
        table = sa.table("incident_key", sa.column("key"), sa.column("incident_id"))
        op.bulk_insert(table, [{"key": k, "incident_id": i} for k, i in sorted(keys)])


def downgrade() -> None:
    op.drop_index("ix_incident_key_incident_id", table_name="incident_key")
    op.drop_table("incident_key")
