"""The outbox: everything Fido sends is a row first, then delivered.

A state change and "what must be sent because of it" commit in one transaction
(``enqueue_card``, ``enqueue_act``), so nothing to send is lost when Slack or a responder is
down or the process dies. The :class:`Sender` delivers due rows:

- **in order per incident** — a row waits while an earlier pending row of the same incident
  exists (also while that one backs off); different incidents go concurrently;
- **with retries** — a failure backs off exponentially (1 s, 2 s, 4 s … at most 5 min); a
  ``Retry-After`` (Slack's 429) is honoured exactly and never uses up the attempts (Slack
  said when: nothing is lost by waiting); a permanent error (a missing channel, a revoked
  token) or ``max_attempts`` other failures leave the row ``failed``: kept, counted in
  ``/metrics``, listed by ``fido outbox`` and retried by ``fido outbox retry``;
- **within the recipient's rate limits** — a deliverer that knows a limit is used up
  (Slack's one message per second per channel) raises :class:`Later` without calling out:
  the row waits that long and no attempt is counted;
- **never blocking** — each delivery has a timeout, and the sender runs beside the worker;
- **once per replica set** — the due rows are leased (``claimed_until``) by one conditional
  update before they are delivered, so two senders never deliver a row together; how each
  delivery went is recorded in shared commits (``pipeline/batching.py``).

A card row renders the incident as it is when sent, so one pending card row stands for
every change made before it is sent (a second is not written). Where Slack returns a
message ``ts`` it is stored before the row is marked sent: after a crash between the two,
the row is delivered again as an update, or — if the crash came before the ``ts`` was
stored — as at most one duplicate card, never a lost one.

The sender hands every row to one ``deliver``: the engine's, which sends rows of kind
``message`` (thread replies, digests, questions to users, reminders: ``pipeline/routing.py``)
with the notifier when it can send messages (the Slack notifier), and the rest to the
incident service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, bindparam, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import observe
from pipeline.batching import Batcher
from pipeline.clock import Clock, as_utc, system_clock, wait_any
from pipeline.db import Database
from pipeline.errors import DeliveryError
from pipeline.models import OutboxKind, OutboxMessage, OutboxStatus, utcnow
from pipeline.records import Proposal

log = logging.getLogger(__name__)

Deliver = Callable[[OutboxMessage], Awaitable[None]]
MAX_BACKOFF = timedelta(minutes=5)
LEASE = timedelta(seconds=60)
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
_SENT = (  # a row delivered (``Sender._apply`` for the rest)
    _OUTBOX.update()
    .where(_OUTBOX.c.id == bindparam("row"))
    .values(
        status=OutboxStatus.sent.value,
        sent_at=bindparam("at"),
        last_error=None,
        claimed_until=None,
    )
)


class Later(DeliveryError):
    """Not sent, and not tried: the recipient's rate limit is used up for ``retry_after``
    seconds (raised before calling out). The row waits; no attempt is counted."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


# built once (a statement is costly to build); the incident is a parameter
_WAITING_CARD = select(OutboxMessage).where(
    OutboxMessage.incident_id == bindparam("incident_id"),
    OutboxMessage.kind == OutboxKind.card.value,
    OutboxMessage.status == OutboxStatus.pending.value,
    col(OutboxMessage.claimed_until).is_(None),
)


async def enqueue_card(
    session: AsyncSession,
    incident_id: int,
    *,
    not_before: datetime | None = None,
) -> None:
    """Post or update the incident's card, in the caller's transaction; one pending,
    not-yet-claimed card row already covers it.

    ``not_before`` holds back a routine update (another alert joined, the score moved) so
    that the changes of the next few seconds go out as one ``chat.update``: a storm of
    alerts then costs a card update every few seconds, not one per alert. Without it the
    card goes as soon as it can, and a waiting row is brought forward."""
    waiting = (await session.exec(_WAITING_CARD, params={"incident_id": incident_id})).first()
    if waiting is None:
        session.add(
            OutboxMessage(
                incident_id=incident_id, kind=OutboxKind.card.value, not_before=not_before
            )
        )
    elif not_before is None and waiting.not_before is not None and waiting.attempts == 0:
        waiting.not_before = None  # something that matters now: do not wait for the batch
        session.add(waiting)


async def enqueue_first_cards(session: AsyncSession, incident_ids: Sequence[int]) -> None:
    """Post the first card of incidents opened in the caller's transaction: they have no
    rows yet, so there is none to look for, and all of them are written in one plain
    statement, at once."""
    if not incident_ids:
        return
    connection = await session.connection()
    created_at = utcnow()
    await connection.execute(
        _OUTBOX.insert(),
        [
            {
                "incident_id": incident_id,
                "kind": OutboxKind.card.value,
                "payload": {},
                "status": OutboxStatus.pending.value,
                "attempts": 0,
                "not_before": None,
                "created_at": created_at,
            }
            for incident_id in incident_ids
        ],
    )


def enqueue_act(session: AsyncSession, incident_id: int, proposal: Proposal) -> None:
    """Run an automatic action, in the caller's transaction."""
    session.add(
        OutboxMessage(
            incident_id=incident_id,
            kind=OutboxKind.act.value,
            payload=proposal.model_dump(mode="json"),
        )
    )


def enqueue_notice(session: AsyncSession, text: str) -> None:
    """Tell the channel ``text`` (not about one incident), in the caller's transaction."""
    session.add(
        OutboxMessage(incident_id=None, kind=OutboxKind.notice.value, payload={"text": text})
    )


@dataclass(frozen=True)
class _Settle:
    """How one delivery went, to be recorded."""

    row: OutboxMessage
    error: str | None
    retry_after: float | None
    permanent: bool
    later: bool
    now: datetime


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


class Sender:
    def __init__(
        self,
        *,
        db: Database,
        deliver: Deliver,
        clock: Clock = system_clock,
        max_attempts: int = 12,
        timeout: float = 15.0,
        concurrency: int = 32,
    ) -> None:
        self.db = db
        self.deliver = deliver
        self.clock = clock
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.slots = asyncio.Semaphore(concurrency)
        self.wakeup = asyncio.Event()
        self.concurrency = concurrency
        self._settles: Batcher[_Settle, None] = Batcher(
            self._settle_many, name="fido-outbox-settle"
        )

    def now(self) -> datetime:
        return as_utc(self.clock())

    async def due(self, *, limit: int = 50) -> list[OutboxMessage]:
        """Rows that may be delivered now: pending, due, not leased, and first in line for
        their incident."""
        now = self.now()
        earlier = aliased(OutboxMessage)
        blocked = exists().where(
            and_(
                col(earlier.incident_id) == col(OutboxMessage.incident_id),
                col(earlier.status) == OutboxStatus.pending.value,
                col(earlier.id) < col(OutboxMessage.id),
            )
        )
        async with self.db.session(durable=False) as session:
            rows = await session.exec(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status == OutboxStatus.pending.value,
                    or_(
                        col(OutboxMessage.not_before).is_(None),
                        col(OutboxMessage.not_before) <= now,
                    ),
                    or_(
                        col(OutboxMessage.claimed_until).is_(None),
                        col(OutboxMessage.claimed_until) < now,
                    ),
                    or_(col(OutboxMessage.incident_id).is_(None), ~blocked),
                )
                .order_by(col(OutboxMessage.id))
                .limit(limit)
            )
            return list(rows.all())

    async def _lease(self, rows: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        """Lease ``rows`` in one statement; the ones won (another sender may have been
        quicker)."""
        if not rows:
            return []
        now = self.now()
        until = now + LEASE
        async with self.db.session(durable=False) as session:
            won = await session.exec(
                update(OutboxMessage)
                .where(
                    col(OutboxMessage.id).in_([row.id for row in rows]),
                    col(OutboxMessage.status) == OutboxStatus.pending.value,
                    or_(
                        col(OutboxMessage.claimed_until).is_(None),
                        col(OutboxMessage.claimed_until) < now,
                    ),
                )
                .values(claimed_until=until)
                .returning(col(OutboxMessage.id))
            )
            ids = set(won.scalars().all())
            await session.commit()
        return [row for row in rows if row.id in ids]

    async def deliver_due(self, *, limit: int = 50) -> int:
        """Deliver up to ``limit`` rows that are due now (one row per incident), leasing only
        as many at once as there are slots, so a crash leaves few rows leased; return how
        many were sent."""
        sent = handled = 0
        while handled < limit:
            rows = await self._lease(await self.due(limit=min(self.concurrency, limit - handled)))
            if not rows:
                break
            handled += len(rows)
            sent += sum(await asyncio.gather(*(self._bounded(row) for row in rows)))
        return sent

    async def drain(self, *, rounds: int = 1000) -> int:
        """Deliver until nothing is due (for the CLI, the demo and tests)."""
        sent = 0
        for _ in range(rounds):
            if not await self.due(limit=1):
                break
            sent += await self.deliver_due()
        return sent

    async def _bounded(self, row: OutboxMessage) -> bool:
        async with self.slots:
            return await self._one(row)

    async def _one(self, row: OutboxMessage) -> bool:
        error: str | None = None
        retry_after: float | None = None
        permanent = later = False
        observe.bind(incident=row.incident_id)  # this task's log lines name its incident
        try:
            with observe.timed("send"):
                await asyncio.wait_for(self.deliver(row), self.timeout)
        except Later as exc:
            error, retry_after, later = str(exc), exc.retry_after, True
        except DeliveryError as exc:
            error, retry_after, permanent = str(exc), exc.retry_after, exc.permanent
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except Exception as exc:  # a bug or an unexpected failure: retried, then kept
            log.exception("outbox message %s (%s) failed", row.id, row.kind)
            error = f"{type(exc).__name__}: {exc}"
        await self._settle(
            row, error=error, retry_after=retry_after, permanent=permanent, later=later
        )
        observe.delivered(row.kind, error=error, retry_after=retry_after, later=later)
        return error is None

    async def _settle(
        self,
        row: OutboxMessage,
        *,
        error: str | None,
        retry_after: float | None,
        permanent: bool,
        later: bool = False,
    ) -> None:
        """Record how ``row``'s delivery went (settlements made at once share a commit)."""
        await self._settles.submit(_Settle(row, error, retry_after, permanent, later, self.now()))

    async def _settle_many(self, settles: list[_Settle]) -> list[None]:
        sent = [s for s in settles if s.error is None]
        others = [s for s in settles if s.error is not None]
        async with self.db.session(durable=False) as session:
            if sent:  # the common case, in one plain statement
                connection = await session.connection()
                await connection.execute(_SENT, [{"row": s.row.id, "at": s.now} for s in sent])
            if others:  # attempts counted and back-off worked out from the stored row
                found = await session.exec(
                    select(OutboxMessage).where(
                        col(OutboxMessage.id).in_([s.row.id for s in others])
                    )
                )
                fresh_by_id = {row.id: row for row in found.all()}
                for settle in others:
                    fresh = fresh_by_id.get(settle.row.id)
                    if fresh is not None:
                        self._apply(fresh, settle)
                        session.add(fresh)
            await session.commit()
        return [None] * len(settles)

    def _apply(self, fresh: OutboxMessage, settle: _Settle) -> None:
        """A failed or held-back delivery, on its stored row (a sent one is ``_SENT``)."""
        row, error, retry_after, now = settle.row, settle.error, settle.retry_after, settle.now
        assert error is not None
        fresh.claimed_until = None
        if settle.later:  # held back by a known rate limit: not an attempt
            fresh.not_before = now + timedelta(seconds=max(retry_after or 1.0, 0.001))
        else:
            fresh.attempts += 1
            fresh.last_error = error[:2000]
            exhausted = fresh.attempts >= self.max_attempts and retry_after is None
            if settle.permanent or exhausted:
                fresh.status = OutboxStatus.failed.value
                log.error(
                    "outbox message %s (%s, incident %s) failed for good after %d attempts: %s",
                    row.id,
                    row.kind,
                    row.incident_id,
                    fresh.attempts,
                    error,
                )
            else:
                wait = (
                    timedelta(seconds=retry_after)
                    if retry_after is not None
                    else backoff(fresh.attempts)
                )
                fresh.not_before = now + wait
                log.warning(
                    "outbox message %s (%s) failed, retrying in %.1f s: %s",
                    row.id,
                    row.kind,
                    wait.total_seconds(),
                    error,
                )

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Deliver until ``stop`` is set, ``concurrency`` rows at once: a row starts as soon
        as a slot is free (a slow delivery never holds up a round of others), and one that
        ends lets its incident's next row go. With nothing due it sleeps ``idle`` seconds,
        or until woken (a row queued) or a delivery ends. On stop, the deliveries in flight
        finish."""
        flying: set[asyncio.Task[bool]] = set()
        freed = asyncio.Event()

        def ended(task: asyncio.Task[bool]) -> None:
            flying.discard(task)
            freed.set()

        try:
            while not stop.is_set():
                free = self.concurrency - len(flying)
                if flying and free < max(1, self.concurrency // 4):
                    freed.clear()  # busy: lease again once a few slots are free
                    await wait_any(stop, freed, timeout=idle)
                    continue
                self.wakeup.clear()  # from here on, set means rows newer than this lease
                freed.clear()
                try:
                    rows = await self._lease(await self.due(limit=free))
                except Exception:  # e.g. the database is briefly unreachable
                    log.exception("outbox sender error; retrying")
                    rows = []
                for row in rows:
                    task = asyncio.create_task(self._one(row), name=f"fido-outbox-{row.id}")
                    flying.add(task)
                    task.add_done_callback(ended)
                if len(rows) < free:  # all that is due has started: wait for news
                    await wait_any(stop, self.wakeup, freed, timeout=idle)
        finally:
            if flying:
                await asyncio.gather(*flying, return_exceptions=True)

    async def listing(self, *, statuses: Sequence[OutboxStatus]) -> list[OutboxMessage]:
        return await listing(self.db, statuses=statuses)

    async def retry(self, ids: Sequence[int] | None = None) -> int:
        """Put failed rows (all, or ``ids``) back in line; return how many."""
        count = await retry(self.db, ids=ids, now=self.now())
        self.wakeup.set()
        return count


async def listing(db: Database, *, statuses: Sequence[OutboxStatus]) -> list[OutboxMessage]:
    async with db.session() as session:
        rows = await session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.status).in_([s.value for s in statuses]))
            .order_by(col(OutboxMessage.id))
        )
        return list(rows.all())


async def retry(db: Database, *, ids: Sequence[int] | None = None, now: datetime) -> int:
    """Put failed rows (all, or ``ids``) back in line, due at once; return how many. A
    running ``fido serve`` delivers them within a second."""
    async with db.session() as session:
        query = update(OutboxMessage).where(col(OutboxMessage.status) == OutboxStatus.failed.value)
        if ids:
            query = query.where(col(OutboxMessage.id).in_(list(ids)))
        done = await session.exec(
            query.values(
                status=OutboxStatus.pending.value, attempts=0, not_before=now, claimed_until=None
            )
        )
        await session.commit()
    return int(done.rowcount)
