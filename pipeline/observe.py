"""What the pipeline tells the outside about itself, without knowing who listens.

Three things, none of which imports Prometheus, Slack or the bot:

- **An observer** (``Observer``): the timings and counts only a running process sees — how
  long each stage took (``enrich``, ``triage``, ``send``), each lookup call per enricher,
  cache hits and misses, quota waits, outbox deliveries and Slack's 429s. The stages call
  ``observer()`` (a no-op until ``use`` installs one); ``bot/metrics.py`` implements it with
  Prometheus. An observer must never raise and never block.
- **Log context**: the event and incident a task is working on (``bind``), read by the log
  formatter (``bot/logs.py``), so a line says which alert it is about without each call
  naming it. Context variables are per asyncio task: a worker task binds its event once.
- **Readings from the database** for the metrics and ``/readyz`` (``backlog``, ``tallies``,
  ``database_problem``, ``migrations_problem``): every replica reads the same truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

from sqlalchemy import text
from sqlmodel import col, func, select

from pipeline.clock import as_utc
from pipeline.db import MIGRATIONS, Database, first_line
from pipeline.models import Action, Event, EventStatus, OutboxMessage, OutboxStatus

STAGES = ("enrich", "triage", "send")


class Observer(Protocol):
    def stage(self, stage: str, seconds: float) -> None:
        """One pass through ``stage`` (enrich: one event; triage: one batch; send: one
        outbox delivery, whatever its outcome) took ``seconds``."""
        ...

    def lookup(self, enricher: str, seconds: float) -> None:
        """One call to the provider behind ``enricher`` (answered or failed)."""
        ...

    def enricher(self, enricher: str, seconds: float) -> None:
        """One round of an enricher that answers for a whole set of observables (e.g. the
        directory), answered or failed."""
        ...

    def cache(self, enricher: str, *, hits: int, misses: int) -> None:
        """One round of ``enricher``: indicators answered from its cache, and not."""
        ...

    def quota_wait(self, provider: str, reason: str) -> None:
        """A lookup deferred: ``reason`` is ``quota`` (our count) or ``rate_limited`` (429)."""
        ...

    def delivery(self, kind: str, outcome: str) -> None:
        """An outbox row of ``kind`` tried: ``sent``, ``held`` (a known rate limit, not
        tried), ``rate_limited`` (the recipient answered 429) or ``error``."""
        ...

    def rate_limited(self, service: str, method: str) -> None:
        """``service`` (e.g. Slack) answered a call to ``method`` with 429, whoever made
        it: the outbox, App Home, a look-up of a person."""
        ...

    def polled(self, detector: str, *, accepted: int, duplicates: int, dead: int) -> None:
        """A polled source's alerts for ``detector``: stored, already known, and kept as
        dead letters (unreadable)."""
        ...


class _Nobody:
    """The observer until one is installed: records nothing."""

    def stage(self, stage: str, seconds: float) -> None:
        pass

    def lookup(self, enricher: str, seconds: float) -> None:
        pass

    def enricher(self, enricher: str, seconds: float) -> None:
        pass

    def cache(self, enricher: str, *, hits: int, misses: int) -> None:
        pass

    def quota_wait(self, provider: str, reason: str) -> None:
        pass

    def delivery(self, kind: str, outcome: str) -> None:
        pass

    def rate_limited(self, service: str, method: str) -> None:
        pass

    def polled(self, detector: str, *, accepted: int, duplicates: int, dead: int) -> None:
        pass


_observer: Observer = _Nobody()


def observer() -> Observer:
    return _observer


def use(new: Observer | None) -> Observer:
    """Install ``new`` (None: record nothing); return the one it replaces."""
    global _observer
    previous, _observer = _observer, new or _Nobody()
    return previous


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Report how long the block took as one pass through ``stage``, even if it raised."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _observer.stage(stage, time.perf_counter() - started)


@contextmanager
def timed_lookup(enricher: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        _observer.lookup(enricher, time.perf_counter() - started)


def delivered(
    kind: str, *, error: str | None, retry_after: float | None, later: bool = False
) -> None:
    """Report one outbox delivery attempt by what became of it."""
    if error is None:
        outcome = "sent"
    elif later:
        outcome = "held"
    elif retry_after is not None:
        outcome = "rate_limited"
    else:
        outcome = "error"
    _observer.delivery(kind, outcome)


# -- log context ---------------------------------------------------------------------------

event_id: ContextVar[int | None] = ContextVar("fido_event_id", default=None)
incident_id: ContextVar[int | None] = ContextVar("fido_incident_id", default=None)


def bind(*, event: int | None = None, incident: int | None = None) -> None:
    """Name the event and/or incident the current task works on, for its log lines. Call
    it at the top of a task (a worker's event, an outbox delivery): it lasts as long as
    the task."""
    if event is not None:
        event_id.set(event)
    if incident is not None:
        incident_id.set(incident)


# -- readings from the database -------------------------------------------------------------


@dataclass
class Backlog:
    pending: int = 0  # events waiting to be claimed
    oldest_pending: timedelta | None = None  # how long the oldest of them has waited
    outbox_due: int = 0  # outbox rows not sent yet (pending)
    oldest_outbox: timedelta | None = None


@dataclass
class Tallies:
    alerts: dict[str, int] = field(default_factory=dict)  # stored, by detector
    actions: dict[tuple[str, str], int] = field(default_factory=dict)  # (responder, status)


async def backlog(db: Database, *, now: datetime) -> Backlog:
    """How much waits, and for how long: the queue and the outbox."""
    now = as_utc(now)
    result = Backlog()
    async with db.session(durable=False) as session:
        count, oldest = (
            await session.exec(
                select(func.count(), func.min(Event.received_at)).where(
                    Event.status == EventStatus.pending.value
                )
            )
        ).one()
        result.pending = int(count)
        if oldest is not None:
            result.oldest_pending = max(now - as_utc(oldest), timedelta(0))
        count, oldest = (
            await session.exec(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status == OutboxStatus.pending.value
                )
            )
        ).one()
        result.outbox_due = int(count)
        if oldest is not None:
            result.oldest_outbox = max(now - as_utc(oldest), timedelta(0))
    return result


async def tallies(db: Database) -> Tallies:
    """Alerts stored by detector and actions by responder and status, all time."""
    result = Tallies()
    async with db.session(durable=False) as session:
        rows = await session.exec(
            select(Event.detector, func.count()).group_by(col(Event.detector))
        )
        result.alerts = {str(detector): int(n) for detector, n in rows.all()}
        pairs = await session.exec(
            select(Action.responder, Action.status, func.count()).group_by(
                col(Action.responder), col(Action.status)
            )
        )
        result.actions = {(str(r), str(s)): int(n) for r, s, n in pairs.all()}
    return result


async def database_problem(db: Database) -> str | None:
    """None when the database answers, else why not (one line)."""
    try:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unreachable: {first_line(exc)}"
    return None


@lru_cache(maxsize=1)
def _heads() -> frozenset[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


async def migrations_problem(db: Database) -> str | None:
    """None when the schema is at the newest migration this code knows, else why not."""
    from alembic.runtime.migration import MigrationContext

    try:
        async with db.engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
    except Exception as exc:
        return f"revision unknown: {first_line(exc)}"
    heads = _heads()
    if frozenset(current) != heads:
        have = ", ".join(sorted(current)) or "(empty)"
        return f"at revision {have}, expected {', '.join(sorted(heads))} (run fido db upgrade)"
    return None


Check = Callable[[], Awaitable[str | None]]
CHECK_TIMEOUT = 5.0  # seconds a readiness check may take before it counts as failing


async def readiness(db: Database, more: Mapping[str, Check] | None = None) -> dict[str, str | None]:
    """Each readiness check by name — ``database``, ``migrations``, then ``more`` (what the
    running service adds: Slack, the scheduler) — with None when it passes, else why not."""
    checks: dict[str, Check] = {
        "database": lambda: database_problem(db),
        "migrations": lambda: migrations_problem(db),
        **(more or {}),
    }
    results: dict[str, str | None] = {}
    for name, check in checks.items():
        try:
            results[name] = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            results[name] = f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:  # a failing check is a failing check, never a 500
            results[name] = f"{type(exc).__name__}: {first_line(exc)}"
    return results


def running(what: str, is_running: Callable[[], bool]) -> Check:
    """A readiness check that passes while ``is_running()`` (e.g. the scheduler)."""

    async def check() -> str | None:
        return None if is_running() else f"{what} is not running"

    return check


def connected(what: str, is_connected: Callable[[], Awaitable[bool]]) -> Check:
    """A readiness check that passes while ``is_connected()`` (e.g. Socket Mode)."""

    async def check() -> str | None:
        return None if await is_connected() else f"{what} is not connected"

    return check
