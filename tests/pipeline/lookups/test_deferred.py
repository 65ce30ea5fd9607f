"""Deferred lookups complete later and the incidents waiting for them are refreshed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import col, select

from integrations.detectors.generic import GenericDetector
from pipeline import audit, locks
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.lookups.deferred import JOB, run_deferred
from pipeline.lookups.store import attach_waiters
from pipeline.models import DeferredLookup, Incident, LookupWaiter
from pipeline.notify import NullNotifier
from pipeline.policy import CorrelationPolicy, Policy
from pipeline.records import EnrichmentResult, dump_enrichment
from tests.pipeline.lookups.fakes import Clock, ReputationLookup, Sleeps
from tests.pipeline.lookups.helpers import policy, wrap

HASHES = [c * 64 for c in "abcdef"]
CLEAN = {"verdict": "clean"}
BAD = {"verdict": "malicious"}


def make(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup, rules: Policy
) -> Engine:
    return Engine(
        db=db,
        policy=rules,
        enrichers=[wrap(vendor, db, clock, sleeps, rules)],
        notifier=NullNotifier(),
    )


async def send(db: Database, pipeline: Engine, **alert: Any) -> None:
    alert = {"title": "Malware", "severity": "high", **alert}
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(alert).encode())
    await pipeline.drain()


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as session:
        return list((await session.exec(select(Incident).order_by(col(Incident.id)))).all())


async def count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return len((await session.exec(select(model))).all())


def facts(incident: Incident) -> dict[str, Any]:
    return incident.enrichment["test_reputation"]["facts"]


def published(pipeline: Engine) -> list[Incident]:
    return [incident for incident, _ in pipeline.incidents.notifier.published]  # type: ignore[attr-defined]


@pytest.fixture
def vendor() -> ReputationLookup:
    return ReputationLookup({h: CLEAN for h in HASHES[:4]} | {HASHES[4]: BAD})


async def deferred(pipeline: Engine) -> int:
    """One run of the deferred-lookups job, then the card updates it queued."""
    answered = await run_deferred(pipeline)
    await pipeline.flush()
    return answered


async def test_over_quota_completes_later_and_the_card_shows_it(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    pipeline = make(db, clock, sleeps, vendor, policy(per_minute=4, per_day=500))
    await send(db, pipeline, id="1", hash=HASHES[:5])
    [incident] = await incidents(db)
    assert sorted(map(str, facts(incident).values())).count(str({"pending": True})) == 1
    [late] = [k for k, v in facts(incident).items() if v == {"pending": True}]
    assert published(pipeline)[-1].enrichment == incident.enrichment  # the card says pending
    assert await deferred(pipeline) == 0  # not due: the minute is not over
    assert len(vendor.calls) == 4
    clock.advance(60)
    assert await deferred(pipeline) == 1
    assert len(vendor.calls) == 5
    [incident] = await incidents(db)
    value = late.partition(":")[2]
    assert facts(incident)[late] == vendor.answers[value]
    assert {"pending": True} not in facts(incident).values()
    card = published(pipeline)[-1]
    assert len(published(pipeline)) == 2 and card.id == incident.id
    assert facts(card)[late] == vendor.answers[value]
    assert await count(db, DeferredLookup) == await count(db, LookupWaiter) == 0
    async with db.session() as session:
        verbs = [e.verb for e in await audit.entries(session, incident_id=incident.id)]
    assert verbs == ["incident.scored", "incident.refreshed"]
    assert await deferred(pipeline) == 0  # nothing left
    assert len(published(pipeline)) == 2


async def test_a_429_defers_until_retry_after(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    vendor.rate_limited, vendor.retry_after = 1, 30
    pipeline = make(db, clock, sleeps, vendor, policy())
    await send(db, pipeline, id="1", hash=HASHES[4])
    [incident] = await incidents(db)
    assert facts(incident) == {f"hash:{HASHES[4]}": {"pending": True}}
    clock.advance(29)
    assert await deferred(pipeline) == 0
    clock.advance(1)
    assert await deferred(pipeline) == 1
    [incident] = await incidents(db)
    assert facts(incident) == {f"hash:{HASHES[4]}": BAD}
    assert facts(published(pipeline)[-1]) == {f"hash:{HASHES[4]}": BAD}


async def test_incidents_waiting_for_one_value_share_one_call(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    # correlation by user only, so the two alerts with one hash stay two incidents
    separate = policy(per_minute=1, correlation=CorrelationPolicy(join_on=["user"]))
    pipeline = make(db, clock, sleeps, vendor, separate)
    await send(db, pipeline, id="1", user="alice", hash=HASHES[0])  # takes the minute's call
    await send(db, pipeline, id="2", user="bob", hash=HASHES[4])
    await send(db, pipeline, id="3", user="carol", hash=HASHES[4])
    assert [len(i.observables["users"]) for i in await incidents(db)] == [1, 1, 1]
    assert await count(db, LookupWaiter) == 2 and await count(db, DeferredLookup) == 1
    clock.advance(60)
    assert await deferred(pipeline) == 1
    assert vendor.values() == [HASHES[0], HASHES[4]]
    assert [facts(i)[f"hash:{HASHES[4]}"] for i in (await incidents(db))[1:]] == [BAD, BAD]


async def test_a_waiter_arriving_after_the_answer_gets_it_from_the_cache(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    pipeline = make(db, clock, sleeps, vendor, policy())
    await send(db, pipeline, id="1", hash=HASHES[4])  # answered and cached
    [incident] = await incidents(db)
    assert incident.id is not None
    key = f"hash:{HASHES[4]}"
    pending = {"test_reputation": EnrichmentResult(facts={key: {"pending": True}})}
    async with db.session() as session:  # as if the worker saw "pending" a moment earlier
        fresh = await session.get(Incident, incident.id)
        assert fresh is not None
        fresh.enrichment = dump_enrichment(pending)
        session.add(fresh)
        await attach_waiters(
            session,
            sqlite=db.sqlite,
            incident_id=incident.id,
            results=pending,
            lookups=["test_reputation"],
        )
        await session.commit()
    assert await deferred(pipeline) == 0  # no lookup made: the cache answers
    [incident] = await incidents(db)
    assert facts(incident) == {key: BAD}
    assert vendor.values() == [HASHES[4]]


async def test_a_waiter_whose_answer_expired_is_looked_up_again(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    rules = policy(per_minute=1, ttl=30, lookups={"concurrency": 1})  # HASHES[0] goes first
    pipeline = make(db, clock, sleeps, vendor, rules)
    await send(db, pipeline, id="1", hash=[HASHES[0], HASHES[4]])
    async with db.session() as session:  # the lookup was made, the answer then expired
        row = (await session.exec(select(DeferredLookup))).one()
        await session.delete(row)
        await session.commit()
    clock.advance(120)
    await deferred(pipeline)  # asks again
    assert await count(db, DeferredLookup) == 1
    assert await deferred(pipeline) == 1
    [incident] = await incidents(db)
    assert facts(incident)[f"hash:{HASHES[4]}"] == BAD


async def test_a_failing_deferred_lookup_gives_up_with_an_error(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    rules = policy(
        per_minute=1,
        breaker_failures=100,
        lookups={"retries": 0, "deferred_max_attempts": 3, "concurrency": 1},
    )
    pipeline = make(db, clock, sleeps, vendor, rules)
    await send(db, pipeline, id="1", hash=[HASHES[0], HASHES[4]])
    vendor.broken = True
    for _ in range(2):
        clock.advance(3600)
        assert await deferred(pipeline) == 0
    async with db.session() as session:
        row = (await session.exec(select(DeferredLookup))).one()
    assert row.attempts == 2 and "503" in (row.last_error or "")
    clock.advance(3600)
    await deferred(pipeline)
    [incident] = await incidents(db)
    assert facts(incident)[f"hash:{HASHES[4]}"] == {"error": "test_vt: 503 Service Unavailable"}
    assert await count(db, DeferredLookup) == await count(db, LookupWaiter) == 0
    assert len(vendor.calls) == 1 + 3


async def test_a_value_made_internal_meanwhile_is_not_sent(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({"evil-site.com": BAD, "partner.example": CLEAN})
    # one call at a time, so the first domain is the one that takes the minute's quota
    one_by_one = {"concurrency": 1}
    pipeline = make(db, clock, sleeps, vendor, policy(per_minute=1, lookups=one_by_one))
    await send(db, pipeline, id="1", domain=["evil-site.com", "partner.example"])
    later = policy(
        per_minute=1, lookups=one_by_one, privacy={"internal_domains": ["partner.example"]}
    )
    pipeline.enrichers = [wrap(vendor, db, clock, sleeps, later)]
    clock.advance(60)
    await deferred(pipeline)
    [incident] = await incidents(db)
    assert facts(incident)["domain:partner.example"] == {"withheld": "internal"}
    assert vendor.values() == ["evil-site.com"]


async def test_no_lookup_enrichers_means_nothing_to_do(db: Database) -> None:
    assert await run_deferred(Engine(db=db, policy=Policy())) == 0


async def test_only_one_replica_runs_the_job(
    db: Database, clock: Clock, sleeps: Sleeps, vendor: ReputationLookup
) -> None:
    if db.sqlite:
        pytest.skip("SQLite means one process: the job's lock is always granted")
    pipeline = make(db, clock, sleeps, vendor, policy(per_minute=1, lookups={"concurrency": 1}))
    await send(db, pipeline, id="1", hash=[HASHES[0], HASHES[4]])
    clock.advance(60)
    async with locks.singleton(db, JOB) as held:
        assert held
        assert await deferred(pipeline) == 0
    assert await deferred(pipeline) == 1
