"""The lookup cache: in the database, per (enricher, kind, value), with TTLs."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from pipeline.db import Database
from pipeline.lookups.enricher import LookupEnricher
from tests.pipeline.lookups.fakes import Clock, ReputationLookup, Sleeps
from tests.pipeline.lookups.helpers import SHA_A, SHA_B, obs, policy, wrap

BAD = {"verdict": "malicious", "detection_ratio": "40/70"}


async def test_a_cached_answer_avoids_the_call(db: Database, clock: Clock, sleeps: Sleeps) -> None:
    vendor = ReputationLookup({SHA_A: BAD})
    enricher = wrap(vendor, db, clock, sleeps)
    first = await enricher.enrich(obs(hashes=[SHA_A]))
    second = await enricher.enrich(obs(hashes=[SHA_A.upper()]))  # another spelling
    assert first == {f"hash:{SHA_A}": BAD}
    assert second == {f"hash:{SHA_A.upper()}": BAD}
    assert vendor.calls == [("hash", SHA_A)]


async def test_not_known_is_cached_too(db: Database, clock: Clock, sleeps: Sleeps) -> None:
    vendor = ReputationLookup({})
    vendor.not_found = {SHA_B}
    enricher = wrap(vendor, db, clock, sleeps)
    for _ in range(3):
        facts = await enricher.enrich(obs(hashes=[SHA_A, SHA_B]))
        assert facts == {f"hash:{SHA_A}": {"found": False}, f"hash:{SHA_B}": {"found": False}}
    assert sorted(vendor.values()) == [SHA_A, SHA_B]


async def test_answers_expire_after_their_ttl(db: Database, clock: Clock, sleeps: Sleeps) -> None:
    vendor = ReputationLookup({SHA_A: BAD})
    enricher = wrap(vendor, db, clock, sleeps, policy(ttl=3600, negative_ttl=600))
    await enricher.enrich(obs(hashes=[SHA_A, SHA_B]))  # A known, B not
    clock.advance(599)
    await enricher.enrich(obs(hashes=[SHA_A, SHA_B]))
    assert len(vendor.calls) == 2  # both still cached
    clock.advance(2)  # the negative answer (10 minutes) is stale, the positive one is not
    await enricher.enrich(obs(hashes=[SHA_A, SHA_B]))
    assert vendor.values()[2:] == [SHA_B]
    clock.advance(3600)
    vendor.answers[SHA_A] = {"verdict": "clean"}
    facts = await enricher.enrich(obs(hashes=[SHA_A]))
    assert facts == {f"hash:{SHA_A}": {"verdict": "clean"}}
    assert vendor.values()[3:] == [SHA_A]


async def test_cache_survives_a_restart_and_is_shared(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    await wrap(ReputationLookup({SHA_A: BAD}), db, clock, sleeps).enrich(obs(hashes=[SHA_A]))
    replica = Database(db.url)  # a new process (or another replica) on the same database
    try:
        vendor = ReputationLookup({SHA_A: {"verdict": "changed"}})
        facts = await wrap(vendor, replica, clock, sleeps).enrich(obs(hashes=[SHA_A]))
    finally:
        await replica.dispose()
    assert facts == {f"hash:{SHA_A}": BAD}
    assert vendor.calls == []


async def test_the_cache_is_per_enricher(db: Database, clock: Clock, sleeps: Sleeps) -> None:
    await wrap(ReputationLookup({SHA_A: BAD}), db, clock, sleeps).enrich(obs(hashes=[SHA_A]))
    other = ReputationLookup({SHA_A: {"seen": 3}}, name="test_other")
    facts = await wrap(other, db, clock, sleeps).enrich(obs(hashes=[SHA_A]))
    assert facts == {f"hash:{SHA_A}": {"seen": 3}}
    assert other.calls == [("hash", SHA_A)]


async def test_only_supported_kinds_are_looked_up(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({"8.8.8.8": {"asn": 15169}}, kinds=frozenset({"ip"}))
    enricher = wrap(vendor, db, clock, sleeps)
    facts = await enricher.enrich(obs(ips=["8.8.8.8"], hashes=[SHA_A], domains=["evil.com"]))
    assert facts == {"ip:8.8.8.8": {"asn": 15169}}
    assert vendor.calls == [("ip", "8.8.8.8")]
    assert isinstance(enricher, LookupEnricher) and enricher.name == "test_reputation"


async def test_concurrent_lookups_share_their_cache_reads_and_writes(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    """32 events' lookups in flight at once: one cache read and a write or two between
    them (not 32 of each), each answer still its own and kept."""
    hashes = [f"{i:064x}" for i in range(32)]
    everyone_asked = asyncio.Event()

    class Gated(ReputationLookup):  # answers once all 32 are in flight, as a slow vendor
        async def lookup(self, kind: str, value: str) -> dict[str, Any] | None:
            if len(self.calls) == len(hashes) - 1:
                everyone_asked.set()
            answer = await super().lookup(kind, value)
            await everyone_asked.wait()
            return answer

    vendor = Gated({h: {"verdict": f"v{i}"} for i, h in enumerate(hashes)})
    enricher = wrap(vendor, db, clock, sleeps)
    statements: list[str] = []
    sync = db.engine.sync_engine

    def on_statement(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(sync, "before_cursor_execute", on_statement)
    try:
        answers = await asyncio.gather(*(enricher.enrich(obs(hashes=[h])) for h in hashes))
    finally:
        event.remove(sync, "before_cursor_execute", on_statement)
    assert answers == [{f"hash:{h}": {"verdict": f"v{i}"}} for i, h in enumerate(hashes)]
    assert len([s for s in statements if "FROM lookup_cache" in s]) == 1
    writes = [s for s in statements if s.startswith("INSERT INTO lookup_cache")]
    assert 1 <= len(writes) <= 2  # answers that arrive together share one write
    vendor.calls.clear()  # and every answer was kept: no second call
    assert await enricher.enrich(obs(hashes=hashes)) == {
        f"hash:{h}": {"verdict": f"v{i}"} for i, h in enumerate(hashes)
    }
    assert vendor.calls == []
