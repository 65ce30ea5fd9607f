"""Per-provider quotas, counted in the database so every replica shares them.

A provider's policy gives calls per minute and per day (VirusTotal's public API: 4 and
500). Each is a fixed window aligned to the UTC minute or day, as providers count them; a
call takes one unit from every window in one transaction, with a conditional UPDATE
(``used < limit``), so two replicas can never both take the last unit. When a provider
answers 429, ``block`` records until when it asked us to wait, and ``take`` refuses until
then.

A provider without limits (an internal directory, an asset inventory) has nothing to count:
its calls only check the 429 block, which is read from the database at most once every
``BLOCK_RECHECK_SECONDS`` per process — a block set by another replica is seen within that
time (meanwhile at most a few calls meet the vendor's own 429 and block it again); a block
set by this process is seen at once. That keeps a database transaction off every call to
the lookups that are made for every alert.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

from sqlalchemy import delete, update
from sqlmodel import col, select

from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.lookups.store import insert_for
from pipeline.models import LookupQuota
from pipeline.policy import LookupsPolicy

MINUTE, DAY, BLOCKED = "minute", "day", "blocked"
SECONDS = {MINUTE: 60, DAY: 86400}
BLOCK_RECHECK_SECONDS = 1.0  # how stale an unlimited provider's block may be (monotonic)


class Quota:
    def __init__(self, db: Database, policy: LookupsPolicy, *, clock: Clock = system_clock):
        self.db = db
        self.policy = policy
        self.clock = clock
        self._blocks: dict[str, tuple[float, float]] = {}  # provider: (until epoch, read at)
        self._reading: dict[str, asyncio.Task[float]] = {}  # the read in flight, by provider

    async def take(self, provider: str) -> datetime | None:
        """Take one call from ``provider``'s quota: None when granted, else the moment the
        next call may be tried (the next window, or the end of a 429 block)."""
        limits = self.policy.provider(provider)
        now = as_utc(self.clock())
        epoch = now.timestamp()
        windows = [
            (period, int(epoch // SECONDS[period]), limit)
            for period, limit in ((MINUTE, limits.per_minute), (DAY, limits.per_day))
            if limit is not None
        ]
        if not windows:
            until = await self._blocked_until(provider)
            return datetime.fromtimestamp(until, UTC) if until > epoch else None
        async with self.db.session(durable=False) as session:
            blocked = (
                await session.exec(
                    select(LookupQuota.used).where(
                        LookupQuota.provider == provider, LookupQuota.period == BLOCKED
                    )
                )
            ).first()
            if blocked is not None and blocked > epoch:
                return datetime.fromtimestamp(blocked, UTC)
            for period, slot, limit in windows:
                where = (
                    col(LookupQuota.provider) == provider,
                    col(LookupQuota.period) == period,
                    col(LookupQuota.slot) == slot,
                )
                insert = insert_for(self.db, LookupQuota).values(
                    provider=provider, period=period, slot=slot, used=0
                )
                await session.exec(insert.on_conflict_do_nothing())
                taken = await session.exec(
                    update(LookupQuota)
                    .where(*where, col(LookupQuota.used) < limit)
                    .values(used=col(LookupQuota.used) + 1)
                )
                if taken.rowcount != 1:
                    await session.rollback()
                    return datetime.fromtimestamp((slot + 1) * SECONDS[period], UTC)
            await session.commit()
        return None

    async def _blocked_until(self, provider: str) -> float:
        """The epoch until which ``provider`` asked us to wait (0: not blocked), read from
        the database at most every BLOCK_RECHECK_SECONDS, and once for all the lookups that
        want it at the same moment (a burst of events would otherwise read it once each).
        They share that read's answer or its error: a failing database is tried once, not
        once per waiting lookup in turn."""
        known = self._blocks.get(provider)
        if known is not None and time.monotonic() - known[1] < BLOCK_RECHECK_SECONDS:
            return known[0]
        reading = self._reading.get(provider)
        if reading is None or reading.done():
            reading = asyncio.create_task(self._read_block(provider), name="fido-quota-block")
            self._reading[provider] = reading
        return await asyncio.shield(reading)  # one caller giving up never cancels the read

    async def _read_block(self, provider: str) -> float:
        async with self.db.session(durable=False) as session:
            blocked = (
                await session.exec(
                    select(LookupQuota.used).where(
                        LookupQuota.provider == provider, LookupQuota.period == BLOCKED
                    )
                )
            ).first()
        self._blocks[provider] = (float(blocked or 0), time.monotonic())
        return float(blocked or 0)

    async def block(self, provider: str, *, until: datetime) -> None:
        """The provider said "too many requests": refuse calls to it until ``until``."""
        until_epoch = math.ceil(as_utc(until).timestamp())
        insert = insert_for(self.db, LookupQuota).values(
            provider=provider, period=BLOCKED, slot=0, used=until_epoch
        )
        async with self.db.session(durable=False) as session:
            await session.exec(
                insert.on_conflict_do_update(
                    index_elements=["provider", "period", "slot"], set_={"used": until_epoch}
                )
            )
            await session.commit()
        self._blocks[provider] = (float(until_epoch), time.monotonic())

    async def used(self, provider: str, period: str) -> int:
        """Calls taken in the current ``period`` window (for metrics and tests)."""
        slot = int(as_utc(self.clock()).timestamp() // SECONDS[period])
        async with self.db.session(durable=False) as session:
            found = (
                await session.exec(
                    select(LookupQuota.used).where(
                        LookupQuota.provider == provider,
                        LookupQuota.period == period,
                        LookupQuota.slot == slot,
                    )
                )
            ).first()
        return found or 0

    async def purge(self) -> None:
        """Forget windows older than a day (they can no longer limit anything)."""
        today = int(as_utc(self.clock()).timestamp() // SECONDS[DAY])
        oldest_minute = (today - 1) * (SECONDS[DAY] // SECONDS[MINUTE])
        async with self.db.session(durable=False) as session:
            for period, before in ((MINUTE, oldest_minute), (DAY, today - 1)):
                await session.exec(
                    delete(LookupQuota).where(
                        col(LookupQuota.period) == period, col(LookupQuota.slot) < before
                    )
                )
            await session.commit()
