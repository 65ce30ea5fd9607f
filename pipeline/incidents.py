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
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, func
from sqlmodel import col, select

from pipeline import act, audit, controls, outbox, queue, suppress
from pipeline.batching import Batcher
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.enrich import facts_for
from pipeline.errors import InputError, NotAuthorized
from pipeline.models import (
    Action,
    ActionStatus,
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
from pipeline.observables import Observables
from pipeline.people import NoPeople, People
from pipeline.plugins import Responder
from pipeline.policy import Policy, SuppressionMatch
from pipeline.records import Proposal, enrichment_of
from pipeline.suppress import ActiveSuppression

log = logging.getLogger(__name__)

EXPIRY_ACTOR = "fido:expiry"  # who undoes a time-boxed containment
_INCIDENT: Table = Incident.__table__  # type: ignore[attr-defined]
_PLACE = (  # where an incident's card lives, once Slack said
    _INCIDENT.update()
    .where(_INCIDENT.c.id == bindparam("incident"))
    .values(message_channel=bindparam("channel"), message_ts=bindparam("ts"))
)


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
        people: People | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.db = db
        self.people: People = people or NoPeople()
        self.responders = dict(responders or {})
        self.notifier: Notifier = notifier or NullNotifier()
        self.settings_approvers = frozenset(approvers)
        self.clock = clock
        self.on_enqueue: Callable[[], None] | None = None
        self._places: Batcher[tuple[int, str, str], None] = Batcher(
            self._store_places, name="fido-card-places"
        )
        self._card_reads: Batcher[int, tuple[Incident | None, list[Action]]] = Batcher(
            self._read_cards, most=200, name="fido-card-reads"
        )
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
        run an automatic action (idempotent; it queues the card update itself — or asks
        instead, when automatic action was paused or the responder's cap used up since it
        was queued), or tell the channel a notice."""
        if message.kind == OutboxKind.notice.value:
            await self.notifier.notice(str(message.payload.get("text", "")))
            return
        if message.incident_id is None:
            raise InputError(f"outbox message {message.id} names no incident")
        if message.kind == OutboxKind.act.value:  # unless paused or capped since it was queued
            await act.run_automatic(
                db=self.db,
                policy=self.policy,
                responders=self.responders,
                incident_id=message.incident_id,
                proposal=Proposal.model_validate(message.payload),
            )
            self.kick()
            return
        incident, actions = await self._card_reads.submit(message.incident_id)
        if incident is None or (incident.suppressed_by and not incident.message_ts):
            return  # gone, or silenced before it was ever posted
        await self.publish(incident, actions)

    async def publish(self, incident: Incident, actions: list[Action] | None = None) -> None:
        """Post or update the incident's message and keep where it lives (raises on failure:
        the outbox retries). Where it lives is outbox bookkeeping (not durable, like the
        row's own settlement): a power loss before the next durable commit costs at most
        one duplicate card."""
        assert incident.id is not None
        if actions is None:
            actions = await act.actions_for(self.db, incident_id=incident.id)
        ref = await self.notifier.publish(incident, actions)
        if ref is None or (ref.channel, ref.ts) == (incident.message_channel, incident.message_ts):
            return
        await self._places.submit((incident.id, ref.channel, ref.ts))
        incident.message_channel, incident.message_ts = ref.channel, ref.ts

    async def _read_cards(self, ids: list[int]) -> list[tuple[Incident | None, list[Action]]]:
        """The incidents (and their actions) of the cards being sent at about the same
        time: one transaction and two statements for all of them."""
        async with self.db.session(durable=False) as session:
            found = await session.exec(select(Incident).where(col(Incident.id).in_(set(ids))))
            incidents: dict[int, Incident] = {i.id: i for i in found.all() if i.id is not None}
            # an incident's Action rows are only ever made from its proposals, which are
            # never taken back: with none proposed there is nothing to look for
            proposing = sorted(i for i, incident in incidents.items() if incident.proposed_actions)
            actions: dict[int, list[Action]] = {}
            if proposing:
                rows = await session.exec(
                    select(Action)
                    .where(col(Action.incident_id).in_(proposing))
                    .order_by(col(Action.id))
                )
                for action in rows.all():
                    assert action.incident_id is not None
                    actions.setdefault(action.incident_id, []).append(action)
        return [(incidents.get(i), actions.get(i, [])) for i in ids]

    async def _store_places(self, places: list[tuple[int, str, str]]) -> list[None]:
        """Where cards now live, for the cards posted at about the same time: one statement
        and one commit for all of them."""
        async with self.db.session(durable=False) as session:
            connection = await session.connection()
            await connection.execute(
                _PLACE, [{"incident": i, "channel": c, "ts": ts} for i, c, ts in places]
            )
            await session.commit()
        return [None] * len(places)

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

    async def approve(
        self,
        *,
        incident_id: int,
        responder: str,
        target: str,
        actor: str,
        version: int | None = None,
        issued: datetime | None = None,
    ) -> Action:
        """An Approve click. Checked every time, server-side: the approver may approve this
        action, the button is current (``version`` of the card's decision, ``issued`` within
        the policy's button lifetime), and the approver is not its target."""
        await self._authorize_action(actor, responder, "approve", incident_id)
        incident = await self._open(incident_id)
        self._current(incident, version, issued)
        await self._not_themselves(actor, incident, responder, target)
        try:
            return await act.approve(
                db=self.db,
                policy=self.policy,
                responders=self.responders,
                incident_id=incident_id,
                responder=responder,
                target=target,
                actor=actor,
            )
        finally:
            self.kick()

    async def deny(
        self,
        *,
        incident_id: int,
        responder: str,
        target: str,
        actor: str,
        version: int | None = None,
        issued: datetime | None = None,
    ) -> Action:
        await self._authorize_action(actor, responder, "deny", incident_id)
        incident = await self._open(incident_id)
        self._current(incident, version, issued)
        try:
            return await act.deny(
                db=self.db, incident_id=incident_id, responder=responder, target=target, actor=actor
            )
        finally:
            self.kick()

    async def _authorize_action(
        self, actor: str, responder: str, verb: str, incident_id: int | None
    ) -> None:
        """Approvers of this action: FIDO_APPROVERS, the policy's, the action rule's, and
        members of the rule's Slack user group."""
        rule = self.policy.rule(responder)
        allowed = self.approvers | frozenset(rule.approvers)
        if rule.approver_group and actor not in allowed:
            try:
                if await self.people.in_group(actor, rule.approver_group):
                    return
            except Exception as exc:  # cannot tell: refuse, and say why
                log.warning("approver group %s: %s", rule.approver_group, exc)
        await act.authorize(
            self.db,
            actor=actor,
            approvers=allowed,
            verb=f"{verb} {responder}",
            incident_id=incident_id,
        )

    def _current(self, incident: Incident, version: int | None, issued: datetime | None) -> None:
        """Refuse a button drawn for an earlier decision, or older than its lifetime."""
        if version is not None and version != incident.decision_version:
            raise InputError(
                "this card has changed since this button was drawn (new alerts or a new "
                "decision): look at the card again and click there"
            )
        lifetime = timedelta(hours=self.policy.button_lifetime_hours)
        if issued is not None and self.now() - as_utc(issued) > lifetime:
            raise InputError(
                f"this button is older than {self.policy.button_lifetime_hours:g} hours: "
                f"run `/fido incident {incident.id}` for a current card"
            )

    async def _not_themselves(
        self, actor: str, incident: Incident, responder: str, target: str
    ) -> None:
        """No self-approval: refuse an approver whose Slack e-mail is the target's
        directory e-mail (and audit it)."""
        runner = self.responders.get(responder)
        if runner is None or runner.target_kind != "user":
            return
        facts = facts_for(enrichment_of(incident.enrichment), Observables.key("user", target))
        mail = str(facts.get("mail") or facts.get("email") or "").strip().casefold()
        if not mail:
            return
        try:
            mine = (await self.people.email(actor) or "").strip().casefold()
        except Exception as exc:
            raise InputError(
                "Fido could not check that you are not approving an action on your own "
                f"account ({exc}); try again in a moment"
            ) from None
        if mine != mail:
            return
        async with self.db.session() as session:
            audit.record(
                session,
                actor=actor,
                verb="refused.self_approval",
                target=f"{responder}:{target}",
                incident_id=incident.id,
            )
            await session.commit()
        raise NotAuthorized(
            f"{target} is your own account: another approver must decide this action"
        )

    def reversible(self) -> frozenset[str]:
        """The responders whose actions Undo can reverse (as each declares)."""
        return frozenset(name for name, r in self.responders.items() if r.reversible)

    async def undo(self, *, incident_id: int, action_id: int, actor: str) -> Action:
        """Undo an action (its approvers only, as for approving it); refused for a
        responder that cannot undo."""
        async with self.db.session(durable=False) as session:
            action = await session.get(Action, action_id)
        if action is None:
            await self._authorize(actor, "undo", incident_id)
        else:
            await self._authorize_action(actor, action.responder, "undo", incident_id)
        if action is not None and action.responder not in self.reversible():
            raise InputError(
                f"{action.responder} on {action.target} cannot be undone: "
                f"{action.responder} is not reversible"
            )
        try:
            return await act.undo(
                db=self.db, responders=self.responders, action_id=action_id, actor=actor
            )
        finally:
            self.kick()

    # -- what stops automatic action -----------------------------------------------------

    async def switches(self) -> controls.Switches:
        async with self.db.session() as session:
            return await controls.read(session)

    async def pause(self, *, actor: str, reason: str = "") -> bool:
        """Stop automatic action on every replica (approvers only); False if paused already.
        Kept across restarts; the channel is told."""
        await self._authorize(actor, "pause automatic action", None)
        async with self.db.session() as session:
            done = await controls.pause(session, actor=actor, reason=reason)
            await session.commit()
        self.kick()
        return done

    async def resume(self, *, actor: str, responder: str | None = None) -> bool:
        """Lift the pause, or (with ``responder``) reset that responder's tripped hourly
        cap; False when there was nothing to lift."""
        await self._authorize(actor, "resume automatic action", None)
        async with self.db.session() as session:
            if responder is None:
                done = await controls.resume(session, actor=actor)
            else:
                done = await controls.reset(session, responder=responder, actor=actor)
            await session.commit()
        self.kick()
        return done

    # -- time-boxed containment --------------------------------------------------------------

    async def extend(self, *, action_id: int, hours: float, actor: str) -> Action:
        """Push back when a time-boxed containment is undone (its approvers only)."""
        if not 0 < hours <= 24 * 90:
            raise InputError("extend by 1 hour to 90 days")
        async with self.db.session() as session:
            action = await session.get(Action, action_id)
            if action is None:
                raise InputError(f"there is no action {action_id}")
        await self._authorize_action(actor, action.responder, "extend", action.incident_id)
        async with self.db.session() as session:
            action = await session.get(Action, action_id)
            assert action is not None
            if action.status != ActionStatus.succeeded.value or action.expires_at is None:
                raise InputError(f"action {action_id} is not a containment that expires")
            action.expires_at = max(as_utc(action.expires_at), self.now()) + timedelta(hours=hours)
            action.updated_at = self.now()
            session.add(action)
            audit.record(
                session,
                actor=actor,
                verb="action.extended",
                target=f"{action.responder}:{action.target}",
                incident_id=action.incident_id,
                expires_at=action.expires_at.isoformat(),
            )
            if action.incident_id is not None:
                await outbox.enqueue_card(session, action.incident_id)
            await session.commit()
        self.kick()
        return action

    async def expire_due(self) -> int:
        """Undo every time-boxed containment whose time has come (the scheduler runs this;
        Undo's conditional status change keeps two replicas from undoing one action twice).
        Returns how many were undone."""
        async with self.db.session() as session:
            due = (
                await session.exec(
                    select(Action.id).where(
                        Action.status == ActionStatus.succeeded.value,
                        col(Action.expires_at).is_not(None),
                        col(Action.expires_at) <= self.now(),
                    )
                )
            ).all()
        undone = 0
        for action_id in due:
            assert action_id is not None
            try:
                await act.undo(
                    db=self.db, responders=self.responders, action_id=action_id, actor=EXPIRY_ACTOR
                )
                undone += 1
            except Exception as exc:  # kept: tried again on the next run, and shown on the card
                log.warning("expiry of action %s: %s", action_id, exc)
        if due:
            self.kick()
        return undone

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
