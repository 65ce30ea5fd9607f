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

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import audit, outbox
from pipeline.db import Database
from pipeline.errors import InputError, NotAuthorized, ResponderError
from pipeline.models import Action, ActionStatus, Incident, utcnow
from pipeline.observables import unsafe_characters
from pipeline.plugins import Responder
from pipeline.policy import Policy
from pipeline.records import Proposal, proposals_of

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "fido"


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
    raise NotAuthorized(f"you are not an approver, so you cannot {verb} this")


async def _proposal(db: Database, *, incident_id: int, responder: str, target: str) -> Incident:
    async with db.session() as session:
        incident = await session.get(Incident, incident_id)
    if incident is None:
        raise InputError(f"incident {incident_id} does not exist")
    if Proposal(responder=responder, target=target) not in proposals_of(incident.proposed_actions):
        raise InputError(f"{responder} on {target} was not proposed for incident {incident_id}")
    return incident


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
    if (unsafe := unsafe_characters(target)) is not None:
        raise ResponderError(f"{target!r} {unsafe}; Fido never acts on a look-alike target")
    if policy.is_protected(target):
        raise ResponderError(f"{target} is a protected account; Fido never acts on it")
    runner = responders.get(responder)
    if runner is None:
        raise ResponderError(f"responder {responder!r} is not enabled")
    action, new = await _claim(
        db,
        incident_id=incident_id,
        responder=responder,
        target=target,
        requested_by=requested_by,
        approved_by=approved_by,
    )
    if not new:
        return action
    status, undo_data = ActionStatus.failed, {}
    try:
        if policy.dry_run:
            status, summary = ActionStatus.dry_run, f"dry run: would {runner.label} {target}"
        else:
            result = await runner.execute(target)
            status, summary, undo_data = ActionStatus.succeeded, result.summary, result.undo_data
    except ResponderError as exc:
        summary = str(exc)
    except Exception as exc:  # a responder's bug is recorded as a failed action
        log.exception("responder %s crashed on %s", responder, target)
        summary = f"{type(exc).__name__}: {exc}"
    async with db.session() as session:
        action.status, action.result, action.undo_data = status.value, summary, undo_data
        action.updated_at = utcnow()
        session.add(action)
        audit.record(
            session,
            actor=approved_by or requested_by,
            verb=f"action.{status.value}",
            target=f"{responder}:{target}",
            incident_id=incident_id,
            result=summary,
            requested_by=requested_by,
        )
        await outbox.enqueue_card(session, incident_id)  # the card shows the result
        await session.commit()
    return action


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
    if new:
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
            .values(status=ActionStatus.undoing.value)
        )
        await session.commit()
    if won.rowcount != 1:
        return action  # already undone, being undone, or never succeeded
    try:
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
        await outbox.enqueue_card(session, action.incident_id)
        await session.commit()
    if status is not ActionStatus.undone:
        raise ResponderError(summary)
    return action


async def auto_actions_since(
    session: AsyncSession, *, within: timedelta = timedelta(hours=1)
) -> int:
    """Automatic actions in the last ``within``, read in the caller's transaction."""
    count = await session.exec(
        select(func.count())
        .select_from(Action)
        .where(Action.requested_by == SYSTEM_ACTOR, col(Action.created_at) >= utcnow() - within)
    )
    return int(count.one())


async def actions_for(db: Database, *, incident_id: int) -> list[Action]:
    async with db.session() as session:
        rows = await session.exec(
            select(Action).where(Action.incident_id == incident_id).order_by(col(Action.id))
        )
        return list(rows.all())
