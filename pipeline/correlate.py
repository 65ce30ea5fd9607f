"""Correlate: an event joins an open incident that shares a user or host with it within
the policy's window; otherwise it opens a new incident.

Each incident's users (by account, so ``alice``, ``CORP\\alice`` and ``alice@corp`` are one)
and hosts are kept as rows of ``incident_key``, so finding the incident to join is one
indexed query however many incidents are open."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.models import Event, Incident, IncidentKey, IncidentStatus, Severity, utcnow
from pipeline.observables import Observables, account_name

_RANK = {s.value: i for i, s in enumerate(Severity)}


def _keys(observables: Observables) -> set[str]:
    keys = {f"user:{account_name(u)}" for u in observables.users} | {
        f"host:{h.casefold()}" for h in observables.hosts
    }
    return {k[:320] for k in keys}


async def correlate(*, session: AsyncSession, event: Event, window: timedelta) -> Incident:
    """Attach ``event`` to an incident (not committed) and return that incident."""
    observables = Observables.model_validate(event.observables)
    wanted = _keys(observables)
    incident: Incident | None = None
    if wanted and window > timedelta(0):
        incident = (
            await session.exec(
                select(Incident)
                .join(IncidentKey, col(IncidentKey.incident_id) == col(Incident.id))
                .where(
                    col(IncidentKey.key).in_(wanted),
                    Incident.status == IncidentStatus.open.value,
                    col(Incident.updated_at) >= utcnow() - window,
                )
                .order_by(col(Incident.updated_at).desc())
                .limit(1)
            )
        ).first()
    if incident is None:
        incident = Incident(title=event.title, severity=event.severity)
        session.add(incident)
        await session.flush()
    else:
        if _RANK.get(event.severity, 0) > _RANK.get(incident.severity, 0):
            incident.severity = event.severity
            incident.title = event.title
    merged = Observables.model_validate(incident.observables).merge(observables)
    incident.observables = merged.model_dump()
    incident.event_count += 1
    incident.updated_at = utcnow()
    known = set(
        (
            await session.exec(
                select(IncidentKey.key).where(
                    IncidentKey.incident_id == incident.id, col(IncidentKey.key).in_(wanted)
                )
            )
        ).all()
    )
    assert incident.id is not None
    for key in sorted(wanted - known):
        session.add(IncidentKey(key=key, incident_id=incident.id))
    event.incident_id = incident.id
    session.add(event)
    session.add(incident)
    return incident
