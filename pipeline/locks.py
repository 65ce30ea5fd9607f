"""Singleton jobs across replicas.

With several ``fido serve`` replicas on one PostgreSQL database, a job that must run in one
place at a time (polling a source, running deferred lookups) takes a PostgreSQL advisory
lock named after the job; replicas that do not get it skip that run. SQLite means one
process, so the lock is always granted there.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from pipeline.db import Database


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@asynccontextmanager
async def singleton(db: Database, name: str) -> AsyncIterator[bool]:
    """Yield True when this process holds the job ``name``; False when another does."""
    if db.sqlite:
        yield True
        return
    key = lock_key(name)
    async with db.engine.connect() as connection:
        held = bool(
            (await connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
        )
        try:
            yield held
        finally:
            if held:
                await connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            await connection.commit()
