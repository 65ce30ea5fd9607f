"""Quotas per provider, counted in the database; over quota or after a 429, lookups wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from pipeline.db import Database
from pipeline.lookups import quota as quota_module
from pipeline.lookups.quota import Quota
from pipeline.models import DeferredLookup, LookupCache
from pipeline.policy import LookupsPolicy, Policy, ProviderPolicy
from tests.pipeline.lookups.fakes import Clock, ReputationLookup, Sleeps
from tests.pipeline.lookups.helpers import obs, policy, wrap

HASHES = [c * 64 for c in "abcdef"]


async def deferred_rows(db: Database) -> list[DeferredLookup]:
    async with db.session() as session:
        return list((await session.exec(select(DeferredLookup))).all())


async def test_virustotal_defaults_are_4_a_minute_and_500_a_day(db: Database, clock: Clock) -> None:
    quota = Quota(db, LookupsPolicy(), clock=clock)
    grants = [await quota.take("virustotal") for _ in range(5)]
    assert grants[:4] == [None] * 4
    assert grants[4] == datetime(2026, 3, 2, 10, 1, tzinfo=UTC)  # the next minute
    clock.advance(60)
    assert await quota.take("virustotal") is None
    assert await quota.used("virustotal", "day") == 5
    assert all([await quota.take("unlimited") is None for _ in range(50)])


async def test_the_day_limit_holds_across_minutes(db: Database, clock: Clock) -> None:
    rules = LookupsPolicy(providers={"p": ProviderPolicy(per_minute=2, per_day=3)})
    quota = Quota(db, rules, clock=clock)
    assert [await quota.take("p") for _ in range(2)] == [None, None]
    clock.advance(60)
    assert await quota.take("p") is None
    assert await quota.take("p") == datetime(2026, 3, 3, tzinfo=UTC)  # tomorrow


async def test_replicas_share_one_quota(db: Database, clock: Clock) -> None:
    other = Database(db.url)
    try:
        rules = LookupsPolicy(providers={"p": ProviderPolicy(per_minute=4)})
        quotas = [Quota(db, rules, clock=clock), Quota(other, rules, clock=clock)]
        for quota in quotas:  # running replicas: a fresh SQLite file is switched to WAL once,
            await quota.used("p", "minute")  # and first connections racing to do it can fail
        grants = await asyncio.gather(*(quotas[i % 2].take("p") for i in range(10)))
    finally:
        await other.dispose()
    assert grants.count(None) == 4


async def test_the_fifth_lookup_in_a_minute_is_deferred(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({h: {"verdict": "clean"} for h in HASHES})
    enricher = wrap(vendor, db, clock, sleeps, policy(per_minute=4, per_day=500))
    facts = await enricher.enrich(obs(hashes=HASHES[:5]))
    assert len(vendor.calls) == 4
    pending = [key for key, value in facts.items() if value == {"pending": True}]
    answered = [key for key, value in facts.items() if value == {"verdict": "clean"}]
    assert (len(pending), len(answered)) == (1, 4)
    [row] = await deferred_rows(db)
    assert f"hash:{row.value}" == pending[0]
    assert row.not_before.replace(tzinfo=UTC) == datetime(2026, 3, 2, 10, 1, tzinfo=UTC)
    # the same value again while it waits: still pending, still one row, no call
    assert (await enricher.enrich(obs(hashes=[row.value]))) == {pending[0]: {"pending": True}}
    assert len(vendor.calls) == 4 and len(await deferred_rows(db)) == 1


async def test_a_429_defers_and_blocks_the_provider(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({HASHES[0]: {"verdict": "clean"}})
    vendor.rate_limited, vendor.retry_after = 1, 120
    enricher = wrap(vendor, db, clock, sleeps)
    facts = await enricher.enrich(obs(hashes=[HASHES[0]]))
    assert facts == {f"hash:{HASHES[0]}": {"pending": True}}
    [row] = await deferred_rows(db)
    assert row.not_before.replace(tzinfo=UTC) == clock.now + timedelta(seconds=120)
    # until then nothing is sent to the provider, from any lookup of it
    await enricher.enrich(obs(hashes=[HASHES[1]]))
    assert vendor.calls == [("hash", HASHES[0])]
    assert sleeps.waits == []  # a 429 is not retried in a loop
    assert enricher.breaker.failures == 0  # nor counted as the provider failing
    clock.advance(121)
    assert await enricher.enrich(obs(hashes=[HASHES[1]])) == {f"hash:{HASHES[1]}": {"found": False}}


async def test_a_zero_ttl_is_never_cached(db: Database, clock: Clock, sleeps: Sleeps) -> None:
    vendor = ReputationLookup({HASHES[0]: {"verdict": "clean"}})
    rules: Policy = policy(ttl=0)
    enricher = wrap(vendor, db, clock, sleeps, rules)
    await enricher.enrich(obs(hashes=[HASHES[0]]))
    await enricher.enrich(obs(hashes=[HASHES[0]]))
    assert len(vendor.calls) == 2


async def test_an_unlimited_provider_reads_its_block_at_most_once_a_second(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transaction per call for a provider without limits; a block set by another
    replica is seen once the local answer is older than BLOCK_RECHECK_SECONDS."""
    seconds = [1000.0]
    monkeypatch.setattr(quota_module.time, "monotonic", lambda: seconds[0])
    here, there = Quota(db, LookupsPolicy(), clock=clock), Quota(db, LookupsPolicy(), clock=clock)
    statements: list[str] = []
    listen = db.engine.sync_engine
    record = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(listen, "before_cursor_execute", record)
    try:
        # a burst of lookups at the same moment, then more one after the other: read once
        assert await asyncio.gather(*(here.take("directory") for _ in range(20))) == [None] * 20
        assert [await here.take("directory") for _ in range(20)] == [None] * 20
        assert len([s for s in statements if "lookup_quota" in s]) == 1  # read once
        until = clock.now + timedelta(seconds=30)
        await there.block("directory", until=until)
        assert await there.take("directory") == until  # its own block: seen at once
        assert await here.take("directory") is None  # another replica's: not yet…
        seconds[0] += quota_module.BLOCK_RECHECK_SECONDS
        assert await here.take("directory") == until  # …but within the recheck interval
    finally:
        event.remove(listen, "before_cursor_execute", record)
    clock.advance(31)
    assert await here.take("directory") is None


async def test_a_burst_shares_one_failed_read_of_the_block_and_the_next_one_reads_again(
    db: Database, clock: Clock
) -> None:
    """The database fails the block's read: every lookup of the burst gets that error from
    the one read (not one read each, in turn), and nothing stale is kept for the next."""
    quota = Quota(db, LookupsPolicy(), clock=clock)
    tried: list[str] = []

    def failing(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "lookup_quota" in statement:
            tried.append(statement)
            raise OperationalError(statement, {}, Exception("server closed the connection"))

    listen = db.engine.sync_engine
    event.listen(listen, "before_cursor_execute", failing)
    try:
        results = await asyncio.gather(
            *(quota.take("directory") for _ in range(10)), return_exceptions=True
        )
    finally:
        event.remove(listen, "before_cursor_execute", failing)
    assert len(tried) == 1
    assert all(isinstance(r, OperationalError) for r in results)
    assert await quota.take("directory") is None  # the database is back: read, not blocked


async def test_a_provider_can_have_fewer_calls_in_flight(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    """lookups.concurrency (by default the worker pool's size) bounds every enricher; a
    provider's own ``concurrency`` bounds it further."""
    in_flight, peak = [0], [0]
    gate = asyncio.Event()

    class Held(ReputationLookup):  # answers only when the test opens the gate
        async def lookup(self, kind: str, value: str) -> dict[str, Any] | None:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            await gate.wait()
            in_flight[0] -= 1
            return {"verdict": "clean"}

    cases = (  # (the provider's, the enricher's, the worker pool's) → calls in flight
        ((None, None, 64), len(HASHES)),
        ((2, None, 64), 2),
        ((None, None, 3), 3),
        ((None, 4, 3), 4),
    )
    for (limit, enricher_limit, workers), expected in cases:
        in_flight[0] = peak[0] = 0
        gate.clear()
        rules = LookupsPolicy(
            providers={"test_vt": ProviderPolicy(concurrency=limit)}, concurrency=enricher_limit
        )
        enricher = wrap(
            Held(), db, clock, sleeps, Policy(lookups=rules, worker_concurrency=workers)
        )
        lookups = asyncio.create_task(enricher.enrich(obs(hashes=HASHES)))
        for _ in range(500):  # until as many calls as allowed are waiting at the vendor
            if in_flight[0] >= expected:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and no more arrive
        assert peak[0] == expected
        gate.set()
        await lookups
        async with db.session() as session:  # forget the answers: the next round calls again
            await session.exec(delete(LookupCache))  # type: ignore[call-overload]
            await session.commit()
