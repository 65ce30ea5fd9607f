"""``LookupEnricher``: runs one ``Lookup`` (VirusTotal, AbuseIPDB, …) as an ``Enricher`` —
fast, cached, within the provider's quota, and never leaking internal values.

For each observable of a kind the lookup supports, in this order:

1. **allowlist** — a known-good value is not looked up: ``{"allowlisted": True}``;
2. **privacy** — an external provider never sees a user, an internal IP, host, domain or
   URL (``pipeline/lookups/privacy.py``): ``{"withheld": "internal"}``;
3. **cache** — a fresh answer in the database is used as is (positive answers for the
   enricher's ``ttl_seconds``, "not known" for ``negative_ttl_seconds``);
4. **circuit breaker** — while the provider's breaker is open nothing is called;
5. **quota** — past the provider's per-minute or per-day limit, or after a 429, the lookup
   is deferred (``run_deferred`` makes it later) and its facts say ``{"pending": True}``;
6. **call** — other failures are retried ``retries`` times with doubling back-off, then
   reported as that indicator's ``{"error": "…"}``. This is the only retry a lookup gets
   (its HTTP call is one try), so every try passes the breaker and the quota; an error
   whose ``retryable`` is False (the provider refused the request itself, an HTTP 4xx) is
   not retried.

An answer of None (the provider does not know the value) reads ``{"found": False}``.

**Degraded** means the enricher raises IntegrationError, so its status is "error" and the
incident fails closed (asks instead of acting). That happens when the breaker is open for
an indicator that needed a call, and when every call this round failed (the provider is
down, not one odd value). Otherwise the status is "ok": pending and per-indicator errors
are facts, and cached, withheld and allowlisted values keep their facts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pipeline import observe
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.errors import IntegrationError, NotFoundError, RateLimited
from pipeline.lookups.breaker import Breakers
from pipeline.lookups.privacy import Screen
from pipeline.lookups.quota import Quota
from pipeline.lookups.store import NOT_FOUND, PENDING, LookupStore, cache_key
from pipeline.observables import Kind, Observables
from pipeline.plugins import Facts, Lookup
from pipeline.policy import Policy

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
DEFAULT_RETRY_AFTER = timedelta(seconds=60)  # a 429 that did not say how long


@dataclass(frozen=True)
class Outcome:
    """What became of one lookup."""

    status: Literal["answer", "pending", "error", "open"]
    facts: dict[str, Any]
    not_before: datetime | None = None  # pending / open: when to try again
    error: str | None = None


class LookupEnricher:
    """An ``Enricher`` around one ``Lookup``; see the module docstring for the rules."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        db: Database,
        policy: Policy,
        clock: Clock = system_clock,
        sleep: Sleep = asyncio.sleep,
        breakers: Breakers | None = None,
        quota: Quota | None = None,
    ) -> None:
        self.lookup = lookup
        self.name = lookup.name
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.store = LookupStore(db, clock=clock)
        self.screen = Screen(policy.privacy, policy.allowlist)
        self.breaker = (breakers or Breakers(policy.lookups, clock=clock)).get(lookup.provider)
        self.quota = quota or Quota(db, policy.lookups, clock=clock)
        limit = policy.lookups.provider(lookup.provider).concurrency
        self._slots = asyncio.Semaphore(
            limit or policy.lookups.concurrency or policy.worker_concurrency
        )

    def now(self) -> datetime:
        return as_utc(self.clock())

    async def enrich(self, observables: Observables) -> Facts:
        facts: Facts = {}
        wanted: list[tuple[Kind, str]] = []
        for kind, value in observables.items():
            if kind not in self.lookup.kinds:
                continue
            key = Observables.key(kind, value)
            reason = self._screen(kind, value)
            if reason is not None:
                facts[key] = reason
            else:
                wanted.append((kind, value))
        cached = await self.store.get_many(self.name, wanted)
        live: dict[str, tuple[Kind, str]] = {}
        for kind, value in wanted:
            hit = cached.get(cache_key(self.name, kind, value))
            if hit is not None:
                facts[Observables.key(kind, value)] = hit.as_facts()
            else:  # one call for the spellings of one indicator
                live.setdefault(cache_key(self.name, kind, value), (kind, value))
        observe.observer().cache(self.name, hits=len(cached), misses=len(live))
        outcomes = await asyncio.gather(*(self._bounded(k, v) for k, v in live.values()))
        by_key = dict(zip(live, outcomes, strict=True))
        for kind, value in wanted:
            outcome = by_key.get(cache_key(self.name, kind, value))
            if outcome is not None:
                facts[Observables.key(kind, value)] = outcome.facts
        for (kind, value), outcome in zip(live.values(), outcomes, strict=True):
            if outcome.status == "pending":
                assert outcome.not_before is not None
                await self.store.defer(self.name, kind, value, not_before=outcome.not_before)
        self._raise_if_degraded(outcomes)
        return facts

    def _screen(self, kind: Kind, value: str) -> dict[str, Any] | None:
        """Facts in place of a lookup (allowlisted, withheld), or None to look it up."""
        if self.screen.allowlisted(kind, value):
            return {"allowlisted": True}
        if self.lookup.external:
            reason = self.screen.withhold(kind, value)
            if reason is not None:
                return {"withheld": reason}
        return None

    def _raise_if_degraded(self, outcomes: Sequence[Outcome]) -> None:
        if any(o.status == "open" for o in outcomes):
            until = self.breaker.retry_at()
            when = f" until {until:%H:%M:%S} UTC" if until else ""
            raise IntegrationError(
                f"{self.lookup.provider} is failing; lookups paused{when} (circuit open)"
            )
        errors = [o.error for o in outcomes if o.status == "error"]
        if errors and len(errors) == len(outcomes):
            raise IntegrationError(f"every {self.name} lookup failed: {errors[0]}")

    async def _bounded(self, kind: Kind, value: str) -> Outcome:
        async with self._slots:
            return await self.resolve(kind, value, cached=False)

    async def resolve(self, kind: Kind, value: str, *, cached: bool = True) -> Outcome:
        """Look one indicator up: from the cache (when ``cached``), else from the provider
        within quota and breaker. The caller records deferrals; answers are cached here."""
        screened = self._screen(kind, value)
        if screened is not None:  # also guards rows deferred before a policy change
            return Outcome("answer", screened)
        if cached:
            hits = await self.store.get_many(self.name, [(kind, value)])
            if hits:
                return Outcome("answer", next(iter(hits.values())).as_facts())
        settings = self.policy.lookups
        error = "no attempt made"
        for attempt in range(settings.retries + 1):
            if attempt:
                await self.sleep(settings.retry_backoff_seconds * 2 ** (attempt - 1))
            while not self.breaker.allow():
                if not self.breaker.trial_in_flight:
                    return Outcome("open", {"error": "circuit open"}, self.breaker.retry_at())
                await self.breaker.trial_over()  # half-open: see how the trial call went
            wait = await self.quota.take(self.lookup.provider)
            if wait is not None:
                self.breaker.release()
                observe.observer().quota_wait(self.lookup.provider, "quota")
                return Outcome("pending", dict(PENDING), wait)
            try:
                with observe.timed_lookup(self.name):
                    answer = await self.lookup.lookup(kind, value)
            except RateLimited as exc:
                observe.observer().quota_wait(self.lookup.provider, "rate_limited")
                self.breaker.success()  # it answered: up, just busy
                delay = (
                    timedelta(seconds=exc.retry_after)
                    if exc.retry_after is not None
                    else DEFAULT_RETRY_AFTER
                )
                until = self.now() + delay
                await self.quota.block(self.lookup.provider, until=until)
                return Outcome("pending", dict(PENDING), until)
            except NotFoundError:
                answer = None
            except IntegrationError as exc:
                self.breaker.failure()
                error = str(exc)[:500]
                log.warning("%s lookup of a %s failed: %s", self.name, kind, error)
                if getattr(exc, "retryable", True) is False:
                    break  # the provider refused the request itself: asking again cannot help
                continue
            except Exception as exc:  # a plugin's bug counts as a failed call
                self.breaker.failure()
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("%s lookup of a %s crashed", self.name, kind)
                continue
            self.breaker.success()
            await self._remember(kind, value, answer)
            return Outcome("answer", dict(answer) if answer is not None else dict(NOT_FOUND))
        return Outcome("error", {"error": error}, error=error)

    async def _remember(self, kind: Kind, value: str, answer: dict[str, Any] | None) -> None:
        ttl = self.policy.lookups.cache(self.name)
        seconds = ttl.ttl_seconds if answer is not None else ttl.negative_ttl_seconds
        if seconds > 0:
            await self.store.put(self.name, kind, value, answer, ttl=seconds)


def lookup_enrichers(
    lookups: Sequence[Lookup],
    *,
    db: Database,
    policy: Policy,
    clock: Clock = system_clock,
    sleep: Sleep = asyncio.sleep,
) -> list[LookupEnricher]:
    """Wrap each lookup, sharing one breaker per provider and one quota counter."""
    breakers = Breakers(policy.lookups, clock=clock)
    quota = Quota(db, policy.lookups, clock=clock)
    return [
        LookupEnricher(
            lookup, db=db, policy=policy, clock=clock, sleep=sleep, breakers=breakers, quota=quota
        )
        for lookup in lookups
    ]
