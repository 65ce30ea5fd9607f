"""Where Fido's messages go, and the messages beyond the card.

**Placing a card** (``place``, called by triage for every assessment, in its transaction):
an incident not yet posted gets its channel from the policy's ``routing`` rules (kept in
``message_channel``, so the notifier posts there and every later update and thread reply
follows it); an incident scoring below ``digest.below`` gets no card of its own (the
digest lists it) unless it asks for approval; an approval starts its SLA clock; an alert
the policy asks the affected user about queues that question (``pipeline/ask.py``).

**Messages** are outbox rows of kind ``message`` whose payload is one of the typed
records below; the outbox sender hands them to :func:`deliver`, which renders what the
record needs from the database and gives it to a :class:`Messenger` (the Slack notifier):

- :class:`ThreadUpdate` — "what happened since the last reply", posted in the card's
  thread; one row stands for every event until it is sent, and triage holds it back a few
  seconds, so a storm costs one reply per incident every few seconds, never a message per
  alert;
- :class:`Digest` — the low-score incidents of an interval, in one message;
- :class:`Ask` — the "was this you?" direct message to an affected user;
- :class:`Note` — a reminder, an escalation, a timeout or a user's answer, in the card's
  thread or another channel.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Annotated, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import bindparam, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.enrich import facts_for
from pipeline.models import (
    Decision,
    Event,
    EventStatus,
    Incident,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
)
from pipeline.observables import Observables
from pipeline.policy import Policy, RouteRule
from pipeline.records import enrichment_of

log = logging.getLogger(__name__)

TITLES_SHOWN = 3  # distinct alert titles named in a thread reply


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ThreadUpdate(_Record):
    """Tell the card's thread what happened since the last reply (rendered when sent)."""

    type: Literal["thread_update"] = "thread_update"


class ThreadNews(_Record):
    """A thread update as rendered: the events since the last reply."""

    type: Literal["thread_news"] = "thread_news"
    incident_id: int
    new_events: int
    total_events: int
    by_detector: dict[str, int]
    titles: list[str]
    score: int
    decision: str | None


class DigestItem(_Record):
    incident_id: int
    title: str
    severity: str
    score: int
    events: int
    detectors: list[str]


class Digest(_Record):
    """The incidents that scored too low for a card of their own, since the last digest."""

    type: Literal["digest"] = "digest"
    channel: str | None = None  # None: the default channel
    items: list[DigestItem]
    more: int = 0  # left out of this message (they are in the next one)


class Ask(_Record):
    """Ask the user of ``check_id`` (a UserCheck row) whether it was them."""

    type: Literal["ask"] = "ask"
    check_id: int


class AskDM(_Record):
    """The question as rendered: who to find in Slack, and what to ask them about."""

    type: Literal["ask_dm"] = "ask_dm"
    check_id: int
    incident_id: int
    account: str
    email: str
    title: str
    detectors: list[str]
    observables: dict[str, list[str]]


NoteKind = Literal["reminder", "escalation", "timeout", "answer"]


class Note(_Record):
    """A line about an incident: in its card's thread, or in ``channel`` when set."""

    type: Literal["note"] = "note"
    what: NoteKind
    incident_id: int
    channel: str | None = None
    group: str | None = None  # a Slack user group (S…) to mention
    minutes: float | None = None  # how long the approval has waited
    account: str | None = None  # the user who answered
    answer: str | None = None  # a UserAnswer value
    outcomes: list[str] = Field(default_factory=list)  # what the timeout did, one per action
    broadcast: bool = False  # show the thread reply in the channel too


Payload = Annotated[ThreadUpdate | Digest | Ask | Note, Field(discriminator="type")]
Message = ThreadNews | Digest | AskDM | Note
PAYLOAD: TypeAdapter[ThreadUpdate | Digest | Ask | Note] = TypeAdapter(Payload)


class Sent(BaseModel):
    """Where a message went; ``user`` is the Slack user a direct message found (None when
    no Slack account has the e-mail: the message was not sent, and is not retried)."""

    channel: str | None = None
    ts: str | None = None
    user: str | None = None


@runtime_checkable
class Messenger(Protocol):
    async def send(self, message: Message, *, incident: Incident | None) -> Sent:
        """Send ``message`` (about ``incident``, which holds where its card lives); raise
        :class:`~pipeline.errors.DeliveryError` for the outbox to retry."""
        ...


def enqueue(
    session: AsyncSession,
    payload: ThreadUpdate | Digest | Ask | Note,
    *,
    incident_id: int | None,
    not_before: datetime | None = None,
) -> None:
    """Send ``payload``, in the caller's transaction (kept in order behind the incident's
    earlier rows when it names one)."""
    session.add(
        OutboxMessage(
            incident_id=incident_id,
            kind=OutboxKind.message.value,
            payload=payload.model_dump(mode="json"),
            not_before=not_before,
        )
    )


# built once (a statement is costly to build); the incident is a parameter
_WAITING_MESSAGES = select(OutboxMessage.payload).where(
    OutboxMessage.incident_id == bindparam("incident_id"),
    OutboxMessage.kind == OutboxKind.message.value,
    OutboxMessage.status == OutboxStatus.pending.value,
    col(OutboxMessage.claimed_until).is_(None),
)


async def enqueue_thread_update(
    session: AsyncSession,
    incident: Incident,
    *,
    not_before: datetime,
    joining: Collection[int] = (),
) -> None:
    """A reply in the card's thread about the events since the last one, held back until
    ``not_before``; one waiting row covers every event until it is sent. ``joining``: the
    events joining the incident in the caller's transaction (the card has not shown them)."""
    assert incident.id is not None
    waiting = (await session.exec(_WAITING_MESSAGES, params={"incident_id": incident.id})).all()
    if any((payload or {}).get("type") == "thread_update" for payload in waiting):
        return
    if incident.thread_event_id is None:  # the first reply: the card showed what was done
        incident.thread_event_id = (
            await session.exec(
                select(func.max(Event.id)).where(
                    Event.incident_id == incident.id,
                    Event.status == EventStatus.done.value,
                    col(Event.id).not_in(joining),
                )
            )
        ).one()
        session.add(incident)
    enqueue(session, ThreadUpdate(), incident_id=incident.id, not_before=not_before)


# -- placing a card ----------------------------------------------------------------------


def _teams(incident: Incident) -> set[str]:
    """The ``team`` and ``department`` facts of the incident's users and hosts."""
    enrichment = enrichment_of(incident.enrichment)
    observables = Observables.model_validate(incident.observables)
    found: set[str] = set()
    for kind, values in (("user", observables.users), ("host", observables.hosts)):
        for value in values:
            facts = facts_for(enrichment, Observables.key(kind, value))  # type: ignore[arg-type]
            for fact in ("team", "department"):
                if isinstance(facts.get(fact), str) and facts[fact].strip():
                    found.add(facts[fact].strip().casefold())
    return found


def matches(rule: RouteRule, incident: Incident) -> bool:
    if rule.severities and incident.severity not in rule.severities:
        return False
    if rule.detectors and not set(rule.detectors) & set(incident.detectors or []):
        return False
    if not rule.min_score <= incident.score <= rule.max_score:
        return False
    return not rule.teams or bool({t.casefold() for t in rule.teams} & _teams(incident))


def channel_for(incident: Incident, policy: Policy) -> str | None:
    """The channel the policy routes ``incident`` to (None: the default channel)."""
    for rule in policy.routing.rules:
        if matches(rule, incident):
            return rule.channel
    return policy.routing.default


def individual(incident: Incident, policy: Policy) -> bool:
    """Whether ``incident`` gets a card of its own now (else it waits for the digest)."""
    if incident.message_ts is not None:
        return True  # posted already: it is kept up to date
    if incident.decision in (None, Decision.record.value):
        return False
    if incident.decision in (Decision.ask_approval.value, Decision.auto_act.value):
        return True
    return incident.score >= policy.digest.below


async def place(
    session: AsyncSession, incident: Incident, policy: Policy, *, now: datetime
) -> bool:
    """Route, start the approval clock, ask the user where the policy says so; return
    whether the incident's card is posted or updated (triage's ``publish``)."""
    from pipeline import ask  # it enqueues through this module

    if incident.message_ts is None:
        incident.message_channel = channel_for(incident, policy)
    waiting = incident.decision in (Decision.ask_approval.value, Decision.auto_act.value)
    if waiting and incident.proposed_actions and incident.approval_since is None:
        incident.approval_since = now
    if incident.suppressed_by is None:
        await ask.consider(session, incident, policy)
    session.add(incident)
    return individual(incident, policy)


# -- delivering messages -------------------------------------------------------------------


async def deliver(
    row: OutboxMessage,
    *,
    db: Database,
    messenger: Messenger | None,
    clock: Clock = system_clock,
) -> None:
    """Deliver one ``message`` row (raises for the outbox to retry)."""
    payload = PAYLOAD.validate_python(row.payload)
    if messenger is None:  # no Slack (the CLI, the demo): like a card, told to no one
        log.info("no messenger: outbox message %s (%s) not sent", row.id, payload.type)
        return
    incident = None
    about = row.incident_id or (payload.incident_id if isinstance(payload, Note) else None)
    if about is not None:
        async with db.session() as session:
            incident = await session.get(Incident, about)
        if incident is None:
            return
    if isinstance(payload, ThreadUpdate):
        assert incident is not None
        await _thread_update(db, messenger, incident)
    elif isinstance(payload, Ask):
        from pipeline import ask

        await ask.deliver(db, messenger, payload, clock=clock)
    else:
        await messenger.send(payload, incident=incident)


async def _thread_update(db: Database, messenger: Messenger, incident: Incident) -> None:
    if incident.message_ts is None:
        return  # not posted: its card will show everything
    async with db.session() as session:
        query = select(Event).where(Event.incident_id == incident.id)
        if incident.thread_event_id is not None:
            query = query.where(col(Event.id) > incident.thread_event_id)
        events: Sequence[Event] = (await session.exec(query.order_by(col(Event.id)))).all()
    if not events:
        return
    assert incident.id is not None
    titles = list(dict.fromkeys(e.title for e in events))
    news = ThreadNews(
        incident_id=incident.id,
        new_events=len(events),
        total_events=max(incident.event_count, len(events)),
        by_detector=dict(Counter(e.detector for e in events)),
        titles=titles[:TITLES_SHOWN],
        score=incident.score,
        decision=incident.decision,
    )
    await messenger.send(news, incident=incident)
    last = max(e.id or 0 for e in events)
    async with db.session(durable=False) as session:
        fresh = await session.get(Incident, incident.id)
        if fresh is not None and (fresh.thread_event_id or 0) < last:
            fresh.thread_event_id = last
            session.add(fresh)
            await session.commit()


def minutes_between(start: datetime, end: datetime) -> float:
    return (as_utc(end) - as_utc(start)).total_seconds() / 60
