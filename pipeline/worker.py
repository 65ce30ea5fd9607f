"""The worker pool: claims events and hands each one on; nothing else.

``size`` workers run concurrently in one process. Each claims an event (one claim at a time
per process: SQLite has one writer, and on PostgreSQL ``SKIP LOCKED`` keeps replicas apart),
then runs the event's slow stage (``prepare``: enrichment, I/O-bound) concurrently with the
others, then its short transactional stage (``finish``: correlate → score → decide →
complete) one at a time per process. An event waits before ``finish`` for every earlier
event still in flight that shares a correlation key with it, so one incident's events are
triaged in the order they were claimed, without one slow lookup holding up unrelated ones.

Leases of the events in flight are renewed while they are worked on. One bad event never
stops the others: its error is logged and kept on the row, it is retried a few times, then
left ``failed`` for an engineer to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline import queue
from pipeline.clock import idle_wait
from pipeline.db import Database
from pipeline.errors import FidoError
from pipeline.models import Event

log = logging.getLogger(__name__)


class Stages(Protocol):
    """What the worker hands each claimed event to (the engine)."""

    def keys(self, event: Event) -> set[str]:
        """The correlation keys that order this event against others."""
        ...

    async def prepare(self, event: Event) -> Any:
        """The slow part, run concurrently (enrichment)."""
        ...

    async def finish(self, prepared: Any) -> int:
        """The transactional part, one at a time: triage and complete the event; returns
        the incident it joined."""
        ...


@dataclass(eq=False)
class _Ticket:
    event: Event
    keys: set[str]
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    def __init__(self, *, db: Database, stages: Stages, size: int = 1, replica: str = "") -> None:
        self.db = db
        self.stages = stages
        self.size = max(1, size)
        self.replica = replica
        self.wakeup = asyncio.Event()
        self._claiming = asyncio.Lock()
        self._finishing = asyncio.Lock()
        self._in_flight: list[_Ticket] = []

    async def run_once(self) -> bool:
        """Claim and process one event; False when the queue is empty."""
        async with self._claiming:
            event = await queue.claim(self.db, replica=self.replica)
            if event is None:
                return False
            ticket = _Ticket(event, self._keys(event))
            self._in_flight.append(ticket)
        assert event.id is not None
        try:
            prepared = await self.stages.prepare(event)
            for earlier in self._in_flight[: self._in_flight.index(ticket)]:
                if earlier.keys & ticket.keys:
                    await earlier.done.wait()
            async with self._finishing:
                await self.stages.finish(prepared)
        except Exception as exc:  # isolate the failure to this event, keep it
            if not isinstance(exc, FidoError):
                log.exception("event %s failed", event.id)
            status = await queue.fail(self.db, event_id=event.id, error=f"{exc}")
            log.warning("event %s failed (%s): %s", event.id, status, exc)
        finally:
            self._in_flight.remove(ticket)
            ticket.done.set()
        return True

    def _keys(self, event: Event) -> set[str]:
        try:
            return self.stages.keys(event)
        except Exception:  # unreadable observables: order it against everything
            return {"*"}

    async def drain(self) -> int:
        """Process until the queue is empty, ``size`` at a time; return how many."""

        async def one() -> int:
            handled = 0
            while await self.run_once():
                handled += 1
            return handled

        return sum(await asyncio.gather(*(one() for _ in range(self.size))))

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Work until ``stop`` is set, ``size`` workers and a lease keeper."""
        keeper = asyncio.create_task(self._keep_leases(stop))
        try:
            await asyncio.gather(*(self._loop(stop, idle) for _ in range(self.size)))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _loop(self, stop: asyncio.Event, idle: float) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # e.g. the database is briefly unreachable
                log.exception("worker loop error; retrying")
                busy = False
            if not busy:
                await idle_wait(stop, self.wakeup, idle)
            else:
                self.wakeup.set()  # there may be more: let an idle sibling look too

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(queue.RENEW_EVERY)
            try:
                await queue.renew(self.db, [t.event for t in self._in_flight])
            except Exception:
                log.exception("could not renew the leases of events in flight")
