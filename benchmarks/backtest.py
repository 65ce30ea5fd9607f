"""How fast ``fido backtest`` re-scores stored incidents under another policy.

Seeds N incidents (default 100,000) into a throw-away SQLite database (or a throw-away
schema of the PostgreSQL named by FIDO_DATABASE_URL) with Core executemany inserts: each
with observables, a directory answer about its user, a VirusTotal verdict on its hash for
some, a stored history, and the score and decision the default policy gives. Then times
``pipeline.backtest.backtest`` under a stricter policy and prints

    backtest: N incidents in S s (R incidents/s)

    python benchmarks/backtest.py [N]
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, text
from sqlalchemy.orm import configure_mappers

from integrations import load_all
from pipeline import db as database
from pipeline.backtest import backtest
from pipeline.decide import Targets, decide
from pipeline.models import Incident
from pipeline.plugins import responders as registry
from pipeline.policy import Policy
from pipeline.records import History, dump_breakdown, dump_proposals
from pipeline.score import score

DETECTORS = ["crowdstrike", "sentinelone", "okta", "suricata", "generic"]
TITLES = [
    "Suspicious sign-in from a new country",
    "Malware detected",
    "Credential dumping attempt",
    "Impossible travel",
    "Outbound connection to a known C2 server",
]
SEVERITIES = ["low", "medium", "medium", "high", "high", "critical"]
DEPARTMENTS = ["Engineering", "Sales", "Finance", "Executive", "Support"]
CHUNK = 5000

# Stricter than the default: asks sooner, acts automatically on the worst, weighs
# malicious hashes and privileged users more.
STRICT = {
    "thresholds": {"notify": 20, "ask_approval": 55, "auto_act": 85},
    "scoring": {
        "threat": {"verdicts": {"malicious": 35, "suspicious": 15, "benign": -10}},
        "user": {"privileged": 20},
        "correlation": {"repeat_after_hours": {2.0: 5, 8.0: 10}},
    },
}


def incidents(count: int, now: datetime, rng: random.Random) -> Iterator[dict[str, Any]]:
    """``count`` incident rows, realistic in shape, scored and decided under the defaults."""
    configure_mappers()  # model_construct'ed rows read through the mapped attributes
    policy = Policy()
    targets: dict[str, Targets] = {
        rule.responder: registry.get(rule.responder) for rule in policy.actions
    }
    for i in range(1, count + 1):
        n = rng.randrange(20_000)
        user, host = f"CORP\\user{n}", f"pc-{rng.randrange(20_000)}"
        ip = f"203.0.{rng.randrange(113, 120)}.{rng.randrange(1, 255)}"
        detectors = rng.sample(DETECTORS, k=1 if rng.random() < 0.8 else 2)
        observables: dict[str, Any] = {"users": [user], "hosts": [host], "ips": [ip]}
        observables["src_ips"] = [ip]
        facts = {
            f"user:{user}": {
                "found": rng.random() < 0.9,
                "account": f"user{n}",
                "display_name": f"User {n}",
                "privileged": rng.random() < 0.08,
                "disabled": rng.random() < 0.02,
                "title": "Director of Sales" if rng.random() < 0.03 else "Engineer",
                "department": rng.choice(DEPARTMENTS),
            }
        }
        enrichment: dict[str, Any] = {
            "active_directory": {"status": "ok", "facts": facts, "error": None}
        }
        history = History(detectors=detectors)
        if rng.random() < 0.4:
            digest = f"{rng.getrandbits(256):064x}"
            observables["hashes"] = [digest]
            said = rng.choice(["malicious", "suspicious", "clean", "unknown"])
            positives = {"malicious": 55, "suspicious": 3}.get(said, 0)
            enrichment["virustotal"] = {
                "status": "ok",
                "facts": {
                    f"hash:{digest}": {"verdict": said, "detection_ratio": f"{positives}/70"}
                },
                "error": None,
            }
            if rng.random() < 0.3:
                history.sightings = {f"hash:{digest}": rng.randrange(1, 4)}
        if rng.random() < 0.1:
            history.user_verdicts = {f"user{n}": {"false_positive": rng.randrange(1, 3)}}
        if rng.random() < 0.15:
            history.repeat_hours = round(rng.uniform(1, 20), 2)
        degraded = rng.random() < 0.03
        if degraded:
            enrichment["greynoise"] = {"status": "timeout", "facts": {}, "error": "timed out"}
        created = now - timedelta(minutes=rng.randrange(60 * 24 * 60))
        values: dict[str, Any] = {
            "id": i,
            "title": rng.choice(TITLES),
            "severity": rng.choice(SEVERITIES),
            "observables": observables,
            "enrichment": enrichment,
            "degraded": degraded,
            "event_count": rng.choice([1, 1, 1, 2, 3, 5, 8]),
            "detectors": detectors,
            "history": history.model_dump(mode="json"),
            "suppressed_by": None,
            "created_at": created,
            "updated_at": created,
            "score_breakdown": [],
            "proposed_actions": [],
        }
        # model_construct: Incident(...) costs ~1 ms (SQLAlchemy sets, default factories)
        values["score"], lines = score(Incident.model_construct(**values), policy, history)
        verdict = decide(Incident.model_construct(**values), policy, targets)
        closed = rng.random() < 0.3
        yield {
            "id": i,
            "created_at": created,
            "updated_at": created + timedelta(minutes=rng.randrange(120)),
            "title": values["title"],
            "severity": values["severity"],
            "status": "closed" if closed else "open",
            "observables": observables,
            "enrichment": enrichment,
            "degraded": degraded,
            "score": values["score"],
            "score_breakdown": dump_breakdown(lines),
            "decision": verdict.decision.value,
            "proposed_actions": dump_proposals(verdict.proposed),
            "decision_reason": verdict.reason,
            "event_count": values["event_count"],
            "detectors": detectors,
            "history": values["history"],
            "verdict": rng.choice(["true_positive", "false_positive", "benign"])
            if closed
            else None,
            "closed_at": created + timedelta(hours=4) if closed else None,
        }


def seed(url: str, count: int, now: datetime) -> float:
    """Insert ``count`` incidents; return the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(database.sync_url(url))
    table = Incident.__table__  # type: ignore[attr-defined]
    rows = incidents(count, now, random.Random(7))
    with engine.begin() as connection:
        while chunk := [row for _, row in zip(range(CHUNK), rows, strict=False)]:
            connection.execute(table.insert(), chunk)
    engine.dispose()
    return time.perf_counter() - started


async def main(count: int) -> None:
    load_all()
    policy = Policy.model_validate(STRICT)
    targets: dict[str, Targets] = {
        rule.responder: registry.get(rule.responder) for rule in policy.actions
    }
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("FIDO_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.db'}"
        schema = None
        if not database.is_sqlite(url):  # a throw-away schema, dropped at the end
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(database.sync_url(url))
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            url += ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")
        database.upgrade(url)
        seeding = seed(url, count, datetime.now(UTC))
        db = database.Database(url)
        try:
            started = time.perf_counter()
            report = await backtest(db=db, policy=policy, responders=targets, since=None)
            took = time.perf_counter() - started
        finally:
            await db.dispose()
            if schema is not None:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    assert report.incidents == count
    backend = url.split(":", 1)[0]
    print(f"seeded {count} incidents ({backend}) in {seeding:.1f} s")
    print(
        f"  {len(report.changed)} changed: {report.band_changes} band, "
        f"{report.decision_changes} decision, {report.newly_auto} newly auto, "
        f"{report.no_longer_auto} no longer auto"
    )
    print(f"backtest: {count} incidents in {took:.1f} s ({count / took:,.0f} incidents/s)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
