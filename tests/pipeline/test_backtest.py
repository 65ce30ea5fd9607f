"""The backtest on a real database: incidents stored as triage stores them, re-scored and
re-decided under another policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrations.detectors.generic import GenericDetector
from pipeline.backtest import BacktestReport, Change, band, count
from pipeline.backtest import backtest as run_backtest
from pipeline.db import Database
from pipeline.decide import Targets, decide
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import Decision, Incident
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import History, dump_breakdown, dump_proposals
from pipeline.score import score
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RESPONDERS: dict[str, Targets] = {"test_lock": LockResponder}  # the class, as the CLI passes
OLD = Policy(actions=[ActionPolicy(responder="test_lock")])  # the defaults otherwise
# asks from 50 instead of 70, acts automatically from 80, and a directory account weighs 20
NEW = Policy.model_validate(
    {
        "actions": [{"responder": "test_lock"}],
        "thresholds": {"ask_approval": 50, "auto_act": 80},
        "scoring": {"user": {"in_directory": 20}},
    }
)
ACNE = "44d88612fea8a8f36de82e1278abb02f"


def directory(**users: dict[str, Any]) -> dict[str, Any]:
    facts = {f"user:{name}": {"found": True, **extra} for name, extra in users.items()}
    return {"test_directory": {"status": "ok", "facts": facts, "error": None}}


async def store(
    db: Database,
    *,
    policy: Policy = OLD,
    created_at: datetime = NOW,
    history: History | None = None,
    **fields: Any,
) -> int:
    """An incident scored and decided under ``policy`` and stored as triage stores it."""
    incident = Incident(
        title="alert",
        created_at=created_at,
        updated_at=created_at,
        event_count=1,
        detectors=["generic"],
        history=(history or History(detectors=["generic"])).model_dump(mode="json"),
        **fields,
    )
    incident.score, lines = score(incident, policy)
    verdict = decide(incident, policy, RESPONDERS)
    incident.score_breakdown = dump_breakdown(lines)
    incident.decision = verdict.decision.value
    incident.decision_reason = verdict.reason
    incident.proposed_actions = dump_proposals(verdict.proposed)
    async with db.session() as session:
        session.add(incident)
        await session.commit()
        assert incident.id is not None
        return incident.id


async def seed(db: Database, policy: Policy = OLD) -> dict[str, int]:
    """Seven incidents whose scores and decisions the tests below work out by hand."""
    return {
        # critical 60 + directory 10 = 70 → ask; new: 60 + 20 = 80 → auto_act
        "alice": await store(
            db, policy=policy, severity="critical", observables={"users": ["alice"]},
            enrichment=directory(alice={}),
        ),
        # high 40 + 10 = 50 → notify; new: 60 → ask_approval
        "bob": await store(
            db, policy=policy, severity="high", observables={"users": ["bob"]},
            enrichment=directory(bob={}),
        ),
        # medium 25, nobody to contain → notify either way
        "quiet": await store(db, policy=policy, severity="medium"),
        # low 10, a user the directory does not know → notify either way
        "ghost": await store(
            db, policy=policy, severity="low", observables={"users": ["ghost"]},
            enrichment={"test_directory": {"facts": {"user:ghost": {"found": False}}}},
        ),
        # privileged: 85 → 95, critical either way, proposed for two approvers, never
        # automatic → ask_approval either way
        "admin": await store(
            db, policy=policy, severity="critical", observables={"users": ["root"]},
            enrichment=directory(root={"privileged": True}),
        ),
        # high 40 + malicious hash 25 = 65 → notify either way (no user to contain)
        "hash": await store(
            db, policy=policy, severity="high", observables={"hashes": [ACNE]},
            enrichment={"virustotal": {"status": "ok", "facts": {f"hash:{ACNE}": {
                "verdict": "malicious", "detection_ratio": "60/70"}}}},
        ),
        # degraded: 70 → 80 (high → critical) but asks instead of acting
        "degraded": await store(
            db, policy=policy, severity="critical", observables={"users": ["carol"]},
            enrichment=directory(carol={}), degraded=True,
        ),
    }  # fmt: skip


async def test_a_stricter_policy_reports_every_band_and_decision_change(db: Database) -> None:
    ids = await seed(db)
    report = await run_backtest(db=db, policy=NEW, responders=RESPONDERS, since=None)
    assert report == BacktestReport(
        incidents=7,
        changed=[
            Change(
                incident=ids["alice"],
                score=(70, 80),
                decision=(Decision.ask_approval, Decision.auto_act),
            ),
            Change(
                incident=ids["bob"],
                score=(50, 60),
                decision=(Decision.notify, Decision.ask_approval),
            ),
            Change(
                incident=ids["degraded"],
                score=(70, 80),
                decision=(Decision.ask_approval, Decision.ask_approval),
            ),
        ],
        band_changes=2,
        decision_changes=2,
        newly_auto=1,
        no_longer_auto=0,
        transitions={
            "ask_approval": {"ask_approval": 2, "auto_act": 1},
            "notify": {"ask_approval": 1, "notify": 3},
        },
    )
    assert json.loads(report.model_dump_json())["changed"][0] == {
        "incident": ids["alice"],
        "score": [70, 80],
        "decision": ["ask_approval", "auto_act"],
    }


async def test_going_back_to_the_defaults_is_no_longer_automatic(db: Database) -> None:
    ids = await seed(db, policy=NEW)
    report = await run_backtest(db=db, policy=OLD, responders=RESPONDERS, since=None)
    assert [c.incident for c in report.changed] == [ids["alice"], ids["bob"], ids["degraded"]]
    assert (report.newly_auto, report.no_longer_auto) == (0, 1)
    assert report.transitions == {
        "ask_approval": {"ask_approval": 2, "notify": 1},
        "auto_act": {"ask_approval": 1},
        "notify": {"notify": 3},
    }


async def test_the_same_policy_changes_nothing(db: Database) -> None:
    await seed(db)
    report = await run_backtest(db=db, policy=OLD, responders=RESPONDERS, since=None)
    assert (report.incidents, report.changed, report.band_changes) == (7, [], 0)
    assert report.transitions == {"ask_approval": {"ask_approval": 3}, "notify": {"notify": 4}}


async def test_since_takes_only_incidents_created_since(db: Database) -> None:
    old = await store(
        db,
        created_at=NOW - timedelta(days=40),
        severity="critical",
        observables={"users": ["alice"]},
        enrichment=directory(alice={}),
    )
    recent = await store(
        db,
        created_at=NOW - timedelta(days=2),
        severity="critical",
        observables={"users": ["bob"]},
        enrichment=directory(bob={}),
    )
    since = NOW - timedelta(days=30)
    report = await run_backtest(db=db, policy=NEW, responders=RESPONDERS, since=since)
    assert report.incidents == 1 == await count(db=db, since=since)
    assert [c.incident for c in report.changed] == [recent]
    everything = await run_backtest(db=db, policy=NEW, responders=RESPONDERS, since=None)
    assert [c.incident for c in everything.changed] == [old, recent]
    assert await count(db=db, since=None) == 2


async def test_the_stored_history_is_what_is_scored_again(db: Database) -> None:
    """Repeats and sightings come from the history kept on the incident, not from the other
    incidents in the database (there are none here)."""
    history = History(detectors=["generic"], repeat_hours=13, sightings={f"hash:{ACNE}": 2})
    recurring = await store(db, severity="medium", observables={"hashes": [ACNE]}, history=history)
    first = await store(db, severity="medium", observables={"hashes": [ACNE]})
    # default: medium 25 + seen in 2 earlier incidents 2×3 + recurring ≥ 12 h 10 = 41
    assert band(41).value == "medium"
    weighty = Policy.model_validate(
        {
            "actions": [{"responder": "test_lock"}],
            "scoring": {
                "threat": {"seen_before": 10, "max_seen_before": 30},
                "correlation": {"repeat_after_hours": {4: 5, 12: 20}},
            },
        }
    )
    report = await run_backtest(db=db, policy=weighty, responders=RESPONDERS, since=None)
    # 25 + 2×10 + 20 = 65: medium → high; the incident without history stays at 25
    assert report.changed == [
        Change(incident=recurring, score=(41, 65), decision=(Decision.notify, Decision.notify))
    ]
    assert first not in [c.incident for c in report.changed]


async def test_batches_and_progress(db: Database) -> None:
    await seed(db)
    seen: list[int] = []
    paged = await run_backtest(
        db=db, policy=NEW, responders=RESPONDERS, since=None, progress=seen.append, batch=3
    )
    assert seen == [3, 3, 1]
    whole = await run_backtest(db=db, policy=NEW, responders=RESPONDERS, since=None)
    assert paged == whole


@pytest.mark.parametrize(
    ("score_", "name"),
    [(0, "low"), (24, "low"), (25, "medium"), (49, "medium"), (50, "high"), (74, "high")]
    + [(75, "critical"), (100, "critical")],
)
def test_bands(score_: int, name: str) -> None:
    assert band(score_).value == name


async def test_incidents_triaged_by_the_pipeline_replay_exactly(db: Database) -> None:
    """What triage stored (score, decision, history) is reproduced under the same policy."""
    engine = Engine(
        db=db,
        policy=OLD,
        enrichers=[DirectoryEnricher({"alice": {}, "bob": {"privileged": True}})],
        responders={"test_lock": LockResponder()},
    )
    alerts = [
        {"id": "1", "title": "Bad sign-in", "severity": "critical", "user": "alice"},
        {"id": "2", "title": "Bad sign-in", "severity": "critical", "user": "alice"},
        {"id": "3", "title": "Malware", "severity": "high", "user": "bob", "host": "pc-1"},
        {"id": "4", "title": "Scan", "severity": "low", "src_ip": "198.51.100.7"},
        {"id": "5", "title": "Scan", "severity": "medium", "src_ip": "198.51.100.7"},
    ]
    for alert in alerts:
        async with db.session() as session:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(alert).encode()
            )
    assert await engine.drain() == len(alerts)
    same = await run_backtest(db=db, policy=OLD, responders=RESPONDERS, since=None)
    assert (same.incidents, same.changed) == (3, [])
    stricter = await run_backtest(db=db, policy=NEW, responders=RESPONDERS, since=None)
    # alice: critical 60 + directory 20 + 1 more event 3 = 83 → acted on automatically;
    # bob: high 40 + user (20 + privileged 15, capped at 30) = 70: privileged, so asked
    # of two approvers, never automatic
    assert [(c.score, c.decision) for c in stricter.changed] == [
        ((73, 83), (Decision.ask_approval, Decision.auto_act)),
        ((65, 70), (Decision.notify, Decision.ask_approval)),
    ]
