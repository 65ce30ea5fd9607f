"""The circuit breaker per provider, and retries of failed calls."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.db import Database
from pipeline.errors import IntegrationError
from pipeline.lookups.breaker import Breaker, BreakerState
from tests.pipeline.lookups.fakes import Clock, ReputationLookup, Sleeps
from tests.pipeline.lookups.helpers import SHA_A, SHA_B, obs, policy, wrap

SHAS = [c * 64 for c in "0123456789"]


def test_breaker_opens_half_opens_and_closes(clock: Clock) -> None:
    breaker = Breaker(failures=3, cooldown=timedelta(seconds=30), clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.closed
    breaker.success()  # consecutive failures only
    for _ in range(3):
        breaker.failure()
    assert breaker.state is BreakerState.open and not breaker.allow()
    assert breaker.retry_at() == clock.now + timedelta(seconds=30)
    clock.advance(30)
    assert breaker.state is BreakerState.half_open
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failure()  # the trial failed: open for another cool-down
    assert breaker.state is BreakerState.open
    clock.advance(30)
    assert breaker.allow()
    breaker.release()  # the trial was not made after all
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.closed and breaker.allow() and breaker.allow()


async def test_errors_are_retried_with_backoff(db: Database, clock: Clock, sleeps: Sleeps) -> None:
    vendor = ReputationLookup({SHA_A: {"verdict": "clean"}})
    vendor.fail = 2
    enricher = wrap(vendor, db, clock, sleeps, policy(lookups={"retry_backoff_seconds": 0.25}))
    assert await enricher.enrich(obs(hashes=[SHA_A])) == {f"hash:{SHA_A}": {"verdict": "clean"}}
    assert len(vendor.calls) == 3
    assert sleeps.waits == [0.25, 0.5]


async def test_a_failing_indicator_reports_its_error_and_others_stay_usable(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    sha_c = "c" * 64
    vendor = ReputationLookup({SHA_A: {"verdict": "clean"}, sha_c: {"verdict": "malicious"}})
    rules = policy(breaker_failures=10, lookups={"concurrency": 1})
    enricher = wrap(vendor, db, clock, sleeps, rules)
    await enricher.enrich(obs(hashes=[SHA_A]))  # cached
    vendor.fail = 3
    facts = await enricher.enrich(obs(hashes=[SHA_A, SHA_B, sha_c]))
    assert facts == {
        f"hash:{SHA_A}": {"verdict": "clean"},
        f"hash:{SHA_B}": {"error": "test_vt: 503 Service Unavailable"},
        f"hash:{sha_c}": {"verdict": "malicious"},
    }
    assert vendor.values() == [SHA_A, SHA_B, SHA_B, SHA_B, sha_c]  # first try, two retries


async def test_every_call_failing_degrades_the_enricher(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup()
    vendor.crash = True  # a bug in the plugin counts as a failure, it does not escape
    enricher = wrap(vendor, db, clock, sleeps, policy(breaker_failures=10))
    with pytest.raises(IntegrationError, match="every test_reputation lookup failed: KeyError"):
        await enricher.enrich(obs(hashes=[SHA_A]))


async def test_open_breaker_skips_calls_and_degrades_until_the_cooldown(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({h: {"verdict": "clean"} for h in SHAS})
    vendor.broken = True
    rules = policy(breaker_failures=3, cooldown=120, lookups={"retries": 0, "concurrency": 1})
    enricher = wrap(vendor, db, clock, sleeps, rules)
    with pytest.raises(IntegrationError, match="circuit open"):
        await enricher.enrich(obs(hashes=SHAS[:5]))
    assert len(vendor.calls) == 3  # the 4th and 5th were not attempted
    with pytest.raises(IntegrationError, match="circuit open"):
        await enricher.enrich(obs(hashes=SHAS[5:]))
    assert len(vendor.calls) == 3
    clock.advance(120)  # half-open: one trial; it works, so the breaker closes
    vendor.broken = False
    facts = await enricher.enrich(obs(hashes=SHAS[5:]))
    assert list(facts.values()) == [{"verdict": "clean"}] * 5
    assert len(vendor.calls) == 3 + 5


async def test_callers_wait_for_the_half_open_trial(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({h: {"verdict": "clean"} for h in SHAS})
    vendor.broken = True
    rules = policy(breaker_failures=1, cooldown=10, lookups={"retries": 0, "concurrency": 8})
    enricher = wrap(vendor, db, clock, sleeps, rules)
    with pytest.raises(IntegrationError):
        await enricher.enrich(obs(hashes=SHAS[:1]))
    clock.advance(10)
    vendor.broken = False
    facts = await enricher.enrich(obs(hashes=SHAS[1:]))  # 9 at once: 1 trial, 8 wait for it
    assert list(facts.values()) == [{"verdict": "clean"}] * 9
    vendor.broken = True
    with pytest.raises(IntegrationError):
        await enricher.enrich(obs(hashes=["e" * 64]))  # open again
    clock.advance(10)
    with pytest.raises(IntegrationError, match="circuit open"):  # the trial fails: all stop
        await enricher.enrich(obs(hashes=[c * 40 for c in "0123456789"]))
    assert len(vendor.calls) == 1 + 9 + 1 + 1


async def test_a_failed_trial_opens_the_breaker_again(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup()
    vendor.broken = True
    rules = policy(breaker_failures=2, cooldown=60, lookups={"retries": 0, "concurrency": 1})
    enricher = wrap(vendor, db, clock, sleeps, rules)
    with pytest.raises(IntegrationError):
        await enricher.enrich(obs(hashes=SHAS[:3]))
    clock.advance(60)
    with pytest.raises(IntegrationError, match="circuit open"):
        await enricher.enrich(obs(hashes=SHAS[3:6]))
    assert len(vendor.calls) == 3  # two failures, then one trial
    clock.advance(59)
    with pytest.raises(IntegrationError, match="circuit open"):
        await enricher.enrich(obs(hashes=SHAS[6:]))
    assert len(vendor.calls) == 3


async def test_cached_answers_are_served_while_the_breaker_is_open(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup({SHA_A: {"verdict": "clean"}})
    enricher = wrap(vendor, db, clock, sleeps, policy(breaker_failures=1))
    await enricher.enrich(obs(hashes=[SHA_A]))
    vendor.broken = True
    with pytest.raises(IntegrationError):
        await enricher.enrich(obs(hashes=[SHA_B]))
    assert await enricher.enrich(obs(hashes=[SHA_A])) == {f"hash:{SHA_A}": {"verdict": "clean"}}
