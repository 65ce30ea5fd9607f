"""The tables Fido keeps: Event, Incident, Action, AuditEntry.

JSON columns hold structured values (observables, enrichment, score breakdown); the raw
detector payload is kept verbatim as text. Relations are plain foreign keys queried
explicitly: nothing is lazy-loaded, so rows are safe to use after their session closes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

F = TypeVar("F", bound=Callable[..., Any])


def _factory(fn: F) -> F:
    """A column's default factory, with its signature worked out once.

    SQLModel builds a table row in Python and asks pydantic, for every default it fills
    in, whether the factory takes the validated data, by ``inspect.signature`` each time.
    For the built-in ``list`` that means parsing its text signature (about 0.2 ms a field,
    a millisecond per Incident); a function carrying ``__signature__`` answers at once.
    """
    fn.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return fn


@_factory
def utcnow() -> datetime:
    return datetime.now(UTC)


@_factory
def empty_dict() -> dict[str, Any]:
    return {}


@_factory
def empty_list() -> list[Any]:
    return []


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Severity(StrEnum):
    informational = "informational"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class EventStatus(StrEnum):
    pending = "pending"
    processing = "processing"
    done = "done"
    failed = "failed"


class IncidentStatus(StrEnum):
    open = "open"
    closed = "closed"


class CloseVerdict(StrEnum):
    """How an incident ended, given by the approver who closed it."""

    true_positive = "true_positive"  # real, handled
    false_positive = "false_positive"  # the detector was wrong
    benign = "benign"  # real activity, but expected or harmless


class Decision(StrEnum):
    record = "record"  # below the notify threshold: kept, not posted
    notify = "notify"
    ask_approval = "ask_approval"
    auto_act = "auto_act"


class ActionStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    denied = "denied"
    dry_run = "dry_run"
    undoing = "undoing"
    undone = "undone"
    awaiting_second = "awaiting_2nd"  # approved once; a second, different approver must too
    # its replica died while running it: whether it took effect is unknown; never re-run
    interrupted = "interrupted"


class Event(SQLModel, table=True):
    """One detector alert, as received, and its place in the work queue."""

    __table_args__ = (
        UniqueConstraint("detector", "external_id", name="uq_event_detector_xid"),
        # history's repeat lookup: the events of the incidents sharing a key, by detector,
        # within the last day (pipeline/history.py _repeats)
        Index("ix_event_incident_detector_received", "incident_id", "detector", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    detector: str = Field(index=True, max_length=64)
    external_id: str = Field(max_length=255)
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    occurred_at: datetime | None = _ts(nullable=True)
    severity: str = Field(default=Severity.medium.value, max_length=16)
    vendor_severity: str | None = Field(default=None, max_length=64)
    title: str = Field(sa_column=Column(Text, nullable=False))
    observables: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    raw: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=EventStatus.pending.value, index=True, max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    claimed_at: datetime | None = _ts(nullable=True)
    claim_token: str | None = Field(default=None, max_length=32)  # whose claim it is
    claimed_by: str | None = Field(default=None, max_length=128)  # the replica's name
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    suppressed_by: str | None = Field(default=None, max_length=160)  # a suppression's key


class Incident(SQLModel, table=True):
    """Events grouped together, with what Fido learnt and decided about them.

    The JSON columns hold the typed records of ``pipeline/records.py``: read them with
    ``enrichment_of``, ``breakdown_of``, ``proposals_of`` and ``history_of``."""

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    title: str = Field(sa_column=Column(Text, nullable=False))
    severity: str = Field(default=Severity.medium.value, max_length=16)
    status: str = Field(default=IncidentStatus.open.value, index=True, max_length=16)
    observables: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    enrichment: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    degraded: bool = False
    score: int = 0
    score_breakdown: list[dict[str, Any]] = Field(
        default_factory=empty_list, sa_column=Column(JSON)
    )
    decision: str | None = Field(default=None, max_length=16)
    proposed_actions: list[dict[str, Any]] = Field(
        default_factory=empty_list, sa_column=Column(JSON)
    )
    decision_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # bumped when the decision or the proposals change: a button drawn before is stale
    decision_version: int = Field(default=0)
    event_count: int = 0
    detectors: list[str] = Field(default_factory=empty_list, sa_column=Column(JSON))
    history: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    # where the incident's message lives (e.g. a Slack channel and message ts)
    message_channel: str | None = Field(default=None, max_length=64)
    message_ts: str | None = Field(default=None, max_length=64)
    suppressed_by: str | None = Field(default=None, max_length=160)
    verdict: str | None = Field(default=None, max_length=16)
    closed_at: datetime | None = _ts(nullable=True)
    closed_by: str | None = Field(default=None, max_length=64)
    close_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # the closed incident this one follows (a later alert about the same subjects)
    previous_id: int | None = Field(default=None, foreign_key="incident.id")
    # the last event told in the card's thread (pipeline/routing.py: thread updates)
    thread_event_id: int | None = Field(default=None)
    # when the incident went out in a digest instead of a card of its own (pipeline/digest.py)
    digest_at: datetime | None = _ts(nullable=True)
    # since when an approval has been waiting, and how far its SLA got (pipeline/sla.py)
    approval_since: datetime | None = _ts(nullable=True)
    approval_stage: int = Field(default=0)
    # what the affected users answered when asked "was this you?" (account → UserAnswer)
    user_answers: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))


class Action(SQLModel, table=True):
    """A containment action: asked for, approved or automatic, run at most once."""

    id: int | None = Field(default=None, primary_key=True)
    # None for an action run from the command line (``fido respond``)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    responder: str = Field(max_length=64)
    target: str = Field(max_length=255)
    requested_by: str = Field(max_length=64)
    approved_by: str | None = Field(default=None, max_length=64)
    status: str = Field(default=ActionStatus.running.value, max_length=16)
    # the replica (FIDO_REPLICA) that set it running: if that replica dies, the leader
    # marks it interrupted; None for ``fido respond``, which no replica watches
    replica: str | None = Field(default=None, max_length=128)
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    undo_data: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    undone_by: str | None = Field(default=None, max_length=64)
    # every approver, in order (two for a two-person action)
    approvals: list[str] = Field(default_factory=empty_list, sa_column=Column(JSON))
    # a time-boxed containment is undone by Fido at this moment unless extended
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )
    idempotency_key: str = Field(unique=True, max_length=255)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Control(SQLModel, table=True):
    """A switch an approver sets for every replica, kept across restarts: ``pause`` (no
    automatic action anywhere) and ``cap:RESPONDER`` (that responder's hourly cap tripped:
    it asks instead of acting until reset)."""

    key: str = Field(primary_key=True, max_length=96)
    value: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    set_by: str = Field(max_length=64)
    set_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Suppression(SQLModel, table=True):
    """A suppression made from Slack (policy ones live in the policy): alerts matching
    ``match`` are kept and attached, but post nothing and trigger nothing, until
    ``expires_at`` or until it is removed."""

    id: int | None = Field(default=None, primary_key=True)
    match: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    owner: str = Field(max_length=64)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    incident_id: int | None = Field(default=None, foreign_key="incident.id")  # made from
    removed_at: datetime | None = _ts(nullable=True)
    removed_by: str | None = Field(default=None, max_length=64)


class SuppressionHit(SQLModel, table=True):
    """How often a suppression (``db:ID`` or ``policy:NAME``) has silenced an alert."""

    __tablename__ = "suppression_hit"

    key: str = Field(primary_key=True, max_length=160)
    hits: int = 0
    last_hit_at: datetime | None = _ts(nullable=True)


class OutboxKind(StrEnum):
    card = "card"  # post or update the incident's message, rendered when sent
    act = "act"  # run an automatic containment action (payload: responder, target)
    notice = "notice"  # a message to the channel (payload: text), e.g. "automation paused"
    message = "message"  # a thread reply, digest, DM or reminder (payload: routing.Message)


class OutboxStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"  # gave up after its attempts; kept and shown, can be retried


class OutboxMessage(SQLModel, table=True):
    """Something Fido must send, written in the same transaction as the change that causes
    it and delivered by the outbox sender (``pipeline/outbox.py``): retried with backoff,
    ``Retry-After`` honoured, in order per incident."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    kind: str = Field(max_length=16)
    payload: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    status: str = Field(default=OutboxStatus.pending.value, index=True, max_length=16)
    attempts: int = 0
    not_before: datetime | None = _ts(nullable=True)  # None: at once
    claimed_until: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    sent_at: datetime | None = _ts(nullable=True)


class DeadLetterStatus(StrEnum):
    pending = "pending"  # waiting for a parser fix and `fido dead-letters retry`
    resolved = "resolved"  # a retry parsed it; its events are in the queue


class DeadLetter(SQLModel, table=True):
    """An authentic payload no parser could read: kept verbatim with the error."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    detector: str = Field(index=True, max_length=64)
    source: str = Field(default="webhook", max_length=64)
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    error: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=DeadLetterStatus.pending.value, index=True, max_length=16)
    attempts: int = 1
    retried_at: datetime | None = _ts(nullable=True)


class SourceCursor(SQLModel, table=True):
    """Where a polled source (API, SQL, log file, mailbox) got to, so a restart resumes."""

    __tablename__ = "source_cursor"

    name: str = Field(primary_key=True, max_length=128)
    cursor: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AuditEntry(SQLModel, table=True):
    """Append-only record of who did what to what, and when, hash-chained: ``hash`` is the
    SHA-256 of the entry's canonical form, which includes ``prev_hash``, the hash of the
    entry before it (``pipeline/audit.py``). Write entries with ``audit.record``: the id
    and both hashes are given when the transaction commits."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    actor: str = Field(max_length=64)
    verb: str = Field(index=True, max_length=64)
    target: str = Field(default="", max_length=255)
    incident_id: int | None = Field(default=None, index=True)
    detail: dict[str, Any] = Field(default_factory=empty_dict, sa_column=Column(JSON))
    # hex SHA-256; None only until the entry joins the chain at commit (NOT NULL in the table)
    prev_hash: str | None = Field(default=None, max_length=64, nullable=False)
    hash: str | None = Field(default=None, max_length=64, nullable=False)


class LookupCache(SQLModel, table=True):
    """One enricher's answer about one indicator, kept until ``expires_at``.

    Shared by replicas and kept across restarts. ``key`` is a digest of (enricher, kind,
    canonical value) so long URLs index well; ``found`` False is a cached "not known"."""

    __tablename__ = "lookup_cache"

    key: str = Field(primary_key=True, max_length=64)
    enricher: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    value: str = Field(sa_column=Column(Text, nullable=False))
    found: bool = True
    facts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    fetched_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


class LookupQuota(SQLModel, table=True):
    """Calls made to a provider in one fixed window (period "minute" or "day", ``slot`` the
    epoch minute or day), counted here so every replica shares one quota. The period
    "blocked" holds, in ``used``, the epoch second until which the provider asked us to wait."""

    __tablename__ = "lookup_quota"

    provider: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=16)
    slot: int = Field(primary_key=True)
    used: int = 0


class DeferredLookup(SQLModel, table=True):
    """A lookup that could not be made yet (quota, 429): made by ``run_deferred`` once due."""

    __tablename__ = "deferred_lookup"

    key: str = Field(primary_key=True, max_length=64)  # the LookupCache key it will fill
    enricher: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    value: str = Field(sa_column=Column(Text, nullable=False))
    not_before: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class LookupWaiter(SQLModel, table=True):
    """An incident waiting for a deferred answer: its facts under ``enricher`` for
    ``kind:value`` say pending until the LookupCache row ``key`` is filled."""

    __tablename__ = "lookup_waiter"

    id: str = Field(primary_key=True, max_length=64)  # digest of (incident, enricher, kind, value)
    key: str = Field(index=True, max_length=64)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    enricher: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    value: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class IncidentKey(SQLModel, table=True):
    """What an incident can be joined by (``user:alice``, ``host:pc-1``): correlation looks
    keys up by index instead of reading every open incident."""

    __tablename__ = "incident_key"

    key: str = Field(primary_key=True, max_length=320)
    incident_id: int = Field(foreign_key="incident.id", primary_key=True, index=True)


class UserAnswer(StrEnum):
    """Where asking an affected user "was this you?" stands (pipeline/ask.py)."""

    asking = "asking"  # the direct message is in the outbox
    asked = "asked"  # delivered; waiting for a click
    yes = "yes"  # "Yes, this was me"
    no = "no"  # "No, this wasn't me"
    no_answer = "no_answer"  # no click within the policy's time
    unreachable = "unreachable"  # no directory e-mail, or no Slack account with it


class UserCheck(SQLModel, table=True):
    """One affected user asked about one incident: the direct message, and the answer,
    given once, by that user only."""

    __tablename__ = "user_check"
    __table_args__ = (UniqueConstraint("incident_id", "account", name="uq_user_check"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    account: str = Field(max_length=255)  # the user observable, as the alert named it
    email: str | None = Field(default=None, max_length=320)  # from the directory
    slack_user: str | None = Field(default=None, max_length=64)  # who alone may answer
    dm_channel: str | None = Field(default=None, max_length=64)
    dm_ts: str | None = Field(default=None, max_length=64)
    status: str = Field(default=UserAnswer.asking.value, index=True, max_length=16)
    asked_at: datetime | None = _ts(nullable=True)
    answered_at: datetime | None = _ts(nullable=True)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
