"""Claims: oldest first across pending and expired events, never a fresh claim of another
worker; and on PostgreSQL the correlation-key locks a triage batch takes (one statement for
all its keys) make a second transaction wanting one of them wait until the first ends."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from integrations.detectors.generic import GenericDetector
from pipeline import queue
from pipeline.correlate import lock_keys
from pipeline.db import Database
from pipeline.ingest import ingest
from pipeline.models import Event, EventStatus, utcnow


async def send(db: Database, *ids: str) -> None:
    async with db.session() as session:
        body = json.dumps([{"id": i, "title": f"alert {i}", "user": f"u{i}"} for i in ids])
        await ingest(session=session, detector=GenericDetector(), body=body.encode())


async def _set(db: Database, event_id: int, **values: object) -> None:
    async with db.session() as session:
        await session.exec(update(Event).where(col(Event.id) == event_id).values(**values))
        await session.commit()


async def test_a_batch_is_completed_in_one_statement_and_a_lost_claim_fails_it(
    db: Database,
) -> None:
    await send(db, "a", "b", "c", "d")
    events = await queue.claim_many(db, 4, replica="r")
    async with db.session() as session:  # every claim still ours: all four done
        await queue.complete(session, events[:3])
        await session.commit()
    await _set(db, 4, claim_token="taken-over")
    async with db.session() as session:  # one of them lost: nothing of it may be kept
        with pytest.raises(queue.LostClaim, match="event 4 was claimed by another worker"):
            await queue.complete(session, events[3:])
        await session.rollback()
    async with db.session() as session:
        rows = (await session.exec(select(Event).order_by(col(Event.id)))).all()
    assert [e.status for e in rows] == ["done", "done", "done", "processing"]
    assert all(e.claim_token for e in rows)
    assert await queue.claim_many(db, 4, replica="r") == []  # 4 is another worker's


async def test_a_lost_claim_among_many_fails_the_whole_completion(db: Database) -> None:
    await send(db, "a", "b", "c")
    events = await queue.claim_many(db, 3, replica="r")
    await _set(db, 2, claim_token="taken-over")
    async with db.session() as session:
        with pytest.raises(queue.LostClaim, match="one of events 1, 2, 3"):
            await queue.complete(session, events)


async def test_claims_take_expired_and_pending_events_oldest_first(db: Database) -> None:
    await send(db, "a", "b", "c", "d")
    stale = utcnow() - queue.LEASE - timedelta(seconds=5)
    # 1: claimed by a worker that died (lease run out); 2: claimed a moment ago (in flight)
    await _set(db, 1, status=EventStatus.processing.value, claimed_at=stale, claim_token="x")
    await _set(db, 2, status=EventStatus.processing.value, claimed_at=utcnow(), claim_token="y")
    first = await queue.claim_many(db, 2, replica="r")
    assert [e.id for e in first] == [1, 3]  # the expired one and the oldest pending
    assert all(e.status == EventStatus.processing.value for e in first)
    assert first[0].claim_token not in (None, "x")  # a claim of its own, not the dead one's
    rest = await queue.claim_many(db, 5, replica="r")
    assert [e.id for e in rest] == [4]  # 2 is in flight elsewhere: never claimed twice
    assert await queue.claim_many(db, 5, replica="r") == []


async def test_a_batch_of_pending_events_is_claimed_in_id_order(db: Database) -> None:
    await send(db, *[f"e{i}" for i in range(30)])
    claimed: list[int] = []
    while batch := await queue.claim_many(db, 7, replica="r"):
        assert len(batch) <= 7
        claimed += [e.id for e in batch if e.id is not None]
    assert claimed == list(range(1, 31))


async def test_a_key_held_by_one_batch_makes_another_wait(db: Database) -> None:
    if db.sqlite:
        pytest.skip("SQLite transactions are serial already: no key locks to take")
    other = Database(db.url)
    try:
        async with db.session() as first:
            await lock_keys(first, ["user:alice", "host:pc-1", "user:bob"])
            async with other.session() as second:
                waiting = asyncio.create_task(lock_keys(second, ["user:bob"]))
                await asyncio.sleep(0.5)
                assert not waiting.done()  # bob is held by the first transaction
                unrelated = Database(db.url)
                try:
                    async with unrelated.session() as third:  # another key: no wait
                        await asyncio.wait_for(lock_keys(third, ["user:carol"]), 5)
                finally:
                    await unrelated.dispose()
                await first.commit()  # the first batch ends …
                await asyncio.wait_for(waiting, 5)  # … and the second gets the key
                await second.commit()
    finally:
        await other.dispose()
