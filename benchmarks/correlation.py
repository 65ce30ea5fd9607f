"""Whether correlating a new event stays in milliseconds with a million stored events.

Stores N events (default 1,000,000) over ~N/5 incidents spread across 90 days, with Core
executemany inserts (not the ORM, not the pipeline, so seeding takes minutes): users from a
pool of 20,000 (written as ``CORP\\u``, ``u@corp.example`` or ``u``), hosts 20,000,
external IPs 50,000, hashes 100,000, domains 20,000; most incidents older than a day are
closed with a verdict; ``incident_key`` rows exactly as ``pipeline.correlate.Keys.all``
files them. Then, for 500 new events — a third sharing a user or host with an incident
open within the correlation window, a third sharing keys with old or closed incidents, a
third about subjects never seen — it times what triage does per event before scoring,
without enrichment: ``correlate`` + ``history.gather`` in one session (rolled back, so the
database is the same for every run). Prints p50/p95/p99 in ms, per kind of event too, and
the database's size.

    python benchmarks/correlation.py [N] [--keep PATH]

``--keep PATH`` seeds the SQLite file PATH once and reuses it on later runs (to EXPLAIN);
FIDO_DATABASE_URL points it at PostgreSQL instead, in a throw-away schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, select, text
from sqlmodel import col

from pipeline import db as database
from pipeline.correlate import Keys, correlate
from pipeline.history import gather
from pipeline.models import Event, Incident, IncidentKey
from pipeline.observables import Observables
from pipeline.policy import Policy

SPAN = timedelta(days=90)
NEW_EVENTS = 500
CHUNK = 10_000
USERS, HOSTS, IPS, HASHES, DOMAINS = 20_000, 20_000, 50_000, 100_000, 20_000
DETECTORS = ["crowdstrike", "sentinelone", "okta", "suricata", "generic", "defender"]
TITLES = [
    "Suspicious sign-in from a new country",
    "Malware detected",
    "Credential dumping attempt",
    "Impossible travel",
    "Outbound connection to a known C2 server",
    "Phishing link clicked",
    "Brute force against VPN",
]
SEVERITIES = ["low", "medium", "medium", "high", "high", "critical"]
# first octets of globally routable IPv4 space (never private, CGNAT or documentation)
OCTETS = [23, 31, 37, 45, 52, 62, 77, 81, 89, 94, 104, 141, 151, 185, 195, 212]


def user(n: int, rng: random.Random) -> str:
    return rng.choice([f"CORP\\user{n}", f"user{n}@corp.example", f"user{n}"])


def ip(n: int) -> str:
    return f"{OCTETS[n % len(OCTETS)]}.{(n // 16) % 250 + 1}.{(n // 4000) % 250 + 1}.{n % 97 + 2}"


def subjects(rng: random.Random) -> dict[str, list[str]]:
    """One incident's observables, drawn from the pools."""
    found: dict[str, list[str]] = defaultdict(list)
    if rng.random() < 0.9:
        found["users"].append(user(rng.randrange(USERS), rng))
    if rng.random() < 0.8:
        found["hosts"].append(f"pc-{rng.randrange(HOSTS)}.corp.example")
    if rng.random() < 0.5:
        address = ip(rng.randrange(IPS))
        found["ips"].append(address)
        found["dst_ips"].append(address)
    if rng.random() < 0.3:
        found["ips"].append(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}")
    if rng.random() < 0.3:
        found["hashes"].append(f"{rng.randrange(HASHES):064x}")
    if rng.random() < 0.3:
        found["domains"].append(f"site{rng.randrange(DOMAINS)}.example.net")
    return dict(found)


def rows(
    count: int, now: datetime, rng: random.Random, keys: Keys
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    """(incident, its events, its key rows) until ``count`` events are made; ~5 a piece."""
    made, i = 0, 0
    while made < count:
        i += 1
        # spread evenly over the span by event, so the last incidents are the latest
        created = now - SPAN + SPAN * (made / count) - timedelta(minutes=45)
        found = subjects(rng)
        title, detector = rng.choice(TITLES), rng.choice(DETECTORS)
        n = min(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9]), count - made)
        observables = Observables.model_validate(found)
        dumped = observables.model_dump()
        events = []
        for k in range(n):
            made += 1
            at = created + timedelta(minutes=7 * k)
            payload = {"id": f"ev-{made}", "title": title, "severity": "high", **found}
            events.append(
                {
                    "id": made,
                    "detector": detector,
                    "external_id": f"ev-{made}",
                    "received_at": at,
                    "occurred_at": at,
                    "severity": rng.choice(SEVERITIES),
                    "title": title,
                    "observables": dumped,
                    "raw": json.dumps(payload),
                    "status": "done",
                    "attempts": 1,
                    "incident_id": i,
                }
            )
        updated = events[-1]["received_at"]
        closed = now - updated > timedelta(days=1) and rng.random() < 0.85
        incident = {
            "id": i,
            "created_at": created,
            "updated_at": updated,
            "title": title,
            "severity": "high",
            "status": "closed" if closed else "open",
            "observables": dumped,
            "enrichment": {},
            "degraded": False,
            "score": rng.randrange(10, 95),
            "score_breakdown": [],
            "decision": rng.choice(["record", "notify", "notify", "ask_approval"]),
            "proposed_actions": [],
            "event_count": n,
            "detectors": [detector],
            "history": {},
            "verdict": rng.choice(["true_positive", "false_positive", "benign"])
            if closed
            else None,
            "closed_at": updated + timedelta(hours=rng.uniform(1, 20)) if closed else None,
        }
        key_rows = [{"key": key, "incident_id": i} for key in sorted(keys.all(observables))]
        yield incident, events, key_rows


def seed(url: str, count: int, now: datetime, keys: Keys) -> float:
    """Store ``count`` events with their incidents and keys; return the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(database.sync_url(url))
    tables = [m.__table__ for m in (Incident, Event, IncidentKey)]  # type: ignore[attr-defined]
    batches: list[list[dict[str, Any]]] = [[], [], []]

    def flush(connection: Any) -> None:
        for table, batch in zip(tables, batches, strict=True):
            if batch:
                connection.execute(table.insert(), batch)
                batch.clear()

    with engine.begin() as connection:
        for incident, events, key_rows in rows(count, now, random.Random(11), keys):
            batches[0].append(incident)
            batches[1].extend(events)
            batches[2].extend(key_rows)
            if len(batches[1]) >= CHUNK:
                flush(connection)
        flush(connection)
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences on
            for table in ("incident", "event"):
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) "
                         f"FROM {table}")
                )  # fmt: skip
            connection.execute(text("ANALYZE"))  # what autovacuum would have done by now
    engine.dispose()
    return time.perf_counter() - started


def new_events(url: str, now: datetime, rng: random.Random) -> list[tuple[str, Event]]:
    """The 500 events to correlate, by kind, stored as ingest stores them (pending)."""
    engine = create_engine(database.sync_url(url))
    with engine.connect() as connection:
        recent = connection.execute(
            select(col(Incident.observables)).where(
                Incident.status == "open", col(Incident.updated_at) >= now - timedelta(minutes=50)
            )
        ).all()
        old = connection.execute(
            select(col(Incident.observables)).where(
                col(Incident.updated_at) < now - timedelta(days=3), col(Incident.id) % 37 == 0
            )
        ).all()
    engine.dispose()

    def decoded(value: Any) -> dict[str, Any]:
        return json.loads(value) if isinstance(value, str) else value

    made: list[tuple[str, dict[str, Any]]] = []
    for k in range(NEW_EVENTS):
        kind = ("open", "old", "new")[k % 3]
        if kind == "new":
            found = {"users": [f"newcomer{k}"], "hosts": [f"lab-{k}.corp.example"]}
            found["ips"] = [ip(IPS + k)]
        else:
            pool = recent if kind == "open" and recent else old
            found = {
                name: values
                for name, values in decoded(rng.choice(pool)[0]).items()
                if name in ("users", "hosts", "ips", "hashes", "domains") and values
            }
        made.append((kind, found))
    events = []
    for k, (kind, found) in enumerate(made):
        event = Event(
            detector=rng.choice(DETECTORS),
            external_id=f"new-{uuid.uuid4().hex}",
            received_at=now,
            severity="high",
            title=rng.choice(TITLES),
            observables=Observables.model_validate(found).model_dump(),
            raw=json.dumps({"id": k, **found}),
        )
        events.append((kind, event))
    return events


async def measure(url: str, now: datetime, keys: Keys) -> dict[str, list[float]]:
    policy = Policy()
    events = new_events(url, now, random.Random(5))
    db = database.Database(url)
    timings: dict[str, list[float]] = defaultdict(list)
    try:
        async with db.session() as session:  # ingest: the events are stored first
            session.add_all([event for _, event in events])
            await session.commit()
        for kind, event in events:
            async with db.session() as session:
                started = time.perf_counter()
                incident = await correlate(
                    session=session, event=event, policy=policy, now=now, keys=keys
                )
                await gather(
                    session, incident=incident, event=event, policy=policy, now=now, keys=keys
                )
                timings[kind].append((time.perf_counter() - started) * 1000)
                await session.rollback()  # the same database for every event and every run
        async with db.engine.begin() as connection:
            await connection.execute(text("DELETE FROM event WHERE external_id LIKE 'new-%'"))
    finally:
        await db.dispose()
    return timings


def size(url: str) -> str:
    engine = create_engine(database.sync_url(url))
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            page = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            total = pages * page
        else:
            total = connection.execute(
                text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).scalar_one()
        counts = {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("event", "incident", "incident_key")
        }
    engine.dispose()
    rows_ = ", ".join(f"{n:,} {table} rows" for table, n in counts.items())
    return f"{total / 2**20:,.0f} MiB ({rows_})"


def percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49]:.1f} ms, p95 {cuts[94]:.1f} ms, p99 {cuts[98]:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="seed this SQLite file once and reuse it")
    args = parser.parse_args()
    # the seeded data ends at a fixed moment so a kept database is reused consistently
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    keys = Keys(Policy())
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("FIDO_DATABASE_URL") or (
            f"sqlite:///{args.keep or Path(tmp) / 'bench.db'}"
        )
        schema = None
        if not database.is_sqlite(url):  # a throw-away schema, dropped at the end
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(database.sync_url(url))
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            url += ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")
        try:
            if args.keep is not None and args.keep.exists():
                database.upgrade(url)
                print(f"reusing {args.keep}")
            else:
                database.upgrade(url)
                took = seed(url, args.count, now, keys)
                print(f"seeded {args.count:,} events in {took:.0f} s")
            timings = asyncio.run(measure(url, now, keys))
            print(f"database: {size(url)}")
        finally:
            if schema is not None:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    everything = [t for values in timings.values() for t in values]
    backend = url.split(":", 1)[0]
    print(
        f"correlate + gather ({backend}), {len(everything)} new events: {percentiles(everything)}"
    )
    for kind, label in (
        ("open", "joins an open incident"),
        ("old", "shares keys with old or closed incidents"),
        ("new", "never seen"),
    ):
        print(f"  {label:<42} {percentiles(timings[kind])}")


if __name__ == "__main__":
    main()
