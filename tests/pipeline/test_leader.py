"""Leadership among replicas on one database: one leader at a time, taken over when it
goes; a replica's name held while it lives; the claims of a replica that is gone put
back by the leader."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text
from sqlmodel import select

from integrations.detectors.generic import GenericDetector
from pipeline import leader, queue
from pipeline.db import Database
from pipeline.errors import ConfigError
from pipeline.ingest import ingest
from pipeline.leader import Leadership
from pipeline.models import Event


async def leads_soon(leadership: Leadership) -> bool:
    """Whether ``leadership`` becomes the leader within a few checks (a closed session's
    locks are released when its server process has ended, a moment after)."""
    for _ in range(50):
        if await leadership.campaign():
            return True
        await asyncio.sleep(0.1)
    return False


async def send(db: Database, *ids: str) -> None:
    async with db.session() as session:
        body = json.dumps([{"id": i, "title": f"alert {i}", "user": f"u{i}"} for i in ids])
        await ingest(session=session, detector=GenericDetector(), body=body.encode())


async def test_one_leader_at_a_time_and_another_takes_over(db: Database) -> None:
    first, second = Leadership(db, replica="a"), Leadership(Database(db.url), replica="b")
    await first.start()
    await second.start()
    try:
        if db.sqlite:  # one process: always the leader
            assert first.leader and second.leader
            return
        assert (first.leader, second.leader) == (True, False)
        assert await second.campaign() is False
        ran: list[str] = []

        async def job(name: str) -> None:
            ran.append(name)

        await first.only_leader(job)("first")
        await second.only_leader(job)("second")
        assert ran == ["first"]

        await first.stop()  # the leader goes: a check elsewhere soon takes over
        assert await leads_soon(second)
        await second.only_leader(job)("second")
        assert ran == ["first", "second"]
    finally:
        await first.stop()
        await second.stop()
        await second.db.dispose()


async def test_a_lost_connection_ends_leadership(db: Database) -> None:
    if db.sqlite:
        pytest.skip("leadership is shared through PostgreSQL")
    first, second = Leadership(db, replica="a"), Leadership(db, replica="b")
    await first.start()
    await second.start()
    try:
        assert first.leader and not second.leader
        assert first._connection is not None
        pid = (await first._connection.execute(text("SELECT pg_backend_pid()"))).scalar()
        async with db.engine.connect() as admin:  # the server drops the leader's session
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
        assert await first.campaign() is False
        assert await leads_soon(second)
        assert await first.campaign() is False  # reconnected, name taken again, follower
        assert first._connection is not None
    finally:
        await first.stop()
        await second.stop()


async def test_a_second_live_replica_with_the_same_name_is_refused(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.sqlite:
        pytest.skip("names are held through PostgreSQL")
    monkeypatch.setattr(leader, "NAME_ATTEMPTS", 2)
    first, twin = Leadership(db, replica="same"), Leadership(db, replica="same")
    await first.start()
    try:
        with pytest.raises(ConfigError, match="another running replica is named 'same'"):
            await twin.start()
    finally:
        await first.stop()
        await twin.stop()
    monkeypatch.setattr(leader, "NAME_ATTEMPTS", 20)
    again = Leadership(db, replica="same")  # once the first is gone, the name is free
    await again.start()
    await again.stop()


async def test_the_leader_puts_back_the_claims_of_a_replica_that_is_gone(db: Database) -> None:
    if db.sqlite:
        pytest.skip("one SQLite process releases its own claims at start-up")
    await send(db, "1", "2", "3")
    alive, chief = Leadership(db, replica="alive"), Leadership(db, replica="chief")
    await chief.start()
    await alive.start()
    try:
        assert chief.leader
        assert len(await queue.claim_many(db, 1, replica="gone")) == 1
        assert len(await queue.claim_many(db, 1, replica="alive")) == 1
        assert await alive.reclaim() == 0  # not the leader: does nothing
        assert await chief.reclaim() == 1
        async with db.session() as session:
            rows = (await session.exec(select(Event).order_by(Event.id))).all()  # type: ignore[arg-type]
        assert [(e.status, e.claimed_by) for e in rows] == [
            ("pending", None),  # the one "gone" held, claimable again now
            ("processing", "alive"),
            ("pending", None),
        ]
        assert await chief.reclaim() == 0
    finally:
        await alive.stop()
        await chief.stop()
