"""Deferred lookups complete later: ``run_deferred`` is the scheduler's job for them.

Each run (on one replica at a time, under the ``deferred-lookups`` advisory lock):

1. takes the due deferred lookups, oldest first, and makes them within quota — a provider
   out of quota or with its breaker open is left for a later run after its first refusal;
2. hands each answer to the incidents waiting for it: their facts for that indicator go
   from ``{"pending": True}`` to the answer, then ``Engine.refresh`` re-runs triage
   (score and decision) and re-publishes the card;
3. also hands cached answers to waiters that arrived after their lookup was made, and asks
   again for the lookups of waiters whose answer expired before they got it;
4. forgets expired cache entries and old quota windows.

A lookup that keeps failing is retried with growing delays, and after
``lookups.deferred_max_attempts`` its waiters get ``{"error": …}`` instead of waiting
forever. One bad row or incident is logged and never stops the others.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlmodel import col, select

from pipeline import locks
from pipeline.db import Database
from pipeline.lookups.enricher import LookupEnricher, Outcome
from pipeline.lookups.store import LookupStore
from pipeline.models import DeferredLookup, Incident, LookupWaiter
from pipeline.observables import Kind, Observables
from pipeline.records import EnrichmentResult, dump_enrichment, enrichment_of

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

JOB = "deferred-lookups"
MAX_RETRY_DELAY = timedelta(hours=1)


async def run_deferred(engine: Engine, *, limit: int = 50) -> int:
    """Make up to ``limit`` due deferred lookups and deliver what is answered; return how
    many deferred lookups were answered."""
    enrichers = {e.name: e for e in engine.enrichers if isinstance(e, LookupEnricher)}
    if not enrichers:
        return 0
    first = next(iter(enrichers.values()))
    store = first.store
    async with locks.singleton(engine.db, JOB) as held:
        if not held:
            return 0
        waiting: dict[int, list[tuple[LookupWaiter, dict[str, Any]]]] = defaultdict(list)
        answered = await _make_due(store, enrichers, waiting, limit=limit)
        for waiter, cached in await store.answered():
            waiting[waiter.incident_id].append((waiter, cached.as_facts()))
        for incident_id, updates in waiting.items():
            try:
                if await _merge(engine.db, incident_id, updates):
                    await engine.refresh(incident_id)
            except Exception:  # one incident must not stop the others
                log.exception("could not deliver deferred lookups to incident %s", incident_id)
        for orphan in await store.orphans():
            await store.defer(orphan.enricher, orphan.kind, orphan.value, not_before=store.now())
        await store.purge()
        await first.quota.purge()
    return answered


async def _make_due(
    store: LookupStore,
    enrichers: dict[str, LookupEnricher],
    waiting: dict[int, list[tuple[LookupWaiter, dict[str, Any]]]],
    *,
    limit: int,
) -> int:
    """Make the due lookups; collect the facts for their waiters into ``waiting``."""
    answered = 0
    refused: set[str] = set()  # providers out of quota or open this run
    for row in await store.due(limit=limit):
        enricher = enrichers.get(row.enricher)
        if enricher is None:
            await _settle(store, row, {"error": f"{row.enricher} is no longer enabled"}, waiting)
            continue
        provider = enricher.lookup.provider
        if provider in refused:
            continue
        kind: Kind = row.kind  # type: ignore[assignment]
        try:
            outcome = await enricher.resolve(kind, row.value)
        except Exception as exc:  # e.g. the database blinked: try again next run
            log.exception("deferred %s lookup failed", row.enricher)
            outcome = Outcome("error", {}, error=f"{type(exc).__name__}: {exc}")
        if outcome.status == "answer":
            answered += 1
            await _settle(store, row, outcome.facts, waiting)
        elif outcome.status in ("pending", "open"):
            refused.add(provider)
            later = outcome.not_before or store.now() + timedelta(minutes=1)
            await store.reschedule(row.key, not_before=later)
        elif row.attempts + 1 >= enricher.policy.lookups.deferred_max_attempts:
            await _settle(store, row, {"error": outcome.error or "lookup failed"}, waiting)
        else:
            delay = min(timedelta(minutes=1) * 2**row.attempts, MAX_RETRY_DELAY)
            await store.reschedule(
                row.key, not_before=store.now() + delay, error=outcome.error, failed=True
            )
    return answered


async def _settle(
    store: LookupStore,
    row: DeferredLookup,
    facts: dict[str, Any],
    waiting: dict[int, list[tuple[LookupWaiter, dict[str, Any]]]],
) -> None:
    """The lookup is over: queue ``facts`` for its waiters and drop the row."""
    for waiter in await store.waiters(row.key):
        waiting[waiter.incident_id].append((waiter, facts))
    await store.drop(row.key)


async def _merge(
    db: Database, incident_id: int, updates: Sequence[tuple[LookupWaiter, dict[str, Any]]]
) -> bool:
    """Put the answers into the incident's enrichment where they are still pending, and
    forget the waiters. False when the incident is gone."""
    async with db.session() as session:
        query = select(Incident).where(col(Incident.id) == incident_id)
        if not db.sqlite:
            query = query.with_for_update()  # not interleaved with a worker's update
        incident = (await session.exec(query)).first()
        enrichment = enrichment_of(incident.enrichment if incident else {})
        for waiter, facts in updates:
            result = enrichment.get(waiter.enricher) or EnrichmentResult()
            known = dict(result.facts)
            fact_key = Observables.key(waiter.kind, waiter.value)  # type: ignore[arg-type]
            if known.get(fact_key, {}).get("pending", True) is True:
                known[fact_key] = facts
            enrichment[waiter.enricher] = result.model_copy(update={"facts": known})
        ids = [waiter.id for waiter, _ in updates]
        await session.exec(delete(LookupWaiter).where(col(LookupWaiter.id).in_(ids)))
        if incident is not None:
            incident.enrichment = dump_enrichment(enrichment)
            session.add(incident)
        await session.commit()
    return incident is not None
