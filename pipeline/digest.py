"""The digest: low-score incidents in one message per interval instead of a card each.

``routing.individual`` keeps an incident scoring below ``digest.below`` (and not asking
for approval) from getting a card of its own. Every ``digest.interval_minutes`` the
scheduler runs :func:`run_digest`, which lists the open incidents that were never posted
nor listed yet, in messages of at most ``PER_MESSAGE`` lines to ``digest.channel`` (else
the default channel), and marks them listed (``digest_at``) in the same transaction as
the outbox rows. An incident that later rises to ``digest.below`` gets its card then.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import col, select

from pipeline.clock import Clock, as_utc, system_clock
from pipeline.db import Database
from pipeline.models import Decision, Incident, IncidentStatus
from pipeline.policy import Policy
from pipeline.routing import Digest, DigestItem, enqueue

log = logging.getLogger(__name__)

PER_MESSAGE = 40


async def run_digest(db: Database, *, policy: Policy, clock: Clock = system_clock) -> int:
    """List the incidents waiting for the digest; return how many were listed."""
    now = as_utc(clock())
    async with db.session() as session:
        rows = (
            await session.exec(
                select(Incident)
                .where(
                    Incident.status == IncidentStatus.open.value,
                    col(Incident.message_ts).is_(None),
                    col(Incident.digest_at).is_(None),
                    col(Incident.suppressed_by).is_(None),
                    Incident.decision == Decision.notify.value,
                    col(Incident.score) < policy.digest.below,
                )
                .order_by(col(Incident.score).desc(), col(Incident.id))
            )
        ).all()
        if not rows:
            return 0
        ids = [r.id for r in rows if r.id is not None]
        await session.exec(
            update(Incident)
            .where(col(Incident.id).in_(ids), col(Incident.digest_at).is_(None))
            .values(digest_at=now)
        )
        items = [
            DigestItem(
                incident_id=r.id,
                title=r.title,
                severity=r.severity,
                score=r.score,
                events=r.event_count,
                detectors=list(r.detectors or []),
            )
            for r in rows
            if r.id is not None
        ]
        for start in range(0, len(items), PER_MESSAGE):
            chunk = items[start : start + PER_MESSAGE]
            enqueue(
                session,
                Digest(
                    channel=policy.digest.channel,
                    items=chunk,
                    more=max(len(items) - start - len(chunk), 0),
                ),
                incident_id=None,
            )
        await session.commit()
    log.info("digest: %d low-score incidents listed", len(items))
    return len(items)


async def run_digest_safely(db: Database, *, policy: Policy, clock: Clock = system_clock) -> int:
    """The scheduler's job; a failure is logged and the incidents wait for the next run."""
    try:
        return await run_digest(db, policy=policy, clock=clock)
    except Exception:
        log.exception("digest failed")
        return 0
