"""Where lookups keep state in the database: answers (the cache), lookups waiting for quota
(deferred), and incidents waiting for those answers (waiters).

Rows are addressed by a digest of (enricher, kind, canonical value), so ``ABC…`` and
``abc…`` share one answer and long URLs index well. Every write is an upsert or a
conditional statement, so replicas sharing the database never trip over each other.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.batching import Batcher
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.models import DeferredLookup, LookupCache, LookupWaiter, utcnow
from pipeline.observables import Kind
from pipeline.records import EnrichmentResult

PENDING: dict[str, Any] = {"pending": True}
NOT_FOUND: dict[str, Any] = {"found": False}


def canonical(kind: str, value: str) -> str:
    """The form two spellings of one indicator share (case of hashes and names, IP form)."""
    value = value.strip()
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    if kind in ("hash", "domain", "host", "user"):
        return value.casefold().rstrip(".")
    return value


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def cache_key(enricher: str, kind: str, value: str) -> str:
    return _digest(enricher, kind, canonical(kind, value))


def insert_for(db_or_sqlite: Database | bool, model: Any) -> Any:
    """An INSERT that supports ON CONFLICT on this database."""
    is_sqlite = db_or_sqlite if isinstance(db_or_sqlite, bool) else db_or_sqlite.sqlite
    return (sqlite.insert if is_sqlite else postgresql.insert)(model)


@dataclass(frozen=True)
class Cached:
    found: bool
    facts: dict[str, Any] | None

    def as_facts(self) -> dict[str, Any]:
        return dict(self.facts or {}) if self.found else dict(NOT_FOUND)


def pending_keys(result: EnrichmentResult) -> list[tuple[Kind, str]]:
    """The (kind, value) pairs one enricher's result says are pending."""
    found: list[tuple[Kind, str]] = []
    for fact_key, facts in result.facts.items():
        if isinstance(facts, dict) and facts.get("pending") is True:
            kind, _, value = fact_key.partition(":")
            found.append((cast(Kind, kind), value))
    return found


async def attach_waiters(
    session: AsyncSession,
    *,
    sqlite: bool,
    incident_id: int,
    results: Mapping[str, EnrichmentResult],
    lookups: Iterable[str],
) -> int:
    """Record, in the caller's transaction, that ``incident_id`` waits for every answer the
    lookup enrichers named in ``lookups`` left pending. Returns how many."""
    names = set(lookups)
    count = 0
    for enricher, result in results.items():
        if enricher not in names:
            continue
        for kind, value in pending_keys(result):
            statement = insert_for(sqlite, LookupWaiter).values(
                id=_digest(str(incident_id), enricher, kind, value),
                key=cache_key(enricher, kind, value),
                incident_id=incident_id,
                enricher=enricher,
                kind=kind,
                value=value,
                created_at=utcnow(),
            )
            await session.exec(statement.on_conflict_do_nothing())
            count += 1
    return count


class LookupStore:
    """The cache, deferred lookups and waiters, on one database with one clock.

    Cache reads and writes made concurrently (the lookups of many events in flight) share
    one statement and one transaction (``pipeline/batching.py``): each caller still gets its
    own answer, and a write is committed before ``put`` returns.
    """

    def __init__(self, db: Database, *, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock
        self._reads: Batcher[list[str], dict[str, Cached]] = Batcher(
            self._read, most=500, size=len, name="fido-cache-read"
        )
        self._writes: Batcher[dict[str, Any], None] = Batcher(
            self._write, most=500, name="fido-cache-write"
        )

    def now(self) -> datetime:
        return as_utc(self.clock())

    # -- the cache --------------------------------------------------------------------------

    async def get_many(self, enricher: str, items: Iterable[tuple[str, str]]) -> dict[str, Cached]:
        """Fresh cached answers by cache key for the (kind, value) pairs."""
        keys = list({cache_key(enricher, kind, value) for kind, value in items})
        if not keys:
            return {}
        return await self._reads.submit(keys)

    async def _read(self, wanted: list[list[str]]) -> list[dict[str, Cached]]:
        every = sorted({key for keys in wanted for key in keys})
        async with self.db.session(durable=False) as session:
            rows = await session.exec(
                select(LookupCache).where(
                    col(LookupCache.key).in_(every), col(LookupCache.expires_at) > self.now()
                )
            )
            found = {row.key: Cached(row.found, row.facts) for row in rows.all()}
        return [{key: found[key] for key in keys if key in found} for keys in wanted]

    async def put(
        self, enricher: str, kind: str, value: str, facts: dict[str, Any] | None, *, ttl: float
    ) -> None:
        now = self.now()
        await self._writes.submit(
            {
                "key": cache_key(enricher, kind, value),
                "enricher": enricher,
                "kind": kind,
                "value": canonical(kind, value),
                "found": facts is not None,
                "facts": facts,
                "fetched_at": now,
                "expires_at": now + timedelta(seconds=ttl),
            }
        )

    async def _write(self, rows: list[dict[str, Any]]) -> list[None]:
        latest = {row["key"]: row for row in rows}  # one row may not be upserted twice
        statement = insert_for(self.db, LookupCache).values(list(latest.values()))
        fields = [name for name in rows[0] if name != "key"]
        statement = statement.on_conflict_do_update(
            index_elements=["key"], set_={name: statement.excluded[name] for name in fields}
        )
        async with self.db.session(durable=False) as session:
            await session.exec(statement)
            await session.commit()
        return [None] * len(rows)

    # -- deferred lookups -------------------------------------------------------------------

    async def defer(self, enricher: str, kind: str, value: str, *, not_before: datetime) -> None:
        """Ask for the lookup to be made later; an existing request keeps its own time."""
        statement = insert_for(self.db, DeferredLookup).values(
            key=cache_key(enricher, kind, value),
            enricher=enricher,
            kind=kind,
            value=value,
            not_before=as_utc(not_before),
            attempts=0,
            created_at=self.now(),
        )
        async with self.db.session(durable=False) as session:
            await session.exec(statement.on_conflict_do_nothing())
            await session.commit()

    async def due(self, *, limit: int) -> list[DeferredLookup]:
        async with self.db.session(durable=False) as session:
            rows = await session.exec(
                select(DeferredLookup)
                .where(col(DeferredLookup.not_before) <= self.now())
                .order_by(col(DeferredLookup.not_before), col(DeferredLookup.key))
                .limit(limit)
            )
            return list(rows.all())

    async def reschedule(
        self, key: str, *, not_before: datetime, error: str | None = None, failed: bool = False
    ) -> None:
        values: dict[str, Any] = {"not_before": as_utc(not_before)}
        if failed:
            values["attempts"] = col(DeferredLookup.attempts) + 1
            values["last_error"] = (error or "")[:2000]
        async with self.db.session(durable=False) as session:
            await session.exec(
                update(DeferredLookup).where(col(DeferredLookup.key) == key).values(**values)
            )
            await session.commit()

    async def drop(self, key: str) -> None:
        async with self.db.session(durable=False) as session:
            await session.exec(delete(DeferredLookup).where(col(DeferredLookup.key) == key))
            await session.commit()

    # -- waiters ----------------------------------------------------------------------------

    async def answered(self) -> list[tuple[LookupWaiter, Cached]]:
        """Waiters whose answer is now in the cache."""
        async with self.db.session(durable=False) as session:
            rows = await session.exec(
                select(LookupWaiter, LookupCache)
                .join(LookupCache, col(LookupCache.key) == col(LookupWaiter.key))
                .where(col(LookupCache.expires_at) > self.now())
                .order_by(col(LookupWaiter.incident_id))
            )
            return [(waiter, Cached(cached.found, cached.facts)) for waiter, cached in rows.all()]

    async def waiters(self, key: str) -> list[LookupWaiter]:
        async with self.db.session(durable=False) as session:
            rows = await session.exec(select(LookupWaiter).where(col(LookupWaiter.key) == key))
            return list(rows.all())

    async def orphans(self) -> list[LookupWaiter]:
        """Waiters with neither a deferred lookup nor a fresh answer (an answer that expired
        before they were merged, say): they need their lookup asked for again."""
        pending = select(DeferredLookup.key).where(col(DeferredLookup.key) == LookupWaiter.key)
        fresh = select(LookupCache.key).where(
            col(LookupCache.key) == LookupWaiter.key, col(LookupCache.expires_at) > self.now()
        )
        async with self.db.session(durable=False) as session:
            rows = await session.exec(
                select(LookupWaiter).where(~pending.exists(), ~fresh.exists())
            )
            return list(rows.all())

    async def purge(self) -> None:
        """Forget expired answers (nothing waits on them: waiters match fresh ones only)."""
        async with self.db.session(durable=False) as session:
            await session.exec(delete(LookupCache).where(col(LookupCache.expires_at) <= self.now()))
            await session.commit()
