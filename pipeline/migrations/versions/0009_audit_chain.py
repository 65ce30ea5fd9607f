"""hash-chained, append-only audit log: audit_entry.prev_hash and hash

The existing entries are chained in id order (the hashes computed by ``pipeline.audit``,
so they verify with the code that checks them), then the table refuses UPDATE and DELETE
(and, on PostgreSQL, TRUNCATE) by trigger.

A later migration that rebuilds ``audit_entry`` on SQLite (a batch operation that copies
the table) drops these triggers with the old table, and must create them again
(``create_triggers``).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from pipeline.audit import GENESIS, PAGE, digest, fields_of

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ENTRIES = sa.table(
    "audit_entry",
    sa.column("id", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String),
    sa.column("verb", sa.String),
    sa.column("target", sa.String),
    sa.column("incident_id", sa.Integer),
    sa.column("detail", sa.JSON),
    sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
)

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry "
    "BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry "
    "BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: DELETE refused'); END",
]
_POSTGRESQL_TRIGGERS = [
    "CREATE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_entry is append-only: % refused', TG_OP; END $$",
    "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
    "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()",
    "CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only()",
]


def create_triggers() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _SQLITE_TRIGGERS if sqlite else _POSTGRESQL_TRIGGERS:
        op.execute(statement)


def _backfill(connection: Any) -> None:
    """Chain the existing entries in id order, a page at a time."""
    entries, after, prev = _ENTRIES.c, 0, GENESIS
    chain = (
        _ENTRIES.update()
        .where(entries.id == sa.bindparam("entry_id"))
        .values(prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash"))
    )
    while True:
        rows = connection.execute(
            sa.select(_ENTRIES).where(entries.id > after).order_by(entries.id).limit(PAGE)
        ).all()
        if not rows:
            return
        updates = []
        for row in rows:
            hashed = digest(fields_of(row, prev_hash=prev))
            updates.append({"entry_id": row.id, "new_prev": prev, "new_hash": hashed})
            prev = hashed
        connection.execute(chain, updates)
        after = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("audit_entry") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _backfill(op.get_bind())
    with op.batch_alter_table("audit_entry") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
    create_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_entry_no_update")
        op.execute("DROP TRIGGER audit_entry_no_delete")
    else:
        op.execute("DROP TRIGGER audit_entry_no_truncate ON audit_entry")
        op.execute("DROP TRIGGER audit_entry_append_only ON audit_entry")
        op.execute("DROP FUNCTION audit_entry_append_only()")
        # ids were given by pipeline.audit, not the sequence: bring it past them
        op.execute(
            "SELECT setval(pg_get_serial_sequence('audit_entry', 'id'), "
            "COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM audit_entry"
        )
    with op.batch_alter_table("audit_entry") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
