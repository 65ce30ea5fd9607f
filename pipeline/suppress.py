"""Suppressions: known-noisy alerts silenced on purpose, with an owner, a reason and an
expiry.

They come from the policy (``suppressions:``, keyed ``policy:NAME`` or ``policy:#N``) and
from Slack (the ``suppression`` table, keyed ``db:ID``). A suppressed alert is stored and
attached to its incident like any other, but its incident posts no card and triggers no
action. An expired suppression stops applying by itself; a removed one at once. Every time
one fires it is counted (``suppression_hit``), so a team sees what it is hiding.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.clock import as_utc
from pipeline.errors import InputError
from pipeline.lookups.store import insert_for
from pipeline.models import Incident, Suppression, SuppressionHit
from pipeline.observables import Observables, account_name
from pipeline.policy import Policy, SuppressionMatch


@dataclass(frozen=True)
class ActiveSuppression:
    key: str
    name: str
    match: SuppressionMatch
    owner: str
    reason: str
    expires_at: datetime
    origin: str  # "policy" or "slack"
    hits: int = 0
    last_hit_at: datetime | None = None

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.match.model_dump(exclude_none=True).items())
        return f"{self.name} ({fields})"


def _ip_in(value: str, wanted: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip("[]")) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


def matches(
    match: SuppressionMatch, *, detector: str, title: str, observables: Observables
) -> bool:
    """True when every field of ``match`` matches the alert."""
    checks: list[bool] = []
    if match.detector is not None:
        checks.append(detector.casefold() == match.detector.casefold())
    if match.title is not None:
        checks.append(fnmatch.fnmatchcase(title.casefold(), match.title.casefold()))
    if match.user is not None:
        checks.append(account_name(match.user) in {account_name(u) for u in observables.users})
    if match.host is not None:
        wanted = match.host.casefold().strip(".")
        checks.append(
            any(
                h.casefold().strip(".") == wanted or h.casefold().split(".")[0] == wanted
                for h in observables.hosts
            )
        )
    if match.ip is not None:
        checks.append(any(_ip_in(ip, match.ip) for ip in observables.ips))
    if match.hash is not None:
        checks.append(match.hash.casefold() in {h.casefold() for h in observables.hashes})
    if match.domain is not None:
        wanted = match.domain.casefold().strip(".")
        checks.append(
            any(
                (d := domain.casefold().strip(".")) == wanted or d.endswith("." + wanted)
                for domain in observables.domains
            )
        )
    return bool(checks) and all(checks)


async def active(
    session: AsyncSession, *, policy: Policy, now: datetime, hits: bool = True
) -> list[ActiveSuppression]:
    """Every suppression in force at ``now``, with its hit count (unless ``hits`` is
    False: matching an alert does not need them)."""
    found: list[ActiveSuppression] = []
    for index, rule in enumerate(policy.suppressions, start=1):
        if as_utc(rule.expires) > now:
            key = f"policy:{rule.name or f'#{index}'}"
            found.append(
                ActiveSuppression(
                    key=key,
                    name=rule.name or f"policy suppression #{index}",
                    match=rule.match,
                    owner=rule.owner,
                    reason=rule.reason,
                    expires_at=as_utc(rule.expires),
                    origin="policy",
                )
            )
    rows = await session.exec(
        select(Suppression).where(
            col(Suppression.removed_at).is_(None), col(Suppression.expires_at) > now
        )
    )
    for row in rows.all():
        found.append(
            ActiveSuppression(
                key=f"db:{row.id}",
                name=f"suppression {row.id}",
                match=SuppressionMatch.model_validate(row.match),
                owner=row.owner,
                reason=row.reason,
                expires_at=as_utc(row.expires_at),
                origin="slack",
            )
        )
    if not hits or not found:
        return found
    counted = {
        h.key: h
        for h in (
            await session.exec(
                select(SuppressionHit).where(col(SuppressionHit.key).in_([s.key for s in found]))
            )
        ).all()
    }
    return [
        ActiveSuppression(
            **{
                **s.__dict__,
                "hits": counted[s.key].hits,
                "last_hit_at": counted[s.key].last_hit_at,
            }
        )
        if s.key in counted
        else s
        for s in found
    ]


def first_match(
    suppressions: Sequence[ActiveSuppression],
    *,
    detector: str,
    title: str,
    observables: Observables,
) -> ActiveSuppression | None:
    """The first of ``suppressions`` (``active(…, hits=False)``) that silences the alert."""
    for suppression in suppressions:
        if matches(suppression.match, detector=detector, title=title, observables=observables):
            return suppression
    return None


async def count_hit(session: AsyncSession, *, sqlite: bool, key: str, now: datetime) -> None:
    insert = insert_for(sqlite, SuppressionHit).values(key=key, hits=1, last_hit_at=now)
    await session.exec(
        insert.on_conflict_do_update(
            index_elements=["key"],
            set_={"hits": col(SuppressionHit.hits) + 1, "last_hit_at": now},
        )
    )


def from_incident(incident: Incident) -> SuppressionMatch:
    """What a suppression offered after a false-positive close matches: the same detector
    and title, on the same host (else the same user) when the incident names one."""
    observables = Observables.model_validate(incident.observables)
    detector = incident.detectors[0] if len(incident.detectors) == 1 else None
    fields: dict[str, str | None] = {"detector": detector, "title": _glob_escape(incident.title)}
    if len(observables.hosts) == 1:
        fields["host"] = observables.hosts[0]
    elif len(observables.users) == 1:
        fields["user"] = observables.users[0]
    return SuppressionMatch.model_validate(fields)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


async def create(
    session: AsyncSession,
    *,
    match: SuppressionMatch,
    owner: str,
    reason: str,
    now: datetime,
    days: float,
    incident_id: int | None = None,
) -> Suppression:
    if days <= 0 or days > 365:
        raise InputError("a suppression lasts between 1 and 365 days")
    row = Suppression(
        match=match.model_dump(exclude_none=True),
        owner=owner,
        reason=reason,
        expires_at=now + timedelta(days=days),
        created_at=now,
        incident_id=incident_id,
    )
    session.add(row)
    await session.flush()
    return row


async def remove(
    session: AsyncSession, *, suppression_id: int, actor: str, now: datetime
) -> Suppression:
    row = await session.get(Suppression, suppression_id)
    if row is None or row.removed_at is not None:
        raise InputError(f"there is no suppression {suppression_id} in force")
    row.removed_at, row.removed_by = now, actor
    session.add(row)
    return row
