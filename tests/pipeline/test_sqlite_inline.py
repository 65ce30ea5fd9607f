"""SQLite run inline on the event loop (pipeline/sqlite_inline.py), one connection per
process, durable commits by default and cheap ones for the pipeline's own steps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from pipeline import db as database
from pipeline.db import Database
from pipeline.models import Event


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'inline.db'}"
    database.upgrade(url)
    db = Database(url)
    yield db  # type: ignore[misc]
    await db.dispose()


async def synchronous(db: Database, *, durable: bool) -> int:
    async with db.session(durable=durable) as session:
        value = (await session.exec(text("PRAGMA synchronous"))).scalar_one()  # type: ignore[call-overload]
        await session.commit()
    return int(value)


async def test_durable_by_default_and_cheap_when_asked(sqlite_db: Database) -> None:
    assert await synchronous(sqlite_db, durable=True) == 2  # FULL: fsync at each commit
    assert await synchronous(sqlite_db, durable=False) == 1  # NORMAL: WAL, synced later
    assert await synchronous(sqlite_db, durable=True) == 2


async def test_statements_errors_and_rollback_behave_like_a_driver(sqlite_db: Database) -> None:
    row = {"detector": "d", "external_id": "x", "title": "t", "severity": "high", "raw": "{}"}
    async with sqlite_db.session() as session:
        session.add(Event(**row))
        await session.commit()
    with pytest.raises(IntegrityError):  # the (detector, external id) unique constraint
        async with sqlite_db.session() as session:
            session.add(Event(**row))
            await session.commit()
    async with sqlite_db.session() as session:
        session.add(Event(**{**row, "external_id": "y"}))
        await session.flush()
        await session.rollback()
    with pytest.raises(OperationalError, match="no such table"):
        async with sqlite_db.session() as session:
            await session.exec(text("SELECT * FROM missing"))  # type: ignore[call-overload]
    async with sqlite_db.session() as session:
        count = (await session.exec(text("SELECT count(*) FROM event"))).scalar_one()  # type: ignore[call-overload]
    assert count == 1


async def test_transactions_queue_for_the_one_connection(sqlite_db: Database) -> None:
    """Concurrent read-modify-write transactions never lose an update: each waits for
    the connection instead of polling SQLite's lock."""
    async with sqlite_db.session() as session:
        await session.exec(text("CREATE TABLE counter (n INTEGER)"))  # type: ignore[call-overload]
        await session.exec(text("INSERT INTO counter VALUES (0)"))  # type: ignore[call-overload]
        await session.commit()

    async def increment() -> None:
        async with sqlite_db.session(durable=False) as session:
            n = (await session.exec(text("SELECT n FROM counter"))).scalar_one()  # type: ignore[call-overload]
            await asyncio.sleep(0)  # let the others try to get in between
            await session.exec(text("UPDATE counter SET n = :n"), params={"n": n + 1})  # type: ignore[call-overload]
            await session.commit()

    await asyncio.gather(*(increment() for _ in range(50)))
    async with sqlite_db.session() as session:
        assert (await session.exec(text("SELECT n FROM counter"))).scalar_one() == 50  # type: ignore[call-overload]
