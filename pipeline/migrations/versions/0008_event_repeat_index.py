"""event index for history's repeat lookup: (incident_id, detector, received_at)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_event_incident_detector_received", "event", ["incident_id", "detector", "received_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_event_incident_detector_received", table_name="event")
