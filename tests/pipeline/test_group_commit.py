"""Concurrent webhook deliveries share commits; each still gets its own answer after the
commit holding its alerts, and one delivery's failure stays its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlmodel import select

from pipeline import ingest
from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.ingest import GroupCommit
from pipeline.models import Event
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent


def alert(external_id: str, title: str = "t") -> ParsedEvent:
    return ParsedEvent(
        external_id=external_id,
        title=title,
        severity="high",
        observables=Observables(users=["alice"]),
        raw="{}",
    )


def count_commits(db: Database) -> list[int]:
    commits = [0]

    @event.listens_for(db.engine.sync_engine, "commit")
    def counted(_connection: Any) -> None:
        commits[0] += 1

    return commits


async def stored(db: Database) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).select_from(Event))).one())


async def test_concurrent_deliveries_share_a_commit_and_each_gets_its_own_answer(
    db: Database,
) -> None:
    commits = count_commits(db)
    committer = GroupCommit(db)
    results = await asyncio.gather(
        *(committer.store("generic", [alert(f"a-{n}"), alert(f"b-{n}")]) for n in range(20))
    )
    assert commits[0] < 5  # 20 deliveries, a handful of commits
    assert await stored(db) == 40
    ids = [i for result in results for i in result.created]
    assert len(ids) == 40 and len(set(ids)) == 40
    async with db.session() as session:
        first = await session.get(Event, results[0].created[0])
    assert first is not None and first.external_id == "a-0"  # each answer is its own rows


async def test_duplicates_within_a_batch_and_in_the_database(db: Database) -> None:
    committer = GroupCommit(db)
    earlier = await committer.store("generic", [alert("seen")])
    assert len(earlier.created) == 1
    one, two, three = await asyncio.gather(
        committer.store("generic", [alert("seen"), alert("new")]),
        committer.store("generic", [alert("new"), alert("new")]),
        committer.store("other", [alert("new")]),  # another detector's id space
    )
    assert one.duplicates == ["seen"] and len(one.created) == 1
    assert two.duplicates == ["new", "new"] and two.created == []
    assert len(three.created) == 1
    assert await stored(db) == 3


async def test_one_failing_delivery_does_not_fail_its_neighbours(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ingest._insert

    async def insert(session: Any, deliveries: Any) -> Any:
        if any(row["external_id"] == "poison" for rows in deliveries for row in rows):
            raise RuntimeError("the database refused this row")
        return await real(session, deliveries)

    monkeypatch.setattr(ingest, "_insert", insert)
    committer = GroupCommit(db)
    results = await asyncio.gather(
        committer.store("generic", [alert("fine-1")]),
        committer.store("generic", [alert("poison")]),
        committer.store("generic", [alert("fine-2")]),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert not isinstance(results[0], BaseException) and len(results[0].created) == 1
    assert not isinstance(results[2], BaseException) and len(results[2].created) == 1
    assert await stored(db) == 2


async def test_a_delivery_that_cannot_be_stored_is_refused_before_it_joins(db: Database) -> None:
    committer = GroupCommit(db)
    with pytest.raises(ParseError, match="control character"):
        await committer.store("generic", [alert("bad\x00id")])
    assert await stored(db) == 0


async def test_a_client_that_hangs_up_does_not_cancel_the_commit(db: Database) -> None:
    committer = GroupCommit(db, window=0.05)
    hung_up = asyncio.create_task(committer.store("generic", [alert("gone")]))
    kept = asyncio.create_task(committer.store("generic", [alert("kept")]))
    await asyncio.sleep(0.01)
    hung_up.cancel()
    assert len((await kept).created) == 1
    assert await stored(db) == 2  # the cancelled request's alert was committed anyway
