"""Retention: what an alert carried is kept for the policy's ``retention.days``, then
purged; what Fido decided and did is kept.

Purged once older than the policy's days (``purge``, run by ``fido serve`` every
``retention.interval_minutes`` on one replica at a time):

- the **raw payload** of each event that is done or failed (received before the cut-off):
  emptied; the event row stays, with its detector, title, time and observables, so
  incidents, history and correlation keep working. Events still queued keep theirs;
- the **enrichment** of each incident not updated since the cut-off (what the directory,
  Jamf or VirusTotal said): emptied; the incident keeps its score, breakdown, decision,
  verdict and history;
- **dead letters** received before the cut-off (their bodies are raw payloads), whatever
  their state;
- **lookup answers** cached before the cut-off, and **sent outbox rows** created before it
  (their payloads may quote messages).

Incidents, actions and the audit log are kept: the audit log is append-only and
hash-chained (``pipeline/audit.py``), so nothing is taken from it, and one entry
``retention.purged`` records each purge with its counts, so ``fido audit verify`` still
verifies the whole chain. Rows are changed in batches of ``BATCH``, each its own short
transaction, so a large first purge never holds long locks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import Text, cast, delete, update
from sqlalchemy.sql.dml import Delete, Update
from sqlmodel import col, select

from pipeline import audit
from pipeline.clock import Clock, as_utc
from pipeline.db import Database
from pipeline.models import (
    DeadLetter,
    Event,
    EventStatus,
    Incident,
    LookupCache,
    OutboxMessage,
    OutboxStatus,
)
from pipeline.policy import RetentionPolicy

log = logging.getLogger(__name__)

ACTOR = "fido:retention"
BATCH = 500
PURGED = ""  # what a purged raw payload reads


@dataclass
class Purged:
    payloads: int = 0  # events whose raw payload was emptied
    enrichments: int = 0  # incidents whose enrichment was emptied
    dead_letters: int = 0
    lookups: int = 0  # cached lookup answers
    outbox: int = 0  # sent outbox rows

    @property
    def total(self) -> int:
        return self.payloads + self.enrichments + self.dead_letters + self.lookups + self.outbox


def cutoff(policy: RetentionPolicy, now: datetime) -> datetime | None:
    """Older than this is purged; None when the policy keeps everything."""
    if policy.days is None:
        return None
    return as_utc(now) - timedelta(days=policy.days)


async def _batches(db: Database, statement: Update | Delete) -> int:
    """Run ``statement`` (limited to ``BATCH`` rows by its own subquery) until it changes
    fewer than a batch; return the rows changed."""
    changed = 0
    while True:
        async with db.session(durable=False) as session:
            result = await session.exec(statement)
            await session.commit()
        count = int(result.rowcount or 0)
        changed += count
        if count < BATCH:
            return changed


async def purge(db: Database, policy: RetentionPolicy, *, now: datetime) -> Purged:
    """Purge what is older than ``policy.days`` (see the module docstring)."""
    before = cutoff(policy, now)
    purged = Purged()
    if before is None:
        return purged
    events = (
        select(Event.id)
        .where(
            col(Event.received_at) < before,
            col(Event.status).in_([EventStatus.done.value, EventStatus.failed.value]),
            Event.raw != PURGED,
        )
        .limit(BATCH)
    )
    purged.payloads = await _batches(
        db,
        update(Event)
        .where(col(Event.id).in_(events.scalar_subquery()))
        .values(raw=PURGED)
        .execution_options(synchronize_session=False),
    )
    incidents = (
        select(Incident.id)
        .where(col(Incident.updated_at) < before, cast(Incident.enrichment, Text) != "{}")
        .limit(BATCH)
    )
    purged.enrichments = await _batches(
        db,
        update(Incident)
        .where(col(Incident.id).in_(incidents.scalar_subquery()))
        .values(enrichment={})
        .execution_options(synchronize_session=False),
    )
    letters = select(DeadLetter.id).where(col(DeadLetter.received_at) < before).limit(BATCH)
    purged.dead_letters = await _batches(
        db,
        delete(DeadLetter)
        .where(col(DeadLetter.id).in_(letters.scalar_subquery()))
        .execution_options(synchronize_session=False),
    )
    answers = select(LookupCache.key).where(col(LookupCache.fetched_at) < before).limit(BATCH)
    purged.lookups = await _batches(
        db,
        delete(LookupCache)
        .where(col(LookupCache.key).in_(answers.scalar_subquery()))
        .execution_options(synchronize_session=False),
    )
    sent = (
        select(OutboxMessage.id)
        .where(
            col(OutboxMessage.created_at) < before,
            OutboxMessage.status == OutboxStatus.sent.value,
        )
        .limit(BATCH)
    )
    purged.outbox = await _batches(
        db,
        delete(OutboxMessage)
        .where(col(OutboxMessage.id).in_(sent.scalar_subquery()))
        .execution_options(synchronize_session=False),
    )
    if purged.total:
        async with db.session() as session:
            audit.record(
                session,
                actor=ACTOR,
                verb="retention.purged",
                target=f"older than {before:%Y-%m-%d %H:%M} UTC",
                days=policy.days,
                **asdict(purged),
            )
            await session.commit()
        log.info(
            "retention: purged %d raw payloads, %d enrichments, %d dead letters, %d lookup "
            "answers and %d sent messages older than %d days",
            purged.payloads,
            purged.enrichments,
            purged.dead_letters,
            purged.lookups,
            purged.outbox,
            policy.days,
        )
    return purged


async def run(db: Database, policy: Callable[[], RetentionPolicy], clock: Clock) -> None:
    """The scheduled job: purge under the policy in force; a failure is logged (one line
    when the database is unreachable) and the purge tried again next interval."""
    try:
        await purge(db, policy(), now=clock())
    except Exception:
        log.warning("retention: purge failed; trying again next interval", exc_info=True)
