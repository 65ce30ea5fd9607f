"""Reads shared by ``/fido``, App Home and the command line: lists of incidents, one
incident's timeline (events, actions, clicks), the approvals waiting for one person, and
Fido's health (each enricher, source and responder, the pause, dead letters, failed
outbox messages). Read-only: nothing here writes or audits."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from pipeline import act, audit, controls, queue
from pipeline.clock import as_utc
from pipeline.db import Database
from pipeline.incidents import IncidentService
from pipeline.lookups.breaker import BreakerState
from pipeline.lookups.enricher import LookupEnricher
from pipeline.models import (
    Action,
    ActionStatus,
    AuditEntry,
    DeadLetter,
    DeadLetterStatus,
    Decision,
    DeferredLookup,
    Event,
    Incident,
    IncidentStatus,
    OutboxMessage,
    OutboxStatus,
    SourceCursor,
)
from pipeline.plugins import Enricher, Responder
from pipeline.policy import Policy
from pipeline.records import EnrichmentResult, Proposal, enrichment_of, proposals_of

log = logging.getLogger(__name__)

RECENT = timedelta(hours=1)  # an enricher's last answer older than this says nothing


class Which(StrEnum):
    """``/fido incidents open|mine|today``."""

    open = "open"  # open incidents, highest score first
    mine = "mine"  # incidents the person acted on (approved, denied, closed, …)
    today = "today"  # created in the last 24 hours, open or closed


async def incidents(
    db: Database, *, which: Which, now: datetime, actor: str | None = None, limit: int = 20
) -> list[Incident]:
    query = select(Incident)
    if which is Which.open:
        query = query.where(Incident.status == IncidentStatus.open.value).order_by(
            col(Incident.score).desc(), col(Incident.id).desc()
        )
    elif which is Which.today:
        since = as_utc(now) - timedelta(days=1)
        query = query.where(col(Incident.created_at) >= since).order_by(col(Incident.id).desc())
    else:
        if not actor:
            raise ValueError("`mine` needs the person's id")
        touched = (
            select(AuditEntry.incident_id)
            .where(AuditEntry.actor == actor, col(AuditEntry.incident_id).is_not(None))
            .where(col(AuditEntry.verb).not_like("refused%"))
        )
        query = query.where(col(Incident.id).in_(touched)).order_by(
            col(Incident.updated_at).desc(), col(Incident.id).desc()
        )
    async with db.session() as session:
        return list((await session.exec(query.limit(limit))).all())


# -- one incident's timeline ------------------------------------------------------------


class Moment(StrEnum):
    event = "event"  # an alert joined the incident
    action = "action"  # a containment action ran, failed, was undone
    click = "click"  # a person did something (approve, deny, close, suppress, a refusal)
    fido = "fido"  # Fido decided something (scored, re-scored after a late answer)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    moment: Moment
    actor: str  # a detector (event), a person's id, or Fido
    what: str  # plain text, from outside: escape it before showing it in mrkdwn
    severity: str = ""  # an event's
    suppressed_by: str | None = None  # an event's suppression


def _audit_text(entry: AuditEntry) -> str:
    detail: dict[str, Any] = dict(entry.detail or {})
    text = f"{entry.verb} {entry.target}".strip()
    if entry.verb in ("incident.scored", "incident.refreshed", "incident.suppressed"):
        text += f" → score {detail.get('score')}, {detail.get('decision') or 'no decision'}"
    for key in ("result", "reason"):
        if detail.get(key):
            text += f": {detail[key]}"
    return text


def _moment(entry: AuditEntry) -> Moment:
    if entry.verb.startswith("refused"):
        return Moment.click
    if entry.verb.startswith("action."):
        return Moment.action
    return Moment.fido if entry.actor == act.SYSTEM_ACTOR else Moment.click


async def timeline(db: Database, incident_id: int) -> list[TimelineEntry]:
    """Every event, action and click of the incident, oldest first."""
    async with db.session() as session:
        events = (await session.exec(select(Event).where(Event.incident_id == incident_id))).all()
        entries = await audit.entries(session, incident_id=incident_id)
    found = [
        TimelineEntry(
            at=as_utc(e.occurred_at or e.received_at),
            moment=Moment.event,
            actor=e.detector,
            what=e.title,
            severity=e.severity,
            suppressed_by=e.suppressed_by,
        )
        for e in events
    ]
    found += [
        TimelineEntry(as_utc(a.at), _moment(a), a.actor, _audit_text(a))
        for a in entries
        if a.verb != "incident.scored"  # one per event: the event line says it
    ]
    return sorted(found, key=lambda t: t.at)


# -- approvals waiting for one person ------------------------------------------------------


@dataclass
class Waiting:
    """An incident with the proposals ``actor`` may approve now."""

    incident: Incident
    actions: list[Action]
    proposals: list[Proposal]


async def may_approve(service: IncidentService, actor: str, responder: str) -> bool:
    """The incident service's rule for who may approve ``responder``, without auditing: a
    click is still checked (and a refusal audited) by the service."""
    rule = service.policy.rule(responder)
    if actor in service.approvers | frozenset(rule.approvers):
        return True
    if not rule.approver_group:
        return False
    try:
        return await service.people.in_group(actor, rule.approver_group)
    except Exception as exc:  # cannot tell: not shown; a click would say why
        log.warning("approver group %s: %s", rule.approver_group, exc)
        return False


def pending(incident: Incident, actions: Sequence[Action]) -> list[Proposal]:
    """The proposals still waiting for a decision (as the card draws their buttons)."""
    if incident.decision not in (Decision.ask_approval, Decision.auto_act):
        return []
    decided = {(a.responder, a.target) for a in actions if a.status != ActionStatus.awaiting_second}
    proposals = [p for p in proposals_of(incident.proposed_actions) if not p.automatic]
    return [p for p in proposals if (p.responder, p.target) not in decided]


async def waiting_for(service: IncidentService, actor: str, *, limit: int = 5) -> list[Waiting]:
    """Open incidents with proposals ``actor`` may approve (not ones they approved once
    already: a second approver must be someone else), highest score first."""
    async with service.db.session() as session:
        candidates = (
            await session.exec(
                select(Incident)
                .where(
                    Incident.status == IncidentStatus.open.value,
                    col(Incident.decision).in_([Decision.ask_approval, Decision.auto_act]),
                )
                .order_by(col(Incident.score).desc(), col(Incident.id).desc())
                .limit(100)
            )
        ).all()
        ids = [i.id for i in candidates]
        by_incident: dict[int | None, list[Action]] = {}
        for action in (
            await session.exec(
                select(Action).where(col(Action.incident_id).in_(ids)).order_by(col(Action.id))
            )
        ).all():
            by_incident.setdefault(action.incident_id, []).append(action)
    found: list[Waiting] = []
    for incident in candidates:
        actions = by_incident.get(incident.id, [])
        mine_already = {(a.responder, a.target) for a in actions if actor in a.approvals}
        proposals = [
            p
            for p in pending(incident, actions)
            if (p.responder, p.target) not in mine_already
            and await may_approve(service, actor, p.responder)
        ]
        if proposals:
            found.append(Waiting(incident, actions, proposals))
            if len(found) >= limit:
                break
    return found


# -- health ---------------------------------------------------------------------------------


class State(StrEnum):
    ok = "ok"
    degraded = "degraded"
    waiting = "waiting for quota"
    breaker_open = "breaker open"
    capped = "past its hourly cap"


@dataclass(frozen=True)
class Part:
    kind: str  # enricher, source, responder
    name: str
    state: State
    detail: str = ""  # from outside (an error): escape it before showing it


@dataclass(frozen=True)
class Health:
    parts: list[Part]
    switches: controls.Switches
    dead_letters: int  # pending
    failed_outbox: int
    pending_events: int

    @property
    def ok(self) -> bool:
        return (
            all(p.state is State.ok for p in self.parts)
            and not self.switches.paused
            and not self.dead_letters
            and not self.failed_outbox
        )


async def _enricher_parts(db: Database, enrichers: Sequence[Enricher], now: datetime) -> list[Part]:
    """Breaker open, lookups waiting for quota, or the latest result on an incident changed
    within the last hour an error: in that order."""
    async with db.session() as session:
        waiting = select(DeferredLookup.enricher, func.count())
        deferred = dict((await session.exec(waiting.group_by(col(DeferredLookup.enricher)))).all())
        recent = select(Incident).where(col(Incident.updated_at) >= as_utc(now) - RECENT)
        rows = (
            await session.exec(recent.order_by(col(Incident.updated_at).desc()).limit(50))
        ).all()
    latest: dict[str, EnrichmentResult] = {}
    for incident in rows:
        for source, answer in enrichment_of(incident.enrichment).items():
            latest.setdefault(source, answer)
    parts = []
    for enricher in enrichers:
        name, result = enricher.name, latest.get(enricher.name)
        breaker = enricher.breaker if isinstance(enricher, LookupEnricher) else None
        if breaker is not None and breaker.state is BreakerState.open:
            until = breaker.retry_at()
            when = f" until {as_utc(until):%H:%M:%S} UTC" if until else ""
            parts.append(Part("enricher", name, State.breaker_open, f"calls stopped{when}"))
        elif deferred.get(name):
            parts.append(Part("enricher", name, State.waiting, f"{deferred[name]} lookups waiting"))
        elif result is not None and not result.ok:
            why = f"{result.status.value}: {result.error}" if result.error else result.status.value
            parts.append(Part("enricher", name, State.degraded, why))
        else:
            parts.append(Part("enricher", name, State.ok))
    return parts


async def _source_parts(db: Database, names: Collection[str]) -> list[Part]:
    async with db.session() as session:
        query = select(SourceCursor).where(col(SourceCursor.name).in_(names))
        rows = {r.name: r for r in (await session.exec(query)).all()}
    parts = []
    for name in sorted(names):
        row = rows.get(name)
        if row is not None and row.last_error:
            parts.append(Part("source", name, State.degraded, row.last_error))
        else:
            parts.append(Part("source", name, State.ok, "" if row else "not polled yet"))
    return parts


async def _responder_parts(
    db: Database, names: Collection[str], tripped: frozenset[str]
) -> list[Part]:
    parts = []
    async with db.session() as session:
        for name in sorted(names):
            last = (
                await session.exec(
                    select(Action)
                    .where(
                        Action.responder == name,
                        col(Action.status).not_in([ActionStatus.denied, ActionStatus.dry_run]),
                    )
                    .order_by(col(Action.id).desc())
                    .limit(1)
                )
            ).first()
            if name in tripped:
                parts.append(Part("responder", name, State.capped, "asks before every action"))
            elif last is not None and last.status == ActionStatus.failed:
                parts.append(Part("responder", name, State.degraded, last.result or "failed"))
            else:
                parts.append(Part("responder", name, State.ok))
    return parts


async def health(
    *,
    db: Database,
    policy: Policy,
    enrichers: Sequence[Enricher],
    responders: Mapping[str, Responder],
    now: datetime,
) -> Health:
    async with db.session() as session:
        switches = await controls.read(session)
        dead = (
            await session.exec(
                select(func.count())
                .select_from(DeadLetter)
                .where(DeadLetter.status == DeadLetterStatus.pending.value)
            )
        ).one()
        failed = (
            await session.exec(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.failed.value)
            )
        ).one()
    sources = [name for name, source in policy.sources.items() if source.enabled]
    parts = [
        *await _enricher_parts(db, enrichers, now),
        *await _source_parts(db, sources),
        *await _responder_parts(db, responders, switches.tripped),
    ]
    return Health(
        parts=parts,
        switches=switches,
        dead_letters=int(dead),
        failed_outbox=int(failed),
        pending_events=await queue.pending_count(db),
    )


async def signature(db: Database, enrichers: Sequence[Enricher]) -> tuple[Any, ...]:
    """A cheap fingerprint of what App Home shows: it changes when an incident or an action
    is created or changes, an outbox message fails, a dead letter arrives, a lookup waits for
    quota, a switch is set, a source fails, or a breaker opens or closes."""
    async with db.session() as session:
        found: list[Any] = []
        for query in (
            select(func.max(Incident.updated_at), func.count()).select_from(Incident),
            select(func.max(Action.updated_at), func.count()).select_from(Action),
            select(func.max(SourceCursor.updated_at), func.count()).select_from(SourceCursor),
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.status == OutboxStatus.failed.value)
            .group_by(col(OutboxMessage.status)),
            select(DeadLetter.status, func.count()).group_by(col(DeadLetter.status)),
            select(func.count()).select_from(DeferredLookup),
        ):
            found.append(tuple((await session.exec(query)).all()))
        found.append(await controls.read(session))
    found.append(tuple(e.breaker.state for e in enrichers if isinstance(e, LookupEnricher)))
    return tuple(found)
