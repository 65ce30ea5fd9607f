"""The approval SLA: a pending approval is not forgotten.

An incident that asks for approval starts its clock when it first does
(``Incident.approval_since``, set by ``routing.place``). The scheduler runs :func:`run_sla`;
while a proposal on an open incident has no decision:

1. after ``approval_sla.remind_minutes`` it is re-announced in the card's thread,
   mentioning the action's approver group (else ``approval_sla.group``);
2. after ``escalate_minutes`` it is escalated to ``escalate_channel`` (else the thread),
   mentioning ``escalate_group``;
3. after ``timeout_minutes`` each undecided proposal gets the policy's default —
   denied, or run where ``on_timeout``/``act_on_timeout`` say so (never a two-person
   action) — shown on the card and in the thread, and audited. Running by default is
   automatic action: while it is paused, for a rule with ``auto: false`` or a responder
   past its hourly cap, the proposal is neither run nor denied but left for an approver
   (a denial would be final; acting is what the brake forbids).

Stages only move forward (``approval_stage``, changed by a conditional update, so two
replicas never send a reminder twice); minutes may be fractional.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from pipeline import act, audit, outbox
from pipeline.clock import as_utc
from pipeline.incidents import IncidentService
from pipeline.models import ActionStatus, Decision, Incident, IncidentStatus
from pipeline.records import Proposal, proposals_of
from pipeline.routing import Note, enqueue, minutes_between

log = logging.getLogger(__name__)

SLA_ACTOR = act.SLA_ACTOR
REMINDED, ESCALATED, TIMED_OUT = 1, 2, 3


async def pending(service: IncidentService, incident: Incident) -> list[Proposal]:
    """The incident's proposals nobody has decided yet (an automatic one waits for no one)."""
    assert incident.id is not None
    actions = await act.actions_for(service.db, incident_id=incident.id)
    decided = {
        (a.responder, a.target.casefold())
        for a in actions
        if a.status != ActionStatus.awaiting_second.value
    }
    return [
        p
        for p in proposals_of(incident.proposed_actions)
        if (p.responder, p.target.casefold()) not in decided and not p.automatic
    ]


async def _advance(service: IncidentService, incident: Incident, stage: int, note: Note) -> bool:
    """Move ``incident`` to ``stage`` (once) and queue ``note``; False if someone did."""
    assert incident.id is not None
    async with service.db.session() as session:
        won = await session.exec(
            update(Incident)
            .where(
                col(Incident.id) == incident.id,
                col(Incident.approval_stage) == incident.approval_stage,
            )
            .values(approval_stage=stage)
        )
        if won.rowcount != 1:
            await session.rollback()
            return False
        enqueue(session, note, incident_id=incident.id)
        audit.record(
            session,
            actor=SLA_ACTOR,
            verb=f"approval.{note.what}",
            target=note.channel or "thread",
            incident_id=incident.id,
            minutes=round(note.minutes or 0, 2),
            group=note.group,
        )
        await outbox.enqueue_card(session, incident.id)
        await session.commit()
    incident.approval_stage = stage
    return True


async def _timeout(
    service: IncidentService, incident: Incident, waiting: list[Proposal], waited: float
) -> bool:
    """Give each undecided proposal the policy's default."""
    assert incident.id is not None
    sla = service.policy.approval_sla
    async with service.db.session() as session:  # claim the stage first: one replica decides
        won = await session.exec(
            update(Incident)
            .where(
                col(Incident.id) == incident.id,
                col(Incident.approval_stage) == incident.approval_stage,
            )
            .values(approval_stage=TIMED_OUT)
        )
        await session.commit()
    if won.rowcount != 1:
        return False
    outcomes: list[str] = []
    for proposal in waiting:
        mode = "deny" if proposal.two_person else sla.default_for(proposal.responder)
        what = f"{proposal.responder} on {proposal.target}"
        try:
            if mode == "act" and (why := await _stopped(service, proposal)) is not None:
                outcomes.append(f"{what}: not run ({why}); left for an approver")
                continue
            if mode == "act":
                action = await act.execute(
                    db=service.db,
                    policy=service.policy,
                    responders=service.responders,
                    incident_id=incident.id,
                    responder=proposal.responder,
                    target=proposal.target,
                    requested_by=SLA_ACTOR,
                    approved_by=None,
                )
            else:
                action = await act.deny(
                    db=service.db,
                    incident_id=incident.id,
                    responder=proposal.responder,
                    target=proposal.target,
                    actor=SLA_ACTOR,
                )
            outcomes.append(f"{what}: {mode} → {action.status}")
        except Exception as exc:  # decided meanwhile, or the responder failed: say so
            log.warning("approval timeout on incident %s, %s: %s", incident.id, what, exc)
            outcomes.append(f"{what}: {mode} failed ({exc})")
    async with service.db.session() as session:
        enqueue(
            session,
            Note(what="timeout", incident_id=incident.id, minutes=waited, outcomes=outcomes),
            incident_id=incident.id,
        )
        audit.record(
            session,
            actor=SLA_ACTOR,
            verb="approval.timeout",
            target=",".join(f"{p.responder}:{p.target}" for p in waiting)[:255],
            incident_id=incident.id,
            minutes=round(waited, 2),
            outcomes=outcomes,
        )
        await outbox.enqueue_card(session, incident.id)
        await session.commit()
    return True


async def _stopped(service: IncidentService, proposal: Proposal) -> str | None:
    """Why the timeout may not run ``proposal`` by itself now (None: it may)."""
    async with service.db.session() as session:
        return await act.stopped(session, service.policy, proposal.responder, admitted=False)


async def check(service: IncidentService, incident: Incident, now: datetime) -> bool:
    """Advance one incident's SLA; True when something was sent or decided."""
    if incident.approval_since is None:
        return False
    waiting = await pending(service, incident)
    if not waiting:
        return False
    sla = service.policy.approval_sla
    waited = minutes_between(incident.approval_since, now)
    stage = incident.approval_stage
    assert incident.id is not None
    if sla.timeout_minutes is not None and waited >= sla.timeout_minutes and stage < TIMED_OUT:
        return await _timeout(service, incident, waiting, waited)
    if sla.escalate_minutes is not None and waited >= sla.escalate_minutes and stage < ESCALATED:
        note = Note(
            what="escalation",
            incident_id=incident.id,
            channel=sla.escalate_channel,
            group=sla.escalate_group,
            minutes=waited,
        )
        return await _advance(service, incident, ESCALATED, note)
    if sla.remind_minutes is not None and waited >= sla.remind_minutes and stage < REMINDED:
        groups = [service.policy.rule(p.responder).approver_group for p in waiting]
        group = next((g for g in groups if g), sla.group)
        note = Note(what="reminder", incident_id=incident.id, group=group, minutes=waited)
        return await _advance(service, incident, REMINDED, note)
    return False


async def run_sla(service: IncidentService) -> int:
    """The scheduler's job: every waiting approval, one at a time (a failure is logged and
    the others go on). Returns how many incidents moved."""
    now = service.now()
    async with service.db.session() as session:
        waiting = (
            await session.exec(
                select(Incident).where(
                    Incident.status == IncidentStatus.open.value,
                    col(Incident.approval_since).is_not(None),
                    col(Incident.approval_stage) < TIMED_OUT,
                    col(Incident.decision).in_(
                        [Decision.ask_approval.value, Decision.auto_act.value]
                    ),
                )
            )
        ).all()
    moved = 0
    for incident in waiting:
        try:
            moved += await check(service, incident, as_utc(now))
        except Exception:
            log.exception("approval SLA of incident %s failed", incident.id)
    if moved:
        service.kick()
    return moved
