"""``lookup``: everything Fido can say about one value — every enricher's answer and Fido's
own history with it (incidents in the last 90 days and how they ended)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlmodel import col, select

from pipeline import act
from pipeline.enrich import enrich
from pipeline.errors import InputError
from pipeline.models import Incident, utcnow
from pipeline.observables import KINDS, Kind, Observables, account_name, hash_type

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
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
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


def _matches(kind: Kind, wanted: str, values: list[str]) -> bool:
    if kind == "user":
        return account_name(wanted) in {account_name(v) for v in values}
    return wanted.casefold() in {v.casefold() for v in values}


async def investigate(pipeline: Any, *, kind: str, value: str) -> Report:
    """Run every enricher of ``pipeline`` on the value, and read its history."""
    checked_kind, checked = validate(kind, value)
    report = Report(checked_kind, checked)
    observables = Observables.model_validate({_FIELD[checked_kind]: [checked]})
    report.results = await enrich(
        pipeline.enrichers, observables, timeout=pipeline.policy.enrichment_timeout_seconds
    )
    async with pipeline.db.session() as session:
        recent = await session.exec(
            select(Incident)
            .where(col(Incident.created_at) >= utcnow() - HISTORY)
            .order_by(col(Incident.id).desc())
        )
        incidents = [
            i
            for i in recent
            if _matches(checked_kind, checked, list(i.observables.get(_FIELD[checked_kind], [])))
        ]
    for incident in incidents[:20]:
        assert incident.id is not None
        actions = await act.actions_for(pipeline.db, incident_id=incident.id)
        report.history.append(
            {
                "id": incident.id,
                "created_at": incident.created_at.isoformat(),
                "title": incident.title,
                "severity": incident.severity,
                "score": incident.score,
                "decision": incident.decision,
                "status": incident.status,
                "actions": [f"{a.responder} {a.target}: {a.status}" for a in actions],
            }
        )
    return report
