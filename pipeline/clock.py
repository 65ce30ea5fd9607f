"""A clock that can be handed in, so cache TTLs, quotas, breakers and deferrals can be
tested by moving time instead of waiting for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive value (SQLite gives those back) is taken to be UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


async def idle_wait(stop: asyncio.Event, wakeup: asyncio.Event, seconds: float) -> None:
    """A loop with nothing to do sleeps ``seconds``, or until woken or stopped."""
    wakeup.clear()
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
