"""The incident service: what happens to incidents after triage, and what people do to
them — approve, deny, undo, close with a verdict, suppress — plus the reads that App Home,
the commands, the CLI and ``/metrics`` need. ``bot/`` holds no SQL; it calls this.

Every change by a person is authorised here (approvers only; a refusal is audited), written
to the audit log, and followed by an update of the incident's message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select

from pipeline import act, audit, outbox, queue, suppress
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.errors import InputError
from pipeline.models import (
    Action,
    CloseVerdict,
    DeadLetter,
    DeferredLookup,
    Event,
    Incident,
    IncidentStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SuppressionHit,
)
from pipeline.notify import Notifier, NullNotifier
from pipeline.plugins import Responder
from pipeline.policy import Policy, SuppressionMatch
from pipeline.records import Proposal
from pipeline.suppress import ActiveSuppression

log = logging.getLogger(__name__)


@dataclass
class Counts:
    """What ``/metrics`` reports, counted from the database."""

    events: dict[str, int] = field(default_factory=dict)  # by queue status
    incidents: dict[str, int] = field(default_factory=dict)  # by decision
    verdicts: dict[str, int] = field(default_factory=dict)  # closed incidents by verdict
    actions: dict[str, int] = field(default_factory=dict)  # by status
    dead_letters: dict[str, int] = field(default_factory=dict)  # by status
    deferred_lookups: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)  # alerts, by suppression key
    outbox: dict[str, int] = field(default_factory=dict)  # messages not sent yet, by status


class IncidentService:
    def __init__(
        self,
        *,
        db: Database,
        policy: Policy,
        responders: Mapping[str, Responder] | None = None,
        notifier: Notifier | None = None,
        approvers: Collection[str] = (),
        clock: Clock = system_clock,
    ) -> None:
        self.db = db
        self.responders = dict(responders or {})
        self.notifier: Notifier = notifier or NullNotifier()
        self.settings_approvers = frozenset(approvers)
        self.clock = clock
        self.on_enqueue: Callable[[], None] | None = None
        self.use(policy)

    def use(self, policy: Policy) -> None:
        """Follow ``policy`` from now on (a reload): approvers, protected accounts, …"""
        self.policy = policy
        self.approvers = self.settings_approvers | frozenset(policy.approvers)

    def now(self) -> datetime:
        return as_utc(self.clock())

    # -- delivering the outbox -------------------------------------------------------------

    def kick(self) -> None:
        """Something was queued: wake the outbox sender (set by the engine)."""
        if self.on_enqueue is not None:
            self.on_enqueue()

    async def deliver(self, message: OutboxMessage) -> None:
        """Deliver one outbox row (the sender retries on error): post or update a card, or
        run an automatic action (idempotent; it queues the card update itself)."""
        if message.incident_id is None:
            raise InputError(f"outbox message {message.id} names no incident")
        if message.kind == OutboxKind.act.value:
            proposal = Proposal.model_validate(message.payload)
            await act.execute(
                db=self.db,
                policy=self.policy,
                responders=self.responders,
                incident_id=message.incident_id,
                requested_by=act.SYSTEM_ACTOR,
                approved_by=None,
                responder=proposal.responder,
                target=proposal.target,
            )
            self.kick()
            return
        async with self.db.session() as session:
            incident = await session.get(Incident, message.incident_id)
        if incident is None or (incident.suppressed_by and not incident.message_ts):
            return  # gone, or silenced before it was ever posted
        await self.publish(incident)

    async def publish(self, incident: Incident) -> None:
        """Post or update the incident's message and keep where it lives (raises on failure:
        the outbox retries)."""
        assert incident.id is not None
        actions = await act.actions_for(self.db, incident_id=incident.id)
        ref = await self.notifier.publish(incident, actions)
        if ref is None or (ref.channel, ref.ts) == (incident.message_channel, incident.message_ts):
            return
        async with self.db.session() as session:
            fresh = await session.get(Incident, incident.id)
            if fresh is not None:
                fresh.message_channel, fresh.message_ts = ref.channel, ref.ts
                session.add(fresh)
                await session.commit()
        incident.message_channel, incident.message_ts = ref.channel, ref.ts

    # -- reads -----------------------------------------------------------------------------

    async def get(self, incident_id: int) -> tuple[Incident, list[Action]] | None:
        async with self.db.session() as session:
            incident = await session.get(Incident, incident_id)
        if incident is None:
            return None
        return incident, await act.actions_for(self.db, incident_id=incident_id)

    async def require(self, incident_id: int) -> Incident:
        found = await self.get(incident_id)
        if found is None:
            raise InputError(f"there is no incident {incident_id}")
        return found[0]

    async def open_incidents(self, *, limit: int = 15) -> list[Incident]:
        async with self.db.session() as session:
            rows = await session.exec(
                select(Incident)
                .where(Incident.status == IncidentStatus.open.value)
                .order_by(col(Incident.score).desc(), col(Incident.id).desc())
                .limit(limit)
            )
            return list(rows.all())

    async def recent_actions(self, *, limit: int = 10) -> list[Action]:
        async with self.db.session() as session:
            rows = await session.exec(select(Action).order_by(col(Action.id).desc()).limit(limit))
            return list(rows.all())

    async def events_of(self, incident_id: int) -> list[Event]:
        async with self.db.session() as session:
            rows = await session.exec(
                select(Event).where(Event.incident_id == incident_id).order_by(col(Event.id))
            )
            return list(rows.all())

    async def pending_events(self) -> int:
        return await queue.pending_count(self.db)

    async def counts(self) -> Counts:
        counts = Counts()
        async with self.db.session() as session:
            for target, column in (
                (counts.events, Event.status),
                (counts.incidents, Incident.decision),
                (counts.verdicts, Incident.verdict),
                (counts.actions, Action.status),
                (counts.dead_letters, DeadLetter.status),
            ):
                rows = await session.exec(select(column, func.count()).group_by(column))
                for label, count in rows.all():
                    if column is Incident.verdict and label is None:
                        continue
                    target[str(label or "none")] = int(count)
            counts.deferred_lookups = int(
                (await session.exec(select(func.count()).select_from(DeferredLookup))).one()
            )
            hits = await session.exec(select(SuppressionHit))
            counts.suppressed = {h.key: h.hits for h in hits.all()}
            unsent = await session.exec(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.status != OutboxStatus.sent.value)
                .group_by(col(OutboxMessage.status))
            )
            counts.outbox = {str(status): int(n) for status, n in unsent.all()}
        return counts

    async def suppressions(self) -> list[ActiveSuppression]:
        async with self.db.session() as session:
            return await suppress.active(session, policy=self.policy, now=self.now())

    # -- what people do --------------------------------------------------------------------

    async def _authorize(self, actor: str, verb: str, incident_id: int | None) -> None:
        await act.authorize(
            self.db, actor=actor, approvers=self.approvers, verb=verb, incident_id=incident_id
        )

    async def approve(self, *, incident_id: int, responder: str, target: str, actor: str) -> Action:
        await self._authorize(actor, "approve", incident_id)
        await self._open(incident_id)
        action = await act.execute(
            db=self.db,
            policy=self.policy,
            responders=self.responders,
            incident_id=incident_id,
            responder=responder,
            target=target,
            requested_by=actor,
            approved_by=actor,
        )
        self.kick()
        return action

    async def deny(self, *, incident_id: int, responder: str, target: str, actor: str) -> Action:
        await self._authorize(actor, "deny", incident_id)
        action = await act.deny(
            db=self.db, incident_id=incident_id, responder=responder, target=target, actor=actor
        )
        self.kick()
        return action

    async def undo(self, *, incident_id: int, action_id: int, actor: str) -> Action:
        await self._authorize(actor, "undo", incident_id)
        try:
            return await act.undo(
                db=self.db, responders=self.responders, action_id=action_id, actor=actor
            )
        finally:
            self.kick()

    async def _open(self, incident_id: int) -> Incident:
        incident = await self.require(incident_id)
        if incident.status != IncidentStatus.open.value:
            raise InputError(f"incident {incident_id} is closed")
        return incident

    async def close(
        self, *, incident_id: int, verdict: CloseVerdict, actor: str, reason: str = ""
    ) -> Incident:
        """Close with a verdict; a closed incident takes no new events. Closing twice is
        refused, so two analysts clicking at once record one verdict."""
        await self._authorize(actor, "close", incident_id)
        now = self.now()
        async with self.db.session() as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                raise InputError(f"there is no incident {incident_id}")
            if incident.status == IncidentStatus.closed.value:
                raise InputError(
                    f"incident {incident_id} is already closed "
                    f"({incident.verdict} by {incident.closed_by})"
                )
            incident.status = IncidentStatus.closed.value
            incident.verdict = verdict.value
            incident.closed_at, incident.closed_by = now, actor
            incident.close_reason = reason.strip()[:1000] or None
            incident.updated_at = now
            session.add(incident)
            audit.record(
                session,
                actor=actor,
                verb="incident.closed",
                target=verdict.value,
                incident_id=incident_id,
                reason=incident.close_reason,
            )
            await outbox.enqueue_card(session, incident_id)
            await session.commit()
        self.kick()
        return incident

    async def suppress_like(
        self, *, incident_id: int, actor: str, days: float | None = None, reason: str = ""
    ) -> ActiveSuppression:
        """Suppress alerts like this incident's (same detector and title, same host or user);
        refused when the same suppression is in force already (a second click)."""
        await self._authorize(actor, "suppress", incident_id)
        incident = await self.require(incident_id)
        like = suppress.from_incident(incident)
        for existing in await self.suppressions():
            if existing.match == like:
                raise InputError(
                    f"alerts like incident #{incident_id}'s are already suppressed by "
                    f"`{existing.key}` (see `/fido suppressions`)"
                )
        why = reason.strip() or f"false positive, incident #{incident_id}"
        return await self.add_suppression(
            match=like,
            actor=actor,
            days=days,
            reason=why,
            incident_id=incident_id,
        )

    async def add_suppression(
        self,
        *,
        match: SuppressionMatch,
        actor: str,
        reason: str,
        days: float | None = None,
        incident_id: int | None = None,
    ) -> ActiveSuppression:
        await self._authorize(actor, "suppress", incident_id)
        if not reason.strip():
            raise InputError("a suppression needs a reason")
        async with self.db.session() as session:
            row = await suppress.create(
                session,
                match=match,
                owner=actor,
                reason=reason.strip()[:1000],
                now=self.now(),
                days=days if days is not None else self.policy.suppression_days,
                incident_id=incident_id,
            )
            audit.record(
                session,
                actor=actor,
                verb="suppression.created",
                target=f"db:{row.id}",
                incident_id=incident_id,
                match=row.match,
                expires_at=row.expires_at.isoformat(),
            )
            if incident_id is not None:
                await outbox.enqueue_card(session, incident_id)
            await session.commit()
            found = await suppress.active(session, policy=self.policy, now=self.now())
        self.kick()
        return next(s for s in found if s.key == f"db:{row.id}")

    async def remove_suppression(self, *, suppression_id: int, actor: str) -> None:
        await self._authorize(actor, "remove a suppression", None)
        async with self.db.session() as session:
            await suppress.remove(
                session, suppression_id=suppression_id, actor=actor, now=self.now()
            )
            audit.record(
                session, actor=actor, verb="suppression.removed", target=f"db:{suppression_id}"
            )
            await session.commit()
