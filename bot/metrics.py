"""``GET /metrics`` for Prometheus: what is in Fido's database right now.

Counted from the database at each scrape, so every replica reports the same truth: events
by queue status, incidents by decision, actions by status, dead letters by status, and
lookups waiting for quota. Nothing here carries a secret or an alert's content.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func
from sqlmodel import select

from pipeline.db import Database
from pipeline.models import Action, DeadLetter, DeferredLookup, Event, Incident

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def render(db: Database) -> bytes:
    registry = CollectorRegistry()
    events = Gauge("fido_events", "Alerts stored, by queue status", ["status"], registry=registry)
    incidents = Gauge("fido_incidents", "Incidents, by decision", ["decision"], registry=registry)
    actions = Gauge("fido_actions", "Containment actions, by status", ["status"], registry=registry)
    letters = Gauge(
        "fido_dead_letters", "Unparsable payloads kept, by status", ["status"], registry=registry
    )
    deferred = Gauge(
        "fido_deferred_lookups", "Lookups waiting for a provider's quota", registry=registry
    )
    async with db.session() as session:
        for gauge, column in (
            (events, Event.status),
            (incidents, Incident.decision),
            (actions, Action.status),
            (letters, DeadLetter.status),
        ):
            rows = await session.exec(select(column, func.count()).group_by(column))
            for label, count in rows.all():
                gauge.labels(str(label or "none")).set(count)
        deferred.set((await session.exec(select(func.count()).select_from(DeferredLookup))).one())
    return generate_latest(registry)
