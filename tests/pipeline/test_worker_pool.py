"""The worker pool: enrichment overlaps, two workers (or two replicas) never process one
event, one incident's events are triaged in the order they were claimed, and a replica's
claims are released when it restarts or its lease runs out."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from integrations.detectors.generic import GenericDetector
from pipeline import audit, queue
from pipeline import worker as worker_module
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import Event, Incident, utcnow
from pipeline.observables import Observables
from pipeline.plugins import Facts
from pipeline.policy import ActionPolicy, Policy


class SlowEnricher:
    """Waits ``delays[user]`` seconds (default ``delay``) and counts calls in flight."""

    name = "test_slow"

    def __init__(self, delay: float = 0.05, delays: dict[str, float] | None = None) -> None:
        self.delay, self.delays = delay, delays or {}
        self.in_flight = self.most = 0

    async def enrich(self, observables: Observables) -> Facts:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            wait = max([self.delays.get(u, self.delay) for u in observables.users] or [0])
            await asyncio.sleep(wait)
        finally:
            self.in_flight -= 1
        return {}


def engine(db: Database, enricher: SlowEnricher, size: int, replica: str = "r1") -> Engine:
    return Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="log_only")], worker_concurrency=size),
        enrichers=[enricher],
        replica=replica,
    )


async def send(db: Database, alerts: list[dict[str, Any]]) -> None:
    async with db.session() as session:
        for alert in alerts:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(alert).encode()
            )


async def scored_event_ids(db: Database) -> list[int]:
    async with db.session() as session:
        return [e.detail["event_id"] for e in await audit.entries(session, verb="incident.scored")]


async def test_enrichment_overlaps_and_each_event_is_processed_once(db: Database) -> None:
    slow = SlowEnricher(delay=0.2)
    await send(db, [{"id": str(i), "title": "t", "user": f"u{i}"} for i in range(40)])
    pool = engine(db, slow, size=16)
    assert await pool.worker.drain() == 40
    assert slow.most >= 10  # the 200 ms lookups ran side by side
    ids = await scored_event_ids(db)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 40
    async with db.session() as session:
        incidents = (await session.exec(select(Incident))).all()
        events = (await session.exec(select(Event))).all()
    assert sum(i.event_count for i in incidents) == len(events) == 40
    assert {e.status for e in events} == {"done"}


async def test_two_replicas_never_process_one_event(db: Database) -> None:
    await send(db, [{"id": str(i), "title": "t", "user": f"u{i % 7}"} for i in range(60)])
    one, two = (engine(db, SlowEnricher(0.01), size=8, replica=r) for r in ("r1", "r2"))
    handled = await asyncio.gather(one.worker.drain(), two.worker.drain())
    assert sum(handled) == 60
    assert Counter(await scored_event_ids(db)).most_common(1)[0][1] == 1
    async with db.session() as session:
        incidents = (await session.exec(select(Incident))).all()
    assert sum(i.event_count for i in incidents) == 60


async def test_one_incidents_events_are_triaged_in_claim_order(db: Database) -> None:
    alerts = [{"id": str(i), "title": f"n{i}", "user": "carol"} for i in range(6)]
    alerts += [{"id": str(i), "title": "other", "user": "alice"} for i in range(6, 9)]
    await send(db, alerts)
    pool = engine(db, SlowEnricher(0), size=8)
    original = pool.triage.enrich

    async def enrich(event: Event) -> Any:  # the first alert's lookups are the slowest
        await asyncio.sleep(0.3 if event.external_id == "0" else 0.0)
        return await original(event)

    pool.triage.enrich = enrich  # type: ignore[method-assign]
    assert await pool.worker.drain() == 9
    async with db.session() as session:
        users = {e.id: e.observables["users"] for e in (await session.exec(select(Event))).all()}
    order = await scored_event_ids(db)
    carol = [i for i in order if users[i] == ["carol"]]
    alice = [i for i in order if users[i] == ["alice"]]
    assert carol == sorted(carol) and len(carol) == 6  # claim order kept in the incident
    assert order.index(alice[0]) < order.index(carol[0])  # unrelated ones did not wait


async def test_a_restarted_replica_releases_its_claims_at_once(db: Database) -> None:
    await send(db, [{"id": "1", "title": "t", "user": "u1"}, {"id": "2", "title": "t"}])
    mine = await queue.claim(db, replica="fido-1")
    theirs = await queue.claim(db, replica="fido-2")
    assert mine is not None and theirs is not None
    assert await queue.release(db, replica="fido-1") == 1  # fido-1 starts again
    restarted = engine(db, SlowEnricher(0), size=2, replica="fido-1")
    assert await restarted.worker.drain() == 1  # its own claim, at once; fido-2's waits
    async with db.session() as session:  # fido-2 died: its short lease runs out
        await session.exec(
            update(Event)
            .where(col(Event.id) == theirs.id)
            .values(claimed_at=utcnow() - queue.LEASE - timedelta(seconds=1))
        )
        await session.commit()
    assert await restarted.worker.drain() == 1


async def test_a_worker_whose_lease_was_taken_over_keeps_nothing(db: Database) -> None:
    await send(db, [{"id": "1", "title": "t", "user": "u1"}])
    stale = await queue.claim(db, replica="slow")
    assert stale is not None
    async with db.session() as session:
        await session.exec(
            update(Event).values(claimed_at=utcnow() - queue.LEASE - timedelta(seconds=1))
        )
        await session.commit()
    fast = engine(db, SlowEnricher(0), size=1, replica="fast")
    assert await fast.worker.drain() == 1
    with pytest.raises(queue.LostClaim):
        await fast.handle(stale)  # the first worker wakes up late
    async with db.session() as session:
        incidents = (await session.exec(select(Incident))).all()
    assert [i.event_count for i in incidents] == [1]  # counted once


async def test_a_batch_with_one_lost_claim_keeps_the_others_and_counts_each_once(
    db: Database,
) -> None:
    """The events of a batch are completed in one statement: when one of them was taken
    over meanwhile, the batch is not kept as it is; its events are finished one by one and
    only the lost one is left to the worker that took it."""
    await send(db, [{"id": str(i), "title": "t", "user": f"u{i}"} for i in range(3)])
    slow = engine(db, SlowEnricher(0), size=3, replica="slow")
    claimed = await queue.claim_many(db, 3, replica="slow")
    assert [e.id for e in claimed] == [1, 2, 3]
    async with db.session() as session:
        await session.exec(
            update(Event)
            .where(col(Event.id) == 2)
            .values(claimed_at=utcnow() - queue.LEASE - timedelta(seconds=1))
        )
        await session.commit()
    fast = engine(db, SlowEnricher(0), size=1, replica="fast")
    assert await fast.worker.drain() == 1  # takes event 2 over and triages it
    prepared = [await slow.prepare(event) for event in claimed]
    results = await slow.finish_many(prepared)
    assert isinstance(results[1], queue.LostClaim) and "event 2 " in str(results[1])
    assert isinstance(results[0], int) and isinstance(results[2], int)
    async with db.session() as session:
        events = (await session.exec(select(Event).order_by(col(Event.id)))).all()
        incidents = (await session.exec(select(Incident))).all()
    assert [e.status for e in events] == ["done"] * 3
    assert sorted(i.event_count for i in incidents) == [1, 1, 1]  # each counted once


async def test_leases_of_events_in_flight_are_renewed(db: Database) -> None:
    await send(db, [{"id": "1", "title": "t", "user": "u1"}])
    event = await queue.claim(db, replica="r")
    assert event is not None
    async with db.session() as session:
        await session.exec(update(Event).values(claimed_at=utcnow() - timedelta(seconds=50)))
        await session.commit()
    await queue.renew(db, [event])
    assert await queue.claim(db) is None  # renewed: still ours


async def test_a_batch_claim_takes_the_oldest_few_and_never_one_twice(db: Database) -> None:
    await send(db, [{"id": str(n), "title": "t", "user": f"u{n}"} for n in range(7)])
    first, second = await asyncio.gather(
        queue.claim_many(db, 3, replica="a"), queue.claim_many(db, 3, replica="b")
    )
    assert len(first) == 3 and len(second) == 3  # not more than asked for, not fewer
    assert not {e.id for e in first} & {e.id for e in second}
    assert len({e.claim_token for e in first}) == 1  # one claim, one token
    assert [e.id for e in first] == sorted(e.id for e in first)  # oldest first
    rest = await queue.claim_many(db, 10, replica="c")
    assert len(rest) == 1
    assert await queue.claim_many(db, 10, replica="c") == []


async def test_ready_events_are_triaged_together_and_one_bad_event_fails_alone(
    db: Database, mocker: Any
) -> None:
    """Events ready at once share one transaction, each incident scored once per batch;
    when one of them breaks triage, the others are triaged one by one and nothing is lost."""
    alerts = [{"id": str(i), "title": "storm", "user": "alice"} for i in range(12)]
    alerts += [{"id": "bad", "title": "poison", "user": "mallory"}]
    await send(db, alerts)
    pool = engine(db, SlowEnricher(delay=0.05), size=16)
    batches: list[int] = []
    attach_all = pool.triage._attach_all

    async def spy(items: Any) -> Any:
        batches.append(len(items))
        if any(event.title == "poison" for event, _ in items):
            raise RuntimeError("triage broke on the poison alert")
        return await attach_all(items)

    mocker.patch.object(pool.triage, "_attach_all", spy)
    mocker.patch.object(worker_module, "FINISH_BATCH", 5)
    assert await pool.worker.drain() >= 13  # the bad one is tried again a few times
    for _ in range(10):  # a retry whose claim raced the drain's last look: drain again
        async with db.session() as session:
            left = (await session.exec(select(Event).where(Event.status == "pending"))).all()
        if not left:
            break
        await pool.worker.drain()
    assert 1 < max(batches) <= 5  # ready events went together, a few at a time…
    async with db.session() as session:
        events = (await session.exec(select(Event).order_by(col(Event.id)))).all()
        [incident] = (await session.exec(select(Incident))).all()
    by_title = Counter((e.title, e.status) for e in events)
    assert by_title[("storm", "done")] == 12  # …and survived their neighbour's failure
    [bad] = [e for e in events if e.title == "poison"]
    assert bad.status == "failed" and "poison alert" in (bad.last_error or "")
    assert incident.event_count == 12  # counted once each, never twice
    ids = await scored_event_ids(db)
    assert sorted(ids) == [e.id for e in events if e.title == "storm"]  # in claim order


async def test_two_replicas_never_open_two_incidents_for_one_user(db: Database) -> None:
    """Each replica triages a first alert about the same user at the same moment: they
    take turns on the user's key, so the second joins the first's incident."""
    other = Database(db.url)
    try:
        for round_ in range(5):
            await send(
                db, [{"id": f"{round_}-{i}", "title": "t", "user": f"v{round_}"} for i in (1, 2)]
            )
            one = engine(db, SlowEnricher(0), size=1, replica="r1")
            two = engine(other, SlowEnricher(0), size=1, replica="r2")
            await asyncio.gather(one.worker.drain(), two.worker.drain())
    finally:
        await other.dispose()
    async with db.session() as session:
        incidents = (await session.exec(select(Incident))).all()
    assert sorted(i.event_count for i in incidents) == [2] * 5


def test_the_door_is_busy_only_while_deliveries_pour_in(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: now[0])
    door = worker_module.Door()
    for _ in range(door.BUSY_AT - 1):  # a few alerts now and then: never busy
        with door:
            assert not door.busy()
    assert not door.busy()
    with door:  # the BUSY_AT-th within the window
        assert door.busy()
    assert door.busy()
    now[0] += door.WINDOW + 0.001  # the window has passed without a delivery
    assert not door.busy()
    held = [door.__enter__() for _ in range(door.BUSY_AT)]  # that many at once
    assert door.busy()
    for entered in held:
        entered.__exit__()
    now[0] += door.WINDOW + 0.001
    assert not door.busy()


async def test_while_deliveries_pour_in_the_worker_takes_a_trickle_then_everything(
    db: Database,
) -> None:
    """A flood at the door: the worker claims at most BUSY_CLAIM events per ``defer`` (it
    never stops), and all the rest as soon as the door is quiet."""
    await send(db, [{"id": str(i), "title": "t", "user": f"u{i}"} for i in range(20)])
    pool = engine(db, SlowEnricher(delay=0), size=16)
    pool.worker.defer = 0.2
    door = pool.worker.door
    flood = [door.__enter__() for _ in range(door.BUSY_AT)]
    stop = asyncio.Event()
    running = asyncio.create_task(pool.worker.run(stop, idle=0.05))
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        during = 0
        while during < worker_module.BUSY_CLAIM and loop.time() - started < 10:
            await asyncio.sleep(0.02)  # until the first claim's worth of the trickle is done
            during = len(await scored_event_ids(db))
        elapsed = loop.time() - started
        # a claim of BUSY_CLAIM per ``defer`` at most, however slow this machine is
        assert worker_module.BUSY_CLAIM <= during < 20
        assert during <= worker_module.BUSY_CLAIM * (elapsed / pool.worker.defer + 2)
        for entered in flood:
            entered.__exit__()
        for _ in range(100):
            if len(await scored_event_ids(db)) == 20:
                break
            await asyncio.sleep(0.05)
        assert len(await scored_event_ids(db)) == 20
    finally:
        stop.set()
        await running


async def test_a_busy_pool_claims_once_a_quarter_is_free_and_an_empty_queue_waits_for_news(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each claim is a transaction: a full pool claims again once a quarter of its slots are
    free (not for every event that ends), and with the queue empty an event that ends
    claims nothing; a new event, or one that failed back into the queue, is claimed at once
    (not after the idle timeout)."""
    claims: list[int] = []
    claim_many = queue.claim_many

    async def counted(*args: Any, **kwargs: Any) -> list[Event]:
        events = await claim_many(*args, **kwargs)
        claims.append(len(events))
        return events

    monkeypatch.setattr(queue, "claim_many", counted)
    # 40 events, 8 slots, each ending at its own moment: a claim per ended event would be 32+
    delays = {f"u{i}": 0.01 * (i % 7 + 1) for i in range(40)}
    await send(db, [{"id": str(i), "title": "t", "user": f"u{i}"} for i in range(40)])
    pool = engine(db, SlowEnricher(delays=delays), size=8)
    attach_all, broken = pool.triage._attach_all, [True]

    async def once_broken(items: Any) -> Any:  # the late alert's first triage fails
        if broken[0] and any(event.title == "late" for event, _ in items):
            broken[0] = False
            raise RuntimeError("the database went away mid-triage")
        return await attach_all(items)

    monkeypatch.setattr(pool.triage, "_attach_all", once_broken)

    async def scored(count: int) -> list[int]:
        for _ in range(150):  # 3 s, well within the 5 s idle timeout
            if len(ids := await scored_event_ids(db)) >= count:
                return ids
            await asyncio.sleep(0.02)
        return await scored_event_ids(db)

    stop = asyncio.Event()
    running = asyncio.create_task(pool.worker.run(stop, idle=5))
    try:
        assert sorted(await scored(40)) == list(range(1, 41))
        await asyncio.sleep(0.2)  # the last events end with the queue empty: no claim
        taken = [n for n in claims if n]
        assert sum(taken) == 40 and claims.count(0) <= 1  # one look finds the queue empty
        assert all(n >= 2 for n in taken[:-1])  # a quarter of 8 slots at least
        assert len(claims) <= 40 // 2 + 2
        done = len(claims)
        await send(db, [{"id": "late", "title": "late", "user": "late"}])
        pool.worker.wakeup.set()  # as the webhook door does on ingest
        assert len(await scored(41)) == 41  # failed once, back in the queue, claimed again
        assert not broken[0] and claims[done:] == [1, 1]
    finally:
        stop.set()
        await running
