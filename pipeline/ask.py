"""Ask the affected user: "was this you?" — the cheapest signal a SOC has.

For an alert the policy selects (``ask_user.detectors``, or a title matching one of
``ask_user.titles``), each user the incident names gets a :class:`UserCheck` row and a
direct message through the outbox: the messenger finds their Slack account by their
directory e-mail (``users.lookupByEmail``) and sends **Yes, this was me** / **No, this
wasn't me**. The answer is a score signal (``pipeline/score.py`` reads the incident's
``user_answers``): "No" adds ``no_points`` and tells the channel at once; "Yes" subtracts;
no click within ``timeout_minutes`` counts as its own signal. Each user is asked once per
incident and can answer once, and only the Slack user the message was sent to can answer
it; every step is audited.
"""

from __future__ import annotations

import fnmatch
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import audit, outbox
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.enrich import facts_for
from pipeline.errors import InputError, NotAuthorized
from pipeline.models import Incident, IncidentStatus, UserAnswer, UserCheck
from pipeline.observables import Observables, account_name
from pipeline.policy import Policy
from pipeline.records import enrichment_of
from pipeline.routing import Ask, AskDM, Messenger, Note, enqueue

if TYPE_CHECKING:
    from pipeline.engine import Engine

log = logging.getLogger(__name__)

ASK_ACTOR = "fido:ask"
ANSWERS = (UserAnswer.yes, UserAnswer.no)


def selected(incident: Incident, policy: Policy) -> bool:
    """Whether the policy asks the user about alerts like ``incident``'s."""
    rules = policy.ask_user
    if set(rules.detectors) & set(incident.detectors or []):
        return True
    title = incident.title.casefold()
    return any(fnmatch.fnmatchcase(title, pattern.casefold()) for pattern in rules.titles)


def _set_answer(incident: Incident, account: str, status: UserAnswer) -> None:
    incident.user_answers = {**(incident.user_answers or {}), account: status.value}


async def consider(session: AsyncSession, incident: Incident, policy: Policy) -> int:
    """Queue the question for each user of ``incident`` not asked yet, when the policy
    selects it (in the triage's transaction); return how many were queued."""
    if incident.id is None or incident.status != IncidentStatus.open.value:
        return 0
    if not selected(incident, policy):
        return 0
    users = Observables.model_validate(incident.observables).users
    if not users:
        return 0
    asked = set(
        (
            await session.exec(
                select(UserCheck.account).where(UserCheck.incident_id == incident.id)
            )
        ).all()
    )
    enrichment = enrichment_of(incident.enrichment)
    queued = 0
    for user in users:
        if user in asked or account_name(user) in {account_name(a) for a in asked}:
            continue
        asked.add(user)
        facts = facts_for(enrichment, Observables.key("user", user))
        email = str(facts.get("mail") or facts.get("email") or "").strip() or None
        status = UserAnswer.asking if email else UserAnswer.unreachable
        check = UserCheck(
            incident_id=incident.id,
            account=user,
            email=email,
            status=status.value,
            note=None if email else "the directory has no e-mail for this user",
        )
        session.add(check)
        await session.flush()
        assert check.id is not None
        _set_answer(incident, user, status)
        audit.record(
            session,
            actor=ASK_ACTOR,
            verb="user.ask" if email else "user.unreachable",
            target=user,
            incident_id=incident.id,
            email=email,
        )
        if email:  # not in the incident's line: a failing DM never holds up its card
            enqueue(session, Ask(check_id=check.id), incident_id=None)
            queued += 1
    return queued


async def deliver(
    db: Database, messenger: Messenger, payload: Ask, *, clock: Clock = system_clock
) -> None:
    """Send the question (the outbox retries on error) and record where it went."""
    async with db.session() as session:
        check = await session.get(UserCheck, payload.check_id)
        if check is None or check.status != UserAnswer.asking.value or not check.email:
            return
        incident = await session.get(Incident, check.incident_id)
    if incident is None:
        return
    assert incident.id is not None
    dm = AskDM(
        check_id=payload.check_id,
        incident_id=incident.id,
        account=check.account,
        email=check.email,
        title=incident.title,
        detectors=list(incident.detectors or []),
        observables={k: list(v) for k, v in (incident.observables or {}).items() if v},
    )
    sent = await messenger.send(dm, incident=incident)
    now = as_utc(clock())
    async with db.session() as session:
        fresh = await session.get(UserCheck, payload.check_id)
        row = await session.get(Incident, incident.id)
        if fresh is None or row is None or fresh.status != UserAnswer.asking.value:
            return
        if sent.user is None:
            fresh.status = UserAnswer.unreachable.value
            fresh.note = f"no Slack account has the e-mail {check.email}"
        else:
            fresh.status = UserAnswer.asked.value
            fresh.slack_user, fresh.dm_channel, fresh.dm_ts = sent.user, sent.channel, sent.ts
            fresh.asked_at = now
        _set_answer(row, fresh.account, UserAnswer(fresh.status))
        session.add_all([fresh, row])
        audit.record(
            session,
            actor=ASK_ACTOR,
            verb="user.asked" if sent.user else "user.unreachable",
            target=fresh.account,
            incident_id=incident.id,
            slack_user=sent.user,
            note=fresh.note,
        )
        await outbox.enqueue_card(session, incident.id)
        await session.commit()


class TooLate(InputError):
    """An answer after the time to answer ran out. ``expired`` says whether this click
    turned the question into "no answer", so that the caller re-scores ``incident_id``."""

    def __init__(self, incident_id: int, *, expired: bool) -> None:
        super().__init__("the time to answer has passed; the security team will follow up")
        self.incident_id, self.expired = incident_id, expired


def _overdue(check: UserCheck, *, timeout_minutes: float, now: datetime) -> bool:
    """Whether ``check`` is still asked but past its time (the timeout job's own test)."""
    if check.status != UserAnswer.asked.value or check.asked_at is None:
        return False
    return as_utc(check.asked_at) <= now - timedelta(minutes=timeout_minutes)


async def answer(
    db: Database,
    *,
    check_id: int,
    actor: str,
    said: UserAnswer,
    timeout_minutes: float,
    clock: Clock = system_clock,
) -> UserCheck:
    """A click on Yes or No in the direct message. Only the user it was sent to may
    answer, once, and not after ``timeout_minutes``: a late click does what the timeout
    job would have (the job runs only every so often) and raises :class:`TooLate`.
    Refusals are audited. The caller re-scores the incident (``Engine.refresh``)."""
    if said not in ANSWERS:
        raise InputError("the answer is yes or no")
    now = as_utc(clock())
    async with db.session() as session:
        check = await session.get(UserCheck, check_id)
        if check is None:
            raise InputError("this question no longer exists")
        if check.slack_user is None or actor != check.slack_user:
            audit.record(
                session,
                actor=actor,
                verb="refused.user_answer",
                target=check.account,
                incident_id=check.incident_id,
            )
            await session.commit()
            raise NotAuthorized("only the user this question was sent to can answer it")
    if _overdue(check, timeout_minutes=timeout_minutes, now=now):
        expired = await _expire_one(db, check, timeout_minutes=timeout_minutes, now=now)
        raise TooLate(check.incident_id, expired=expired)
    async with db.session() as session:
        won = await session.exec(
            update(UserCheck)
            .where(
                col(UserCheck.id) == check_id,
                col(UserCheck.status) == UserAnswer.asked.value,
            )
            .values(status=said.value, answered_at=now)
        )
        if won.rowcount != 1:
            await session.rollback()
            check = await session.get(UserCheck, check_id)
            assert check is not None
            if check.status == UserAnswer.no_answer.value:
                raise TooLate(check.incident_id, expired=False)
            raise InputError(f"you answered already ({check.status})")
        incident = await session.get(Incident, check.incident_id)
        assert incident is not None and incident.id is not None
        _set_answer(incident, check.account, said)
        session.add(incident)
        audit.record(
            session,
            actor=actor,
            verb="user.answered",
            target=check.account,
            incident_id=incident.id,
            answer=said.value,
        )
        if said is UserAnswer.no:  # the channel hears it at once: not in line behind a
            enqueue(  # held-back card update or thread reply
                session,
                Note(
                    what="answer",
                    incident_id=incident.id,
                    account=check.account,
                    answer=said.value,
                    broadcast=True,
                ),
                incident_id=None,
            )
        await outbox.enqueue_card(session, incident.id)
        await session.commit()
        check.status, check.answered_at = said.value, now
    return check


async def expire(db: Database, *, policy: Policy, now: datetime) -> list[int]:
    """Mark questions unanswered past ``ask_user.timeout_minutes`` (a signal of its own);
    return the incidents to re-score."""
    minutes = policy.ask_user.timeout_minutes
    async with db.session() as session:
        due = (
            await session.exec(
                select(UserCheck).where(
                    UserCheck.status == UserAnswer.asked.value,
                    col(UserCheck.asked_at) <= now - timedelta(minutes=minutes),
                )
            )
        ).all()
    touched = [
        check.incident_id
        for check in due
        if await _expire_one(db, check, timeout_minutes=minutes, now=now)
    ]
    return sorted(set(touched))


async def _expire_one(
    db: Database, check: UserCheck, *, timeout_minutes: float, now: datetime
) -> bool:
    """Mark one question unanswered (audited, the card redrawn); False when it was
    answered meanwhile or another replica or click got there first."""
    async with db.session() as session:
        won = await session.exec(
            update(UserCheck)
            .where(
                col(UserCheck.id) == check.id,
                col(UserCheck.status) == UserAnswer.asked.value,
            )
            .values(status=UserAnswer.no_answer.value, answered_at=now)
        )
        if won.rowcount != 1:
            return False
        incident = await session.get(Incident, check.incident_id)
        if incident is not None:
            _set_answer(incident, check.account, UserAnswer.no_answer)
            session.add(incident)
        audit.record(
            session,
            actor=ASK_ACTOR,
            verb="user.no_answer",
            target=check.account,
            incident_id=check.incident_id,
            minutes=timeout_minutes,
        )
        await outbox.enqueue_card(session, check.incident_id)
        await session.commit()
    return True


async def checks_for(db: Database, incident_id: int) -> list[UserCheck]:
    async with db.session() as session:
        rows = await session.exec(
            select(UserCheck)
            .where(UserCheck.incident_id == incident_id)
            .order_by(col(UserCheck.id))
        )
        return list(rows.all())


async def run_timeouts(engine: Engine) -> int:
    """The scheduler's job: questions past their time count as unanswered, and their
    incidents are scored again. A failure is logged and retried next run."""
    try:
        touched = await expire(engine.db, policy=engine.policy, now=as_utc(engine.triage.clock()))
    except Exception:
        log.exception("asking the user: timeouts failed")
        return 0
    for incident_id in touched:
        try:
            await engine.refresh(incident_id)
        except Exception:
            log.exception("asking the user: re-scoring incident %s failed", incident_id)
    return len(touched)
