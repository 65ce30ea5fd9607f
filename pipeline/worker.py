"""The worker pool: claims events and hands each one on; nothing else.

Up to ``size`` events are in flight at once in one process. One claimer fills the free
slots, several at a time, in one statement (SQLite has one writer, and on PostgreSQL
``SKIP LOCKED`` keeps replicas apart). Each event then runs its slow stage (``prepare``:
enrichment, I/O-bound) concurrently with the others, then its short transactional stage
(``finish``: correlate → score → decide → complete), one batch at a time per process: the
events that are ready when the previous batch ends are finished together, in claim order,
in one transaction (``finish_many``), so a storm about one host costs one incident update
per batch rather than one per alert. An event is ready once it is prepared and every
earlier event still in flight that shares a correlation key with it is ready or done, so
one incident's events are triaged in the order they were claimed, without one slow lookup
holding up unrelated ones.

Leases of the events in flight are renewed while they are worked on. One bad event never
stops the others: its error is logged and kept on the row, it is retried a few times, then
left ``failed`` for an engineer to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline import observe, queue
from pipeline.clock import wait_any
from pipeline.db import Database
from pipeline.errors import FidoError
from pipeline.models import Event, EventStatus

log = logging.getLogger(__name__)

FINISH_BATCH = 16  # events triaged in one transaction at most
BUSY_FINISH_BATCH = 2  # … while webhook deliveries are coming in (each batch holds the loop)
BUSY_CLAIM = 4  # events claimed per Worker.defer seconds while deliveries are coming in


class Stages(Protocol):
    """What the worker hands each claimed event to (the engine)."""

    def keys(self, event: Event) -> set[str]:
        """The correlation keys that order this event against others."""
        ...

    async def prepare(self, event: Event) -> Any:
        """The slow part, run concurrently (enrichment)."""
        ...

    async def finish_many(self, prepared: Sequence[Any]) -> list[int | Exception]:
        """The transactional part, one batch at a time: triage and complete the events (in
        the order given); for each, the incident it joined or the exception that failed it
        alone (one failing event never fails the others of its batch)."""
        ...


class Door:
    """Whether webhook deliveries are pouring in: ``BUSY_AT`` or more in flight or ended
    within the last ``WINDOW`` seconds. The worker yields to them (``Worker.run``): it takes
    a trickle of events and triages in small batches, so a flood of alerts is accepted at
    full speed — every 202 still after its commit — and triaged in full as soon as it ebbs,
    instead of every delivery waiting behind triage for the same CPU. An alert now and
    then never makes the door busy."""

    WINDOW = 0.05
    BUSY_AT = 4

    def __init__(self) -> None:
        self.in_flight = 0
        self._ended: deque[float] = deque(maxlen=self.BUSY_AT)  # monotonic times

    def __enter__(self) -> Door:
        self.in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._ended.append(time.monotonic())

    def busy(self) -> bool:
        if self.in_flight >= self.BUSY_AT:
            return True
        since = time.monotonic() - self.WINDOW
        return self.in_flight + sum(1 for t in self._ended if t > since) >= self.BUSY_AT


@dataclass(eq=False)
class _Ticket:
    event: Event
    keys: set[str]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # prepared, waiting to finish
    prepared: Any = None
    result: int | Exception | None = None


class Worker:
    def __init__(self, *, db: Database, stages: Stages, size: int = 1, replica: str = "") -> None:
        self.db = db
        self.stages = stages
        self.size = max(1, size)
        self.replica = replica
        self.wakeup = asyncio.Event()  # set when new events may be waiting
        self._finishing = asyncio.Lock()
        self._ready: list[_Ticket] = []  # prepared, in order, for the next batch
        self._in_flight: list[_Ticket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()
        self.door = Door()
        self.defer = 1.0  # seconds the worker waits at most for the door to be idle

    async def drain(self) -> int:
        """Process until the queue is empty, ``size`` at a time; return how many."""
        handled = 0
        while True:
            self._freed.clear()  # from now on, a set flag means a slot freed after this claim
            asked, started = await self._claim()
            handled += started
            if not started and not self._tasks:
                return handled
            while self._tasks and (started < asked or self._free() < self._batch()):
                self._freed.clear()
                await self._until(self._freed)
                started = asked = 0

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Work until ``stop`` is set: claim into free slots, keep leases; on stop, let the
        events in flight finish."""
        keeper = asyncio.create_task(self._keep_leases(stop))
        try:
            while not stop.is_set():
                self.wakeup.clear()  # from now on, set means events newer than this claim
                self._freed.clear()
                await self._yield_to_door(stop)
                try:  # a trickle while deliveries keep coming in, else every free slot
                    asked, started = await self._claim(BUSY_CLAIM if self.door.busy() else None)
                except Exception:  # e.g. the database is briefly unreachable
                    log.exception("worker: could not claim events; retrying")
                    await self._until(stop, timeout=idle)
                    continue
                if started < asked:  # the queue is empty: a free slot changes nothing
                    await self._until(stop, self.wakeup, timeout=idle)
                # busy: claim again once a few slots are free, not for every freed slot
                while self._free() < self._batch() and not stop.is_set():
                    self._freed.clear()
                    await self._until(stop, self._freed, timeout=idle)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _yield_to_door(self, stop: asyncio.Event) -> None:
        """Wait while webhook deliveries are in flight, ``defer`` seconds at most."""
        if not self.door.busy():
            return
        deadline = asyncio.get_running_loop().time() + self.defer
        while self.door.busy() and not stop.is_set():
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(0.005)

    def _free(self) -> int:
        return self.size - len(self._in_flight)

    def _batch(self) -> int:
        """Claim once this many slots are free (while others are busy), so that one claim
        starts several events instead of one claim per event."""
        return max(1, self.size // 4)

    async def _until(self, *events: asyncio.Event, timeout: float = 1.0) -> None:
        """Wait until one of ``events`` is set, at most ``timeout`` seconds (work of another
        replica, or a lost wake-up, is found by the next claim anyway)."""
        await wait_any(*events, timeout=timeout)

    async def _claim(self, most: int | None = None) -> tuple[int, int]:
        """Claim events into the free slots (``most`` at most) and start them: (slots asked
        for, started)."""
        free = self._free() if most is None else min(most, self._free())
        if free <= 0:
            return 0, 0
        events = await queue.claim_many(self.db, free, replica=self.replica)
        for event in events:
            ticket = _Ticket(event, self._keys(event))
            self._in_flight.append(ticket)  # in claim order: finish() keeps that order
            task = asyncio.create_task(self._process(ticket), name=f"fido-event-{event.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return free, len(events)

    async def _process(self, ticket: _Ticket) -> None:
        event = ticket.event
        assert event.id is not None
        observe.bind(event=event.id)  # this task's log lines name its event
        try:
            with observe.timed("enrich"):
                ticket.prepared = await self.stages.prepare(event)
            for earlier in self._in_flight[: self._in_flight.index(ticket)]:
                if earlier.keys & ticket.keys:
                    await wait_any(earlier.ready, earlier.done)
            self._ready.append(ticket)
            ticket.ready.set()
            async with self._finishing:  # whoever holds it finishes the ready events
                while ticket.result is None:
                    await self._finish_ready()
                    if ticket.result is None and self.door.busy():
                        await asyncio.sleep(0)  # let the door answer between batches
            if isinstance(ticket.result, Exception):
                raise ticket.result
        except Exception as exc:  # isolate the failure to this event, keep it
            if not isinstance(exc, FidoError):
                log.exception("event %s failed", event.id)
            try:
                status = await queue.fail(self.db, event_id=event.id, error=f"{exc}")
            except Exception:  # its lease runs out and it is claimed again
                log.exception("event %s: could not record its failure", event.id)
            else:
                log.warning("event %s failed (%s): %s", event.id, status, exc)
                if status == EventStatus.pending.value:
                    self.wakeup.set()  # back in the queue: claim it again
        finally:
            self._in_flight.remove(ticket)
            ticket.done.set()
            self._freed.set()

    async def _finish_ready(self) -> None:
        """Finish the first FINISH_BATCH ready events as one batch, in claim order."""
        order = {id(t): i for i, t in enumerate(self._in_flight)}
        ready = sorted(self._ready, key=lambda t: order[id(t)])
        # a batch runs without a pause (SQLite statements run inline): bound it, so that a
        # webhook's commit never waits long behind it
        most = BUSY_FINISH_BATCH if self.door.busy() else FINISH_BATCH
        batch, self._ready = ready[:most], ready[most:]
        try:
            with observe.timed("triage"):
                results = await self.stages.finish_many([t.prepared for t in batch])
        except Exception as exc:  # the stage could not even say which event failed
            results = [exc] * len(batch)
        for ticket, result in zip(batch, results, strict=True):
            ticket.result = result

    def _keys(self, event: Event) -> set[str]:
        try:
            return self.stages.keys(event)
        except Exception:  # unreadable observables: order it against everything
            return {"*"}

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(queue.RENEW_EVERY)
            try:
                await queue.renew(self.db, [t.event for t in self._in_flight])
            except Exception:
                log.exception("could not renew the leases of events in flight")
