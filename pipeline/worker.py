"""The worker: claims events from the queue and hands each one on; nothing else.

One bad event never stops the others: its error is logged and kept on the row, it is
retried a few times, then left ``failed`` for an engineer to look at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pipeline import queue
from pipeline.db import Database
from pipeline.errors import FidoError
from pipeline.models import Event

log = logging.getLogger(__name__)

# What the worker hands each claimed event to: it processes the event and marks it done in
# the same transaction; returns the incident id it joined.
Handler = Callable[[Event], Awaitable[int]]


class Worker:
    def __init__(self, *, db: Database, handle: Handler) -> None:
        self.db = db
        self.handle = handle
        self.wakeup = asyncio.Event()

    async def run_once(self) -> bool:
        """Process one claimable event; False when the queue is empty."""
        event = await queue.claim(self.db)
        if event is None:
            return False
        assert event.id is not None
        try:
            await self.handle(event)  # completes the event in its own transaction
        except Exception as exc:  # isolate the failure to this event, keep it
            if not isinstance(exc, FidoError):
                log.exception("event %s failed", event.id)
            status = await queue.fail(self.db, event_id=event.id, error=f"{exc}")
            log.warning("event %s failed (%s): %s", event.id, status, exc)
        return True

    async def drain(self) -> int:
        """Process until the queue is empty; return how many events were handled."""
        handled = 0
        while await self.run_once():
            handled += 1
        return handled

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Work until ``stop`` is set; sleep ``idle`` seconds (or until woken) when empty."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # e.g. the database is briefly unreachable
                log.exception("worker loop error; retrying")
                busy = False
            if not busy:
                self.wakeup.clear()
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self.wakeup.wait()),
                ]
                await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
