"""Act: run a responder at most once per proposal, with authorisation, audit and undo.

Each (incident, responder, target) proposal is decided once: its Action row carries a
unique idempotency key, so a double click, a retry or a second replica finds the existing
row instead of acting twice. A Deny takes the same key, so a denied proposal cannot later
be run. Undo is guarded by a conditional status change for the same reason.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import audit, controls, outbox
from pipeline.clock import as_utc
from pipeline.db import Database
from pipeline.errors import InputError, NotAuthorized, ResponderError
from pipeline.models import (
    Action,
    ActionStatus,
    Incident,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    utcnow,
)
from pipeline.observables import unsafe_characters
from pipeline.plugins import Responder, acting_for
from pipeline.policy import Policy
from pipeline.records import Proposal, dump_proposals, proposals_of

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "fido"
SLA_ACTOR = "fido:sla"  # the approval SLA, running a proposal nobody decided in time


def idempotency_key(incident_id: int, responder: str, target: str) -> str:
    return f"incident:{incident_id}:{responder}:{target.casefold()}"


async def authorize(
    db: Database, *, actor: str, approvers: Collection[str], verb: str, incident_id: int | None
) -> None:
    """Refuse (and audit the refusal) unless ``actor`` is an approver. Slack ids are
    ASCII: they are compared exactly after NFKC, so only a full-width spelling in the
    settings is forgiven, never a case change or an invisible character."""
    presented = unicodedata.normalize("NFKC", actor)
    if any(presented == unicodedata.normalize("NFKC", a) for a in approvers):
        return
    async with db.session() as session:
        audit.record(session, actor=actor, verb="refused", target=verb, incident_id=incident_id)
        await session.commit()
    what = verb if " " in verb else f"{verb} this"  # "approve ad_disable_account", "close this"
    raise NotAuthorized(f"you are not an approver, so you cannot {what}")


async def _proposal(db: Database, *, incident_id: int, responder: str, target: str) -> Proposal:
    async with db.session() as session:
        incident = await session.get(Incident, incident_id)
    if incident is None:
        raise InputError(f"incident {incident_id} does not exist")
    wanted = Proposal(responder=responder, target=target)
    for proposal in proposals_of(incident.proposed_actions):
        if proposal.same_action(wanted):
            return proposal
    raise InputError(f"{responder} on {target} was not proposed for incident {incident_id}")


async def _claim(
    db: Database, *, incident_id: int, responder: str, target: str, **fields: object
) -> tuple[Action, bool]:
    """Insert the proposal's Action row; return (row, True) or (existing row, False)."""
    key = idempotency_key(incident_id, responder, target)
    async with db.session() as session:
        action = Action(
            incident_id=incident_id,
            responder=responder,
            target=target,
            idempotency_key=key,
            replica=db.replica,  # the replica running it, should it die meanwhile
            **fields,  # type: ignore[arg-type]
        )
        session.add(action)
        try:
            await session.commit()
            return action, True
        except IntegrityError:
            await session.rollback()
        existing = (await session.exec(select(Action).where(Action.idempotency_key == key))).one()
        return existing, False


def _runner(
    policy: Policy, responders: Mapping[str, Responder], responder: str, target: str
) -> Responder:
    """The responder to run on ``target``, or ResponderError when Fido must not."""
    if (unsafe := unsafe_characters(target)) is not None:
        raise ResponderError(f"{target!r} {unsafe}; Fido never acts on a look-alike target")
    if policy.is_protected(target):
        raise ResponderError(f"{target} is a protected account; Fido never acts on it")
    runner = responders.get(responder)
    if runner is None:
        raise ResponderError(f"responder {responder!r} is not enabled")
    return runner


async def execute(
    *,
    db: Database,
    policy: Policy,
    responders: Mapping[str, Responder],
    incident_id: int,
    responder: str,
    target: str,
    requested_by: str,
    approved_by: str | None,
) -> Action:
    """Run the proposal once and return its Action (the earlier one if it already ran)."""
    await _proposal(db, incident_id=incident_id, responder=responder, target=target)
    runner = _runner(policy, responders, responder, target)
    action, new = await _claim(
        db,
        incident_id=incident_id,
        responder=responder,
        target=target,
        requested_by=requested_by,
        approved_by=approved_by,
        approvals=[approved_by] if approved_by else [],
    )
    if not new:
        return action
    return await _run(db, policy, runner, action, actor=approved_by or requested_by)


async def approve(
    *,
    db: Database,
    policy: Policy,
    responders: Mapping[str, Responder],
    incident_id: int,
    responder: str,
    target: str,
    actor: str,
) -> Action:
    """An approver's click: run the proposal, or — when it needs two people — record the
    first approval and run it on the second, distinct one. A click on a proposal already
    decided (or approved by this approver already) is refused with what happened."""
    proposal = await _proposal(db, incident_id=incident_id, responder=responder, target=target)
    runner = _runner(policy, responders, responder, target)
    first = ActionStatus.awaiting_second if proposal.two_person else ActionStatus.running
    action, new = await _claim(
        db,
        incident_id=incident_id,
        responder=responder,
        target=target,
        requested_by=actor,
        approved_by=None if proposal.two_person else actor,
        approvals=[actor],
        status=first.value,
    )
    if new and not proposal.two_person:
        return await _run(db, policy, runner, action, actor=actor)
    if new:
        async with db.session() as session:
            audit.record(
                session,
                actor=actor,
                verb="action.approved_once",
                target=f"{responder}:{target}",
                incident_id=incident_id,
            )
            await outbox.enqueue_card(session, incident_id)  # "approved by …; one more"
            await session.commit()
        return action
    if action.status != ActionStatus.awaiting_second.value:
        who = action.approved_by or action.requested_by
        raise InputError(f"{responder} on {target} is already decided: {action.status} ({who})")
    if actor in action.approvals:
        raise InputError("you approved this already: a second, different approver must approve")
    async with db.session() as session:
        won = await session.exec(
            update(Action)
            .where(
                col(Action.id) == action.id,
                col(Action.status) == ActionStatus.awaiting_second.value,
            )
            .values(
                status=ActionStatus.running.value,
                replica=db.replica,
                approved_by=actor,
                approvals=[*action.approvals, actor],
                updated_at=utcnow(),
            )
        )
        await session.commit()
    if won.rowcount != 1:
        raise InputError(f"{responder} on {target} was decided by someone else just now")
    action.status, action.approved_by = ActionStatus.running.value, actor
    action.approvals = [*action.approvals, actor]
    action.replica = db.replica
    return await _run(db, policy, runner, action, actor=actor)


async def _run(
    db: Database, policy: Policy, runner: Responder, action: Action, *, actor: str
) -> Action:
    """Run a claimed action (or only say what it would do in dry-run) and record it."""
    assert action.id is not None
    rule = policy.rule(action.responder)
    status, undo_data = ActionStatus.failed, {}
    expires_at = None
    try:
        if policy.dry_run or rule.dry_run:
            status = ActionStatus.dry_run
            summary = f"dry run: would have done this: {runner.plan(action.target)}"
        else:
            with acting_for(action.incident_id):
                result = await runner.execute(action.target)
            status, summary, undo_data = ActionStatus.succeeded, result.summary, result.undo_data
            if rule.expire_after_hours is not None and runner.reversible:
                expires_at = utcnow() + timedelta(hours=rule.expire_after_hours)
    except ResponderError as exc:
        summary = str(exc)
    except Exception as exc:  # a responder's bug is recorded as a failed action
        log.exception("responder %s crashed on %s", action.responder, action.target)
        summary = f"{type(exc).__name__}: {exc}"
    async with db.session() as session:
        action.status, action.result, action.undo_data = status.value, summary, undo_data
        action.expires_at = expires_at
        action.updated_at = utcnow()
        session.add(action)
        audit.record(
            session,
            actor=actor,
            verb=f"action.{status.value}",
            target=f"{action.responder}:{action.target}",
            incident_id=action.incident_id,
            result=summary,
            requested_by=action.requested_by,
            approvals=list(action.approvals),
            expires_at=expires_at.isoformat() if expires_at else None,
        )
        if action.incident_id is not None:
            await outbox.enqueue_card(session, action.incident_id)  # the card shows the result
        await session.commit()
    return action


async def respond(
    *,
    db: Database,
    policy: Policy,
    responders: Mapping[str, Responder],
    responder: str,
    target: str,
    operator: str,
    dry_run: bool = False,
) -> tuple[Action, bool]:
    """Run a responder from the command line, belonging to no incident, under the same
    rules (protected accounts, look-alikes), idempotency and audit as a click: while an
    earlier run on the same target still holds (succeeded, not undone), it is returned
    instead of acting again. Returns (action, whether it ran now)."""
    runner = _runner(policy, responders, responder, target)
    async with db.session() as session:
        earlier = (
            await session.exec(
                select(Action).where(
                    col(Action.incident_id).is_(None),
                    Action.responder == responder,
                    func.lower(Action.target) == target.casefold(),
                )
            )
        ).all()
    holding = [a for a in earlier if a.status in (ActionStatus.succeeded, ActionStatus.running)]
    if holding:
        return holding[0], False
    key = f"manual:{responder}:{target.casefold()}:{len(earlier) + 1}"
    action = Action(
        incident_id=None,
        responder=responder,
        target=target,
        requested_by=operator,
        approved_by=operator,
        approvals=[operator],
        idempotency_key=key,
        replica=db.replica,
    )
    async with db.session() as session:
        session.add(action)
        try:
            await session.commit()
        except IntegrityError:  # another operator ran it at the same moment
            await session.rollback()
            existing = (
                await session.exec(select(Action).where(Action.idempotency_key == key))
            ).one()
            return existing, False
    if dry_run:
        policy = policy.model_copy(update={"dry_run": True})
    return await _run(db, policy, runner, action, actor=operator), True


async def deny(
    *, db: Database, incident_id: int, responder: str, target: str, actor: str
) -> Action:
    await _proposal(db, incident_id=incident_id, responder=responder, target=target)
    action, new = await _claim(
        db,
        incident_id=incident_id,
        responder=responder,
        target=target,
        requested_by=actor,
        approved_by=actor,
        status=ActionStatus.denied.value,
        result=f"denied by {actor}",
    )
    if not new:  # a two-person action approved once may still be denied
        async with db.session() as session:
            won = await session.exec(
                update(Action)
                .where(
                    col(Action.id) == action.id,
                    col(Action.status) == ActionStatus.awaiting_second.value,
                )
                .values(status=ActionStatus.denied.value, result=f"denied by {actor}")
            )
            await session.commit()
        if won.rowcount != 1:
            who = action.approved_by or action.requested_by
            raise InputError(f"{responder} on {target} is already decided: {action.status} ({who})")
        action.status, action.result = ActionStatus.denied.value, f"denied by {actor}"
    async with db.session() as session:
        audit.record(
            session,
            actor=actor,
            verb="action.denied",
            target=f"{responder}:{target}",
            incident_id=incident_id,
        )
        await outbox.enqueue_card(session, incident_id)
        await session.commit()
    return action


async def undo(
    *, db: Database, responders: Mapping[str, Responder], action_id: int, actor: str
) -> Action:
    async with db.session() as session:
        action = await session.get(Action, action_id)
        if action is None:
            raise InputError(f"action {action_id} does not exist")
        runner = responders.get(action.responder)
        if runner is None:
            raise ResponderError(f"responder {action.responder!r} is not enabled")
        won = await session.exec(
            update(Action)
            .where(col(Action.id) == action_id, col(Action.status) == ActionStatus.succeeded.value)
            .values(status=ActionStatus.undoing.value, replica=db.replica)
        )
        await session.commit()
    if won.rowcount != 1:
        return action  # already undone, being undone, or never succeeded
    try:
        with acting_for(action.incident_id):
            result = await runner.undo(action.target, action.undo_data)
        status, summary = ActionStatus.undone, result.summary
    except Exception as exc:  # keep the action undoable and say why it failed
        if not isinstance(exc, ResponderError):
            log.exception("undo of action %s crashed", action_id)
        status, summary = ActionStatus.succeeded, f"undo failed: {exc}"
    async with db.session() as session:
        action.status, action.result = status.value, summary
        action.undone_by = actor if status is ActionStatus.undone else None
        action.updated_at = utcnow()
        session.add(action)
        audit.record(
            session,
            actor=actor,
            verb=f"action.undo.{'ok' if status is ActionStatus.undone else 'failed'}",
            target=f"{action.responder}:{action.target}",
            incident_id=action.incident_id,
            result=summary,
        )
        if action.incident_id is not None:
            await outbox.enqueue_card(session, action.incident_id)
        await session.commit()
    if status is not ActionStatus.undone:
        raise ResponderError(summary)
    return action


async def automatic_counts(
    session: AsyncSession,
    switches: controls.Switches,
    *,
    queued: bool = True,
    within: timedelta = timedelta(hours=1),
) -> tuple[int, dict[str, int]]:
    """Automatic actions of the last ``within`` (caller's transaction): in all, and per
    responder since an approver last reset its cap. Counted: those that ran or are running
    (by triage or by the approval SLA's default) and, with ``queued``, those still waiting
    in the outbox — each proposal once, however often it was queued."""
    now = utcnow()
    ran = await session.exec(
        select(Action.idempotency_key, Action.responder, Action.created_at).where(
            col(Action.requested_by).in_([SYSTEM_ACTOR, SLA_ACTOR]),
            col(Action.created_at) >= now - within,
        )
    )
    seen = {key: (responder, as_utc(created)) for key, responder, created in ran.all()}
    if queued:
        waiting = await session.exec(
            select(OutboxMessage.incident_id, OutboxMessage.payload).where(
                OutboxMessage.kind == OutboxKind.act.value,
                OutboxMessage.status == OutboxStatus.pending.value,
            )
        )
        for incident_id, payload in waiting.all():
            proposal = Proposal.model_validate(payload)
            key = idempotency_key(incident_id or 0, proposal.responder, proposal.target)
            seen.setdefault(key, (proposal.responder, now))
    by_responder: dict[str, int] = {}
    for responder, when in seen.values():
        reset = switches.reset_at.get(responder)
        if reset is None or when >= reset:
            by_responder[responder] = by_responder.get(responder, 0) + 1
    return len(seen), by_responder


async def stopped(
    session: AsyncSession, policy: Policy, responder: str, *, admitted: bool
) -> str | None:
    """Why an automatic action of ``responder`` may not run now, or None.

    ``admitted``: triage queued it within the caps, so it is counted already among the
    queued ones, and a cap tripped after it was queued (by a later alert of the same burst)
    does not stop it; only what ran since may. Otherwise (the approval SLA acting by
    default) it is a new automatic action: a tripped cap stops it, and so does a count
    that it would take past the cap."""
    switches = await controls.read(session)
    rule = policy.rule(responder)
    if switches.paused:
        return f"automatic action is paused by <@{switches.paused_by}>"
    if not rule.auto:
        return f"{responder} always asks"
    if not admitted and responder in switches.tripped:
        return f"{responder} is past its hourly cap until an approver resets it"
    total, counts = await automatic_counts(session, switches, queued=not admitted)
    cap = rule.max_auto_per_hour
    if cap is not None and counts.get(responder, 0) >= cap:
        return f"{responder} reached its cap of {cap} automatic actions per hour"
    if total >= (most := policy.max_auto_actions_per_hour):
        return f"the cap of {most} automatic actions per hour is reached"
    return None


async def run_automatic(
    *,
    db: Database,
    policy: Policy,
    responders: Mapping[str, Responder],
    incident_id: int,
    proposal: Proposal,
) -> Action | None:
    """Run an automatic action triage queued — unless automatic action was paused, its rule
    made to ask, or its hourly cap used up since: then it asks instead (None). The
    proposal gets its Approve button back, the card and the audit log say why."""
    key = idempotency_key(incident_id, proposal.responder, proposal.target)
    async with db.session() as session:
        decided = (await session.exec(select(Action).where(Action.idempotency_key == key))).first()
        why = None if decided else await stopped(session, policy, proposal.responder, admitted=True)
        if why is not None:
            await _ask_instead(session, incident_id, proposal, why)
            await session.commit()
            return None
    return await execute(
        db=db,
        policy=policy,
        responders=responders,
        incident_id=incident_id,
        requested_by=SYSTEM_ACTOR,
        approved_by=None,
        responder=proposal.responder,
        target=proposal.target,
    )


async def _ask_instead(
    session: AsyncSession, incident_id: int, proposal: Proposal, why: str
) -> None:
    """Turn a queued automatic action back into a request for approval (not committed)."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        return
    what = f"{proposal.responder} on {proposal.target}"
    incident.proposed_actions = dump_proposals(
        p.model_copy(update={"automatic": False}) if p.same_action(proposal) else p
        for p in proposals_of(incident.proposed_actions)
    )
    incident.decision_reason = f"{incident.decision_reason or ''}; asking for {what}: {why}"
    incident.updated_at = utcnow()
    session.add(incident)
    audit.record(
        session,
        actor=SYSTEM_ACTOR,
        verb="action.asked_instead",
        target=f"{proposal.responder}:{proposal.target}",
        incident_id=incident_id,
        reason=why,
    )
    await outbox.enqueue_card(session, incident_id)


async def action(db: Database, action_id: int) -> Action | None:
    async with db.session(durable=False) as session:  # a read: nothing to make durable
        return await session.get(Action, action_id)


async def held(db: Database, responder: str) -> list[tuple[str, dict[str, Any]]]:
    """The containments ``responder`` has in force: succeeded, not undone (target, undo
    data), oldest first."""
    async with db.session() as session:
        rows = await session.exec(
            select(Action)
            .where(Action.responder == responder, Action.status == ActionStatus.succeeded.value)
            .order_by(col(Action.id))
        )
        return [(a.target, dict(a.undo_data or {})) for a in rows.all()]


async def actions_for(db: Database, *, incident_id: int) -> list[Action]:
    async with db.session(durable=False) as session:  # a read: nothing to make durable
        return await actions_in(session, incident_id=incident_id)


async def actions_in(session: AsyncSession, *, incident_id: int) -> list[Action]:
    rows = await session.exec(
        select(Action).where(Action.incident_id == incident_id).order_by(col(Action.id))
    )
    return list(rows.all())
