"""Building lookup enrichers for tests."""

from __future__ import annotations

from typing import Any

from pipeline.db import Database
from pipeline.lookups.enricher import LookupEnricher, lookup_enrichers
from pipeline.observables import Observables
from pipeline.plugins import Lookup
from pipeline.policy import LookupCachePolicy, LookupsPolicy, Policy, ProviderPolicy
from tests.pipeline.lookups.fakes import Clock, Sleeps

SHA_A = "a" * 64
SHA_B = "b" * 64


def policy(
    *,
    per_minute: int | None = None,
    per_day: int | None = None,
    breaker_failures: int = 5,
    cooldown: float = 60,
    ttl: float = 3600,
    negative_ttl: float = 600,
    **more: Any,
) -> Policy:
    lookups = LookupsPolicy(
        enrichers={
            "test_reputation": LookupCachePolicy(ttl_seconds=ttl, negative_ttl_seconds=negative_ttl)
        },
        providers={
            "test_vt": ProviderPolicy(
                per_minute=per_minute,
                per_day=per_day,
                breaker_failures=breaker_failures,
                breaker_cooldown_seconds=cooldown,
            )
        },
        **more.pop("lookups", {}),
    )
    return Policy(lookups=lookups, **more)


def wrap(
    lookup: Lookup, db: Database, clock: Clock, sleeps: Sleeps, rules: Policy | None = None
) -> LookupEnricher:
    [enricher] = lookup_enrichers(
        [lookup], db=db, policy=rules or policy(), clock=clock, sleep=sleeps
    )
    return enricher


def obs(**values: Any) -> Observables:
    return Observables(**values)
