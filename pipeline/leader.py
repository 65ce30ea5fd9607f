"""Which replica runs the singleton jobs, and which replicas are still alive.

Any number of ``fido serve`` processes may share one PostgreSQL database. Each keeps one
connection of its own open for as long as it runs, and holds on it two kinds of
session advisory lock, which PostgreSQL releases the moment the process dies or its
connection is lost:

- **its name** (``replica:NAME``, ``FIDO_REPLICA``): taken at start-up; a second live
  process with the same name is refused (its start-up releases and its claims would be
  confused with the first's);
- **the leader lock**, which one replica holds at a time: the scheduler's singleton jobs
  (expiring containments, deferred lookups, releasing the claims of replicas that are gone,
  and any job wrapped by ``only_leader``) run only there. Every replica tries to take it
  every ``CHECK_EVERY`` seconds, so when the leader dies another takes over within
  seconds.

The leader also settles what a replica which is gone left half-done: a name whose lock
can be taken belongs to no live process, so its ``processing`` events are put back at once
instead of after their lease (``pipeline/queue.py``), and the actions it was running are
marked ``interrupted`` (``interrupt_actions``): a responder stopped mid-call may or may not
have acted, so Fido never runs it again on its own; the card says so and who may check.
The leader holds that name's lock while it does, so a replica restarting under it waits
for the release to finish; a replica restarting under its own name settles its own.

A leader that loses its connection stops leading at its next check; until then two
replicas may both run a job, which the jobs tolerate (their updates are conditional).

SQLite is one process's database: there this process is always the leader.

Containments a responder keeps in force in its own process (the OpenVPN session guard)
follow the database on the leader (:class:`HeldContainments`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import col, select

from pipeline import act, audit, outbox, queue
from pipeline.act import SYSTEM_ACTOR
from pipeline.db import Database, first_line
from pipeline.errors import ConfigError
from pipeline.locks import lock_key
from pipeline.models import Action, ActionStatus, Event, EventStatus, utcnow
from pipeline.plugins import HoldsContainment

log = logging.getLogger(__name__)

CHECK_EVERY = 2.0  # seconds between a replica's checks of its connection and the leader lock
CHECK_TIMEOUT = 5.0  # seconds a check may take before the connection is given up
NAME_ATTEMPTS = 20  # tries at start-up for this replica's name (0.5 s apart)
LEADER = "fido:leader"
HOLD_EVERY = 2.0  # seconds between the leader's readings of the containments it holds

P = ParamSpec("P")


class Leadership:
    """This replica's standing among the replicas sharing its database."""

    def __init__(self, db: Database, *, replica: str) -> None:
        self.db = db
        self.replica = replica[:128]
        self.leader = db.sqlite
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._scope = ""  # the schema: deployments in different schemas lead apart

    def _key(self, name: str) -> int:
        return lock_key(f"{self._scope}:{name}")

    def _replica_key(self, replica: str) -> int:
        return self._key(f"fido:replica:{replica}")

    async def start(self) -> None:
        """Take this replica's name, then try for the leader lock once. A ConfigError when
        another live replica already has the name."""
        if self.db.sqlite:
            return
        self._engine = create_async_engine(self.db.engine.url, poolclass=NullPool)
        await self._connect()
        assert self._connection is not None
        self._scope = str(
            (await self._connection.execute(text("SELECT current_schema()"))).scalar()
        )
        for _ in range(NAME_ATTEMPTS):
            if await self._try(self._replica_key(self.replica)):
                break
            await asyncio.sleep(0.5)  # a leader may be releasing a dead namesake's claims
        else:
            await self.stop()
            raise ConfigError(
                f"another running replica is named {self.replica!r}: give each its own FIDO_REPLICA"
            )
        await self.campaign()

    async def _connect(self) -> None:
        assert self._engine is not None
        self._connection = await self._engine.connect()
        # autocommit: a session lock outlives transactions, and no statement here leaves
        # one open on the server
        await self._connection.execution_options(isolation_level="AUTOCOMMIT")

    async def _try(self, key: int) -> bool:
        assert self._connection is not None
        async with self._lock:
            result = await self._connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            )
            return bool(result.scalar())

    async def _unlock(self, key: int) -> None:
        assert self._connection is not None
        async with self._lock:
            await self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})

    async def campaign(self) -> bool:
        """One check (the scheduler runs it every CHECK_EVERY seconds): is the connection
        alive, and, when not leading, can the leader lock be taken? A lost connection ends
        leadership; the next check reconnects and takes this replica's name again."""
        if self.db.sqlite:
            return True
        try:
            await asyncio.wait_for(self._check(), CHECK_TIMEOUT)
        except Exception as exc:
            if self.leader:
                log.warning("leadership lost: %s", first_line(exc))
            self.leader = False
            await self._drop()
        return self.leader

    async def _check(self) -> None:
        if self._connection is None:
            await self._connect()
            if not await self._try(self._replica_key(self.replica)):
                raise ConfigError(f"replica name {self.replica!r} is held elsewhere")
        if self.leader:
            async with self._lock:
                assert self._connection is not None
                await self._connection.execute(text("SELECT 1"))
        elif await self._try(self._key(LEADER)):
            self.leader = True
            log.info("this replica (%s) now runs the singleton jobs", self.replica)

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
            except Exception:  # already gone
                pass

    async def stop(self) -> None:
        """Give up leadership and the name (closing the connection releases both)."""
        self.leader = self.db.sqlite
        if self._connection is not None:
            try:
                await self._connection.close()
            except Exception:
                pass
            self._connection = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    def only_leader(self, job: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        """``job`` as a scheduler job that runs on the leader only."""

        async def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            if not self.leader:
                return None
            return await job(*args, **kwargs)

        run.__name__ = getattr(job, "__name__", "job")
        return run

    async def reclaim(self) -> int:
        """On the leader: put back the events claimed by replicas that are gone and mark
        the actions they were running interrupted. Returns how many of both."""
        if self.db.sqlite or not self.leader or self._connection is None:
            return 0
        try:
            return await self._reclaim()
        except Exception as exc:  # tried again at the next run
            log.warning(
                "could not release the claims of replicas that are gone: %s", first_line(exc)
            )
            return 0

    async def _reclaim(self) -> int:
        async with self.db.session() as session:
            claiming = (
                await session.exec(
                    select(Event.claimed_by)
                    .where(
                        col(Event.status) == EventStatus.processing.value,
                        col(Event.claimed_by).is_not(None),
                        col(Event.claimed_by) != self.replica,
                    )
                    .distinct()
                )
            ).all()
            acting = (
                await session.exec(
                    select(Action.replica)
                    .where(
                        col(Action.status) == ActionStatus.running.value,
                        col(Action.replica).is_not(None),
                        col(Action.replica) != self.replica,
                    )
                    .distinct()
                )
            ).all()
        released = 0
        for name in sorted({n for n in (*claiming, *acting) if n is not None}):
            if not await self._try(self._replica_key(name)):
                continue  # alive
            try:
                events = await queue.release(self.db, replica=name)
                actions = await interrupt_actions(self.db, replica=name)
            finally:
                await self._unlock(self._replica_key(name))
            if events:
                log.info(
                    "released %d events left in flight by replica %s, which is gone", events, name
                )
            released += events + actions
        return released


INTERRUPTED = (
    "interrupted: replica {replica} stopped while running this, so whether it took effect is "
    "unknown. Fido will not run it again: check {target}, and if it is still needed run "
    "`fido respond {responder} {target}`"
)


UNDO_INTERRUPTED = (
    "undo interrupted: replica {replica} stopped while undoing this, so whether {target} "
    "is released is unknown; press Undo again"
)


async def interrupt_actions(db: Database, *, replica: str) -> int:
    """Mark the actions ``replica`` was running when it stopped ``interrupted``, each with
    an audit entry and its card updated, in one transaction. Running a responder again is
    not safe when its first call may have acted (a second disable, a session killed
    twice), so a person decides. An undo it was making goes back to ``succeeded``: the
    containment may still hold, and Undo may be pressed again (undoing twice is harmless).
    Returns how many."""
    async with db.session() as session:
        running = (
            await session.exec(
                select(Action).where(
                    col(Action.status).in_(
                        [ActionStatus.running.value, ActionStatus.undoing.value]
                    ),
                    col(Action.replica) == replica[:128],
                )
            )
        ).all()
        interrupted = 0
        for action in running:
            undoing = action.status == ActionStatus.undoing.value
            was, now = (
                (ActionStatus.undoing, ActionStatus.succeeded)
                if undoing
                else (ActionStatus.running, ActionStatus.interrupted)
            )
            result = (UNDO_INTERRUPTED if undoing else INTERRUPTED).format(
                replica=replica, responder=action.responder, target=action.target
            )
            changed = await session.exec(
                update(Action)
                .where(col(Action.id) == action.id, col(Action.status) == was.value)
                .values(status=now.value, result=result, updated_at=utcnow())
            )
            if changed.rowcount != 1:  # it finished meanwhile
                continue
            audit.record(
                session,
                actor=SYSTEM_ACTOR,
                verb="action.undo.interrupted" if undoing else "action.interrupted",
                target=f"{action.responder}:{action.target}",
                incident_id=action.incident_id,
                replica=replica,
                result=result,
            )
            if action.incident_id is not None:
                await outbox.enqueue_card(session, action.incident_id)
            interrupted += 1
        await session.commit()
    if interrupted:
        log.warning(
            "%d actions were running on replica %s when it stopped: marked interrupted",
            interrupted,
            replica,
        )
    return interrupted


class HeldContainments:
    """The responders that keep their containment in force themselves, kept in step with
    the database: a job every ``HOLD_EVERY`` seconds on every replica hands each, on the
    leader, the containments in force (so an action or Undo on any replica, an expiry or
    ``fido respond`` takes effect within seconds) and tells it, anywhere else, to let go."""

    def __init__(self, leadership: Leadership, holders: Mapping[str, HoldsContainment]) -> None:
        self.leadership = leadership
        self.holders = dict(holders)

    async def run(self) -> None:
        for name, holder in self.holders.items():
            try:
                if self.leadership.leader:
                    await holder.hold(await act.held(self.leadership.db, name))
                else:
                    await holder.release()
            except Exception as exc:  # tried again at the next run
                log.warning("could not hold the containments of %s: %s", name, first_line(exc))

    async def release(self) -> None:
        """At shutdown: every holder lets go (the next leader takes over)."""
        for holder in self.holders.values():
            await holder.release()
