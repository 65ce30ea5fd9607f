"""``lookup``: everything Fido can say about one value — every enricher's answer and Fido's
own history with it (incidents in the last 90 days and how they ended)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlmodel import col, select

from pipeline import act
from pipeline.correlate import key_of
from pipeline.db import Database
from pipeline.enrich import enrich
from pipeline.errors import InputError
from pipeline.models import Incident, IncidentKey, utcnow
from pipeline.observables import KINDS, Kind, Observables, hash_type
from pipeline.plugins import Enricher
from pipeline.policy import Policy
from pipeline.records import Enrichment

HISTORY = timedelta(days=90)
_FIELD = {
    "user": "users",
    "host": "hosts",
    "ip": "ips",
    "hash": "hashes",
    "domain": "domains",
    "url": "urls",
}


@dataclass
class Report:
    kind: Kind
    value: str
    results: Enrichment = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def validate(kind: str, value: str) -> tuple[Kind, str]:
    """Check a (kind, value) typed by a person; raise InputError saying what is wrong."""
    kind = kind.lower()
    if kind not in KINDS:
        raise InputError(f"unknown kind `{kind[:20]}`: use one of {', '.join(KINDS)}")
    value = value.strip()
    if not value or len(value) > 2048:
        raise InputError(f"give one {kind} to look up")
    if kind == "ip":
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError:
            raise InputError(f"`{value[:60]}` is not an IP address") from None
    if kind == "hash" and hash_type(value) is None:
        raise InputError("a hash must be an md5, sha1 or sha256 hex digest")
    return cast(Kind, kind), value


async def investigate(
    *, db: Database, policy: Policy, enrichers: Sequence[Enricher], kind: str, value: str
) -> Report:
    """Run every enricher on the value, and read Fido's history with it."""
    checked_kind, checked = validate(kind, value)
    report = Report(checked_kind, checked)
    observables = Observables.model_validate({_FIELD[checked_kind]: [checked]})
    report.results = await enrich(enrichers, observables, timeout=policy.enrichment_timeout_seconds)
    async with db.session() as session:
        recent = await session.exec(  # by the incident keys correlation files them under
            select(Incident)
            .join(IncidentKey, col(IncidentKey.incident_id) == col(Incident.id))
            .where(
                IncidentKey.key == key_of(checked_kind, checked),
                col(Incident.created_at) >= utcnow() - HISTORY,
            )
            .order_by(col(Incident.id).desc())
            .limit(20)
        )
        incidents = list(recent.all())
    for incident in incidents:
        assert incident.id is not None
        actions = await act.actions_for(db, incident_id=incident.id)
        report.history.append(
            {
                "id": incident.id,
                "created_at": incident.created_at.isoformat(),
                "title": incident.title,
                "severity": incident.severity,
                "score": incident.score,
                "decision": incident.decision,
                "status": incident.status,
                "verdict": incident.verdict,
                "actions": [f"{a.responder} {a.target}: {a.status}" for a in actions],
            }
        )
    return report
