"""The append-only audit log: every state change, who made it, and when."""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.models import AuditEntry

log = logging.getLogger(__name__)


def record(
    session: AsyncSession,
    *,
    actor: str,
    verb: str,
    target: str = "",
    incident_id: int | None = None,
    **detail: Any,
) -> AuditEntry:
    """Add an audit entry to ``session``; it is written when the caller commits."""
    entry = AuditEntry(
        actor=actor, verb=verb, target=target, incident_id=incident_id, detail=detail
    )
    session.add(entry)
    log.info("audit: %s %s %s (incident %s)", actor, verb, target, incident_id)
    return entry


async def entries(
    session: AsyncSession, *, incident_id: int | None = None, verb: str | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.id))
    if incident_id is not None:
        query = query.where(AuditEntry.incident_id == incident_id)
    if verb is not None:
        query = query.where(AuditEntry.verb == verb)
    return list((await session.exec(query)).all())
