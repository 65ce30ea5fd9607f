"""Correlate: an event joins an open incident that shares an observable the policy names
(``correlation.join_on``: by default user account, host, file hash, external IP, domain and
URL) and saw an alert within ``correlation.window_minutes``; otherwise it opens one.

Keys are canonical: ``alice``, ``CORP\\alice`` and ``alice@corp`` are one ``user:alice``;
hosts, hashes and domains are case-folded. Private and internal addresses (RFC 1918, CGNAT,
loopback, link-local, IPv6 unique-local, and ``privacy.internal_networks``) are never keys:
one busy NAT address must not merge a company, so alerts sharing one join only when they
also share a user or host. Allowlisted values are never keys either.

Each incident's keys are rows of ``incident_key`` (kept after it closes, for history), so
finding the incident to join is one indexed query however many incidents are stored. A
closed incident takes no new events: the event opens a new incident that links to the most
recent closed one it shares a key with (``previous_id``).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.enrich import is_degraded, merge
from pipeline.locks import lock_key
from pipeline.lookups.privacy import Screen
from pipeline.models import Event, Incident, IncidentKey, IncidentStatus, Severity
from pipeline.observables import Kind, Observables, account_name
from pipeline.policy import Policy
from pipeline.records import Enrichment, dump_enrichment, enrichment_of

_RANK = {s.value: i for i, s in enumerate(Severity)}
KEY_MAX = 320  # IncidentKey.key's column size
_JOIN_KIND: dict[str, Kind] = {
    "user": "user",
    "host": "host",
    "hash": "hash",
    "external_ip": "ip",
    "domain": "domain",
    "url": "url",
}


def _fit(key: str) -> str:
    """A key within the column: long ones (URLs) become a digest of themselves."""
    if len(key) <= KEY_MAX:
        return key
    kind, _, value = key.partition(":")
    return f"{kind}:#{hashlib.sha256(value.encode()).hexdigest()}"


def key_of(kind: Kind, value: str) -> str:
    """The canonical correlation key of one observable."""
    value = value.strip()
    if kind == "user":
        return _fit(f"user:{account_name(value)}")
    if kind in ("host", "domain"):
        return _fit(f"{kind}:{value.casefold().strip('.')}")
    if kind == "hash":
        return _fit(f"hash:{value.casefold()}")
    if kind == "ip":
        try:
            return f"ip:{ipaddress.ip_address(value.strip('[]'))}"
        except ValueError:
            return _fit(f"ip:{value.casefold()}")
    return _fit(f"url:{value}")


# Addresses many unrelated machines share: RFC 1918, carrier-grade NAT, loopback, link-local,
# multicast, unique-local IPv6. (Documentation ranges such as 203.0.113.0/24 are routable
# for this purpose, so examples behave like the internet.)
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
        "169.254.0.0/16", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip


class Keys:
    """Which of an event's observables are keys under one policy."""

    def __init__(self, policy: Policy) -> None:
        self.screen = Screen(policy.privacy, policy.allowlist)
        self.internal = [*PRIVATE_NETWORKS, *self.screen.internal_networks]
        self.join_kinds = {_JOIN_KIND[k] for k in policy.correlation.join_on}

    def private(self, value: str) -> bool:
        """A private or internal address (never a key), or not an address at all."""
        try:
            ip = ipaddress.ip_address(value.strip().strip("[]"))
        except ValueError:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.internal)

    def _usable(self, kind: Kind, value: str) -> bool:
        if self.screen.allowlisted(kind, value):
            return False
        if kind == "ip":
            return not self.private(value)
        return bool(value.strip())

    def all(self, observables: Observables) -> set[str]:
        """Every key an incident is filed under (joins and history)."""
        return {
            key_of(kind, value) for kind, value in observables.items() if self._usable(kind, value)
        }

    def joining(self, keys: set[str]) -> set[str]:
        """The keys that may join an incident under the policy's ``join_on``."""
        return {k for k in keys if k.partition(":")[0] in self.join_kinds}


@functools.cache
def _find_statement(windowed: bool, lock: bool) -> Any:
    """``_find``'s query, built once per shape (statements are costly to build, and a
    statement built once keeps its cache key): the keys and the window are parameters."""
    # "id IN (incidents sharing a key)" rather than a join: the planner then starts from
    # incident_key's primary key whatever it knows of the tables (SQLite has no statistics
    # unless ANALYZE ran, and a join let it walk every open or closed incident instead)
    sharing = select(IncidentKey.incident_id).where(
        col(IncidentKey.key).in_(bindparam("keys", expanding=True))
    )
    closed = col(Incident.status) == IncidentStatus.closed.value
    wanted = (
        or_(
            and_(
                col(Incident.status) == IncidentStatus.open.value,
                col(Incident.updated_at) >= bindparam("open_since"),
            ),
            closed,
        )
        if windowed
        else closed
    )
    query = (
        select(Incident)
        .where(col(Incident.id).in_(sharing), wanted)
        .order_by(
            case((closed, 1), else_=0),  # an open one first
            case((closed, col(Incident.closed_at)), else_=col(Incident.updated_at)).desc(),
        )
        .limit(1)
        # the keys it reads are written at once (``correlate``), and what is pending on
        # incidents in the session cannot change which one is found: nothing to flush first
        .execution_options(autoflush=False)
    )
    if lock:
        # another replica adding to the same incident waits for this transaction (SQLite
        # transactions are serial already), so no event count or observable is lost
        query = query.with_for_update(of=Incident)
    return query


async def _find(
    session: AsyncSession, keys: set[str], *, open_since: datetime | None
) -> Incident | None:
    """In one query: the open incident sharing one of ``keys`` updated last, if it was
    updated since ``open_since`` (None: never join an open one); else the one closed last.
    """
    bind = session.bind
    windowed = open_since is not None
    lock = windowed and bind is not None and bind.dialect.name != "sqlite"
    params: dict[str, Any] = {"keys": sorted(keys)}
    if windowed:
        params["open_since"] = open_since
    found = await session.exec(_find_statement(windowed, lock), params=params)
    return found.first()


_LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(k))"
    " FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS wanted"
)


async def lock_keys(session: AsyncSession, keys: Iterable[str]) -> None:
    """On PostgreSQL, hold a transaction lock on each correlation key (in sorted order, so
    two transactions never wait for each other's keys): replicas attaching events that
    share a key then take turns, and two of them can never both open an incident for the
    same user when none exists yet (a row lock cannot guard a row that is not there).
    SQLite's transactions are serial already."""
    bind = session.bind
    if bind is None or bind.dialect.name == "sqlite":
        return
    wanted = sorted({lock_key(f"key:{key}") for key in keys})
    if wanted:  # one statement, taking them in that order
        await session.exec(  # type: ignore[call-overload]
            _LOCK_KEYS, params={"keys": wanted}
        )


_KEY: Table = IncidentKey.__table__  # type: ignore[attr-defined]
_KNOWN_KEYS = select(_KEY.c.key).where(
    _KEY.c.incident_id == bindparam("incident_id"),
    _KEY.c.key.in_(bindparam("keys", expanding=True)),
)


async def correlate(
    *,
    session: AsyncSession,
    event: Event,
    policy: Policy,
    now: datetime,
    keys: Keys | None = None,
    results: Enrichment | None = None,
) -> Incident:
    """Attach ``event`` (with its enrichment ``results``) to an incident, not committed,
    and return that incident. A new incident is inserted whole, in one statement; its keys
    are written at once, so the next event of the same transaction finds it."""
    keys = keys or Keys(policy)
    observables = Observables.model_validate(event.observables)
    mine = keys.all(observables)
    joining = keys.joining(mine)
    window = timedelta(minutes=policy.correlation.window_minutes)
    found = (
        await _find(session, joining, open_since=now - window if window > timedelta(0) else None)
        if joining
        else None
    )
    incident = found if found is not None and found.status == IncidentStatus.open else None
    created = incident is None
    if incident is None:
        previous = found  # closed: the new incident links to it
        incident = Incident(
            title=event.title,
            severity=event.severity,
            created_at=now,
            previous_id=previous.id if previous else None,
        )
    elif _RANK.get(event.severity, 0) > _RANK.get(incident.severity, 0):
        incident.severity = event.severity
        incident.title = event.title
    merged = Observables.model_validate(incident.observables).merge(observables)
    incident.observables = merged.model_dump()
    incident.event_count += 1
    incident.updated_at = now
    if event.detector not in incident.detectors:
        incident.detectors = [*incident.detectors, event.detector]
    if results is not None:
        incident.enrichment = dump_enrichment(merge(enrichment_of(incident.enrichment), results))
        incident.degraded = is_degraded(results)
    if created:  # for its id
        session.add(incident)
        await session.flush()
    assert incident.id is not None
    connection = await session.connection()
    known: set[str] = set()
    if not created and mine:  # a new incident has no keys yet
        rows = await connection.execute(
            _KNOWN_KEYS, {"incident_id": incident.id, "keys": sorted(mine)}
        )
        known = set(rows.scalars().all())
    if mine - known:
        await connection.execute(
            _KEY.insert(), [{"key": k, "incident_id": incident.id} for k in sorted(mine - known)]
        )
    # the event's row is written by whoever completes it (``queue.complete``), in one update
    event.incident_id = incident.id
    session.add(incident)
    return incident
