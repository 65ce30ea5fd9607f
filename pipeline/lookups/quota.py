"""Per-provider quotas, counted in the database so every replica shares them.

A provider's policy gives calls per minute and per day (VirusTotal's public API: 4 and
500). Each is a fixed window aligned to the UTC minute or day, as providers count them; a
call takes one unit from every window in one transaction, with a conditional UPDATE
(``used < limit``), so two replicas can never both take the last unit. When a provider
answers 429, ``block`` records until when it asked us to wait, and ``take`` refuses until
then.
"""

from __future__ import annotations

import math
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


class Quota:
    def __init__(self, db: Database, policy: LookupsPolicy, *, clock: Clock = system_clock):
        self.db = db
        self.policy = policy
        self.clock = clock

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
