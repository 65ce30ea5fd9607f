"""Alembic environment: migrates the database Fido was started with."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool
from sqlmodel import SQLModel

import pipeline.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config


def run_migrations(connection: Connection) -> None:
    on_apply = config.attributes.get("on_version_apply")  # pipeline.db's progress report
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        on_version_apply=on_apply,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """On the connection ``pipeline.db.upgrade`` holds the migration lock on, or on one of
    its own (the Alembic command line, tests)."""
    shared = config.attributes.get("connection")
    if shared is not None:
        run_migrations(shared)
        return
    url = config.attributes.get("fido_url") or config.get_main_option("sqlalchemy.url") or ""
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_migrations(connection)
    engine.dispose()


run_migrations_online()
