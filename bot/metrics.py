"""``GET /metrics`` for Prometheus: what is in Fido's database right now.

Counted from the database at each scrape (``IncidentService.counts``), so every replica
reports the same truth: events by queue status, incidents by decision, closed incidents by
verdict, actions by status, dead letters by status, lookups waiting for quota, outbox
messages waiting or failed, and alerts silenced by each suppression. Nothing here carries a
secret or an alert's content.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from pipeline.incidents import IncidentService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def render(incidents: IncidentService) -> bytes:
    registry = CollectorRegistry()
    counts = await incidents.counts()
    for name, doc, label, values in (
        ("fido_events", "Alerts stored, by queue status", "status", counts.events),
        ("fido_incidents", "Incidents, by decision", "decision", counts.incidents),
        ("fido_incident_verdicts", "Closed incidents, by verdict", "verdict", counts.verdicts),
        ("fido_actions", "Containment actions, by status", "status", counts.actions),
        ("fido_dead_letters", "Unparsable payloads kept, by status", "status", counts.dead_letters),
        (
            "fido_outbox_messages",
            "Messages (cards, automatic actions) not delivered yet, by status",
            "status",
            counts.outbox,
        ),
        (
            "fido_suppressed_alerts",
            "Alerts silenced, by suppression (db:ID or policy:NAME)",
            "suppression",
            counts.suppressed,
        ),
    ):
        gauge = Gauge(name, doc, [label], registry=registry)
        for value, count in values.items():
            gauge.labels(value).set(count)
    deferred = Gauge(
        "fido_deferred_lookups", "Lookups waiting for a provider's quota", registry=registry
    )
    deferred.set(counts.deferred_lookups)
    return generate_latest(registry)
