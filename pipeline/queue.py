"""The database is the work queue.

A worker claims a batch of the oldest pending events in one transaction, whose
candidates are chosen with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so replicas do not
queue behind each other. Each claim carries a token (only its holder may complete it) and
the claiming replica's name.

A claim is a short lease (``LEASE``, 60 s) that the worker renews while the event is in
flight (``renew``), so an event left ``processing`` by a replica that died is claimable
again within a minute; and a replica that restarts releases its own claims at once
(``release``, by its name).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, bindparam, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.db import Database
from pipeline.errors import FidoError
from pipeline.models import Event, EventStatus, utcnow

LEASE = timedelta(seconds=60)
RENEW_EVERY = 20.0  # seconds between lease renewals of an event in flight
MAX_ATTEMPTS = 5
_EVENT: Table = Event.__table__  # type: ignore[attr-defined]


def _claimable(now_minus_lease: datetime) -> ColumnElement[bool]:
    return or_(
        col(Event.status) == EventStatus.pending.value,
        (col(Event.status) == EventStatus.processing.value)
        & (col(Event.claimed_at) < now_minus_lease),
    )


async def claim(db: Database, *, lease: timedelta = LEASE, replica: str = "") -> Event | None:
    """Claim the oldest claimable event, or return None when there is none."""
    claimed = await claim_many(db, 1, lease=lease, replica=replica)
    return claimed[0] if claimed else None


async def claim_many(
    db: Database, most: int, *, lease: timedelta = LEASE, replica: str = ""
) -> list[Event]:
    """Claim up to ``most`` of the oldest claimable events in one transaction, oldest
    first; they share one claim token. The candidates are locked as they are chosen
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer), and the UPDATE checks
    again that each is claimable, so two claimers never get one event."""
    stale = utcnow() - lease
    most = max(1, most)
    # Two queries, pending and expired, each walking the status index in id order and
    # stopping at ``most``: one query with OR made SQLite sort every pending event (a
    # storm's ten thousand) for each claim.
    candidates = [
        select(_EVENT.c.id)
        .where(_EVENT.c.status == EventStatus.pending.value)
        .order_by(_EVENT.c.id)
        .limit(most),
        select(_EVENT.c.id)
        .where(_EVENT.c.status == EventStatus.processing.value, _EVENT.c.claimed_at < stale)
        .order_by(_EVENT.c.id)
        .limit(most),
    ]
    if not db.sqlite:
        # chosen first, then updated: inside the UPDATE, PostgreSQL may run a LIMIT …
        # SKIP LOCKED subquery more than once and claim more rows than asked for
        candidates = [query.with_for_update(skip_locked=True) for query in candidates]
    async with db.session(durable=False) as session:
        connection = await session.connection()
        found = [
            event_id
            for query in candidates
            for event_id in (await connection.execute(query)).scalars().all()
        ]
        ids = sorted(set(found))[:most]
        if not ids:
            await session.commit()
            return []
        rows = await session.exec(
            update(Event)
            .where(col(Event.id).in_(ids), _claimable(stale))
            .values(
                status=EventStatus.processing.value,
                claimed_at=utcnow(),
                claim_token=uuid.uuid4().hex,
                claimed_by=replica[:128] or None,
                attempts=col(Event.attempts) + 1,
            )
            .returning(Event)
            .execution_options(synchronize_session=False)
        )
        events = list(rows.scalars().all())
        await session.commit()
    return sorted(events, key=lambda event: event.id or 0)


async def renew(db: Database, events: list[Event]) -> None:
    """Extend the leases of events still in flight (their claims unchanged)."""
    tokens = [e.claim_token for e in events if e.claim_token]
    if not tokens:
        return
    async with db.session(durable=False) as session:
        await session.exec(
            update(Event)
            .where(
                col(Event.claim_token).in_(tokens),
                col(Event.status) == EventStatus.processing.value,
            )
            .values(claimed_at=utcnow())
        )
        await session.commit()


async def release(db: Database, *, replica: str) -> int:
    """At start-up: put back the events this replica had claimed when it stopped."""
    async with db.session() as session:
        released = await session.exec(
            update(Event)
            .where(
                col(Event.status) == EventStatus.processing.value,
                col(Event.claimed_by) == replica[:128],
            )
            .values(status=EventStatus.pending.value, claim_token=None, claimed_by=None)
        )
        await session.commit()
    return int(released.rowcount)


class LostClaim(FidoError):
    """The event's lease expired and another worker claimed it: this work is not kept."""


# built once (a statement is costly to build); the values are parameters
_COMPLETE = (
    _EVENT.update()
    .where(
        _EVENT.c.id == bindparam("event_id"),
        _EVENT.c.status == EventStatus.processing.value,
        _EVENT.c.claim_token == bindparam("token"),
    )
    .values(
        status=EventStatus.done.value,
        incident_id=bindparam("joined"),
        suppressed_by=bindparam("silenced"),
        last_error=None,
    )
)


async def complete(session: AsyncSession, events: Sequence[Event]) -> None:
    """Mark ``events`` done in the caller's transaction, if their claims are still ours,
    each with the incident it joined and the suppression that silenced it: one plain
    statement for all of them (it neither needs nor flushes the session's pending objects).
    If any claim was lost the whole transaction must not be kept (LostClaim): the worker
    then finishes its events one by one, and only the one whose claim was lost is left."""
    if not events:
        return
    connection = await session.connection()
    done = await connection.execute(
        _COMPLETE,
        [
            {
                "event_id": event.id,
                "token": event.claim_token,
                "joined": event.incident_id,
                "silenced": event.suppressed_by,
            }
            for event in events
        ],
    )
    if done.rowcount != len(events):
        ids = ", ".join(str(event.id) for event in events)
        raise LostClaim(
            f"event {ids} was claimed by another worker; leaving it to it"
            if len(events) == 1
            else f"one of events {ids} was claimed by another worker"
        )


async def fail(db: Database, *, event_id: int, error: str, retry: bool = True) -> str:
    """Record a failure; the event is retried until MAX_ATTEMPTS, then kept as failed."""
    async with db.session() as session:
        event = await session.get(Event, event_id)
        if event is None:
            return EventStatus.failed.value
        give_up = not retry or event.attempts >= MAX_ATTEMPTS
        event.status = (EventStatus.failed if give_up else EventStatus.pending).value
        event.last_error = error[:4000]
        session.add(event)
        await session.commit()
        return event.status


async def pending_count(db: Database) -> int:
    async with db.session() as session:
        rows = await session.exec(
            select(func.count())
            .select_from(Event)
            .where(col(Event.status).in_(["pending", "processing"]))
        )
        return int(rows.one())
