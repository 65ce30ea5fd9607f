"""Engine.refresh: triage again (never a step down), act if raised, re-publish."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import select

from integrations.detectors.generic import GenericDetector
from pipeline import act, audit
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import Incident
from pipeline.notify import NullNotifier
from pipeline.policy import ActionPolicy, Policy, Thresholds
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

USERS = {"alice": {"display_name": "Alice"}}


def make(db: Database, thresholds: Thresholds) -> tuple[Engine, LockResponder]:
    responder = LockResponder()
    pipeline = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock")], thresholds=thresholds),
        enrichers=[DirectoryEnricher(USERS)],
        responders={"test_lock": responder},
        notifier=NullNotifier(),
    )
    return pipeline, responder


async def one(db: Database, pipeline: Engine, **alert: Any) -> Incident:
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(alert).encode())
    await pipeline.drain()
    async with db.session() as session:
        return (await session.exec(select(Incident))).one()


def cards(pipeline: Engine) -> list[Incident]:
    return [incident for incident, _ in pipeline.incidents.notifier.published]  # type: ignore[attr-defined]


async def test_a_refresh_never_steps_down(db: Database) -> None:
    pipeline, _ = make(db, Thresholds(ask_approval=70))
    incident = await one(db, pipeline, id="1", title="x", severity="critical", user="alice")
    assert incident.id is not None and incident.decision == "ask_approval"
    pipeline.reload(
        Policy(
            actions=[ActionPolicy(responder="test_lock")], thresholds=Thresholds(ask_approval=95)
        )
    )
    refreshed = await pipeline.refresh(incident.id)
    await pipeline.flush()
    assert refreshed is not None
    assert refreshed.decision == "ask_approval"  # decide() alone would say notify now
    assert refreshed.proposed_actions == [{"responder": "test_lock", "target": "alice"}]
    assert cards(pipeline)[-1].decision == "ask_approval" and len(cards(pipeline)) == 2
    async with db.session() as session:
        [entry] = await audit.entries(session, verb="incident.refreshed")
    assert entry.detail == {"score": 70, "decision": "ask_approval"}


async def test_a_record_raised_to_notify_is_posted(db: Database) -> None:
    pipeline, _ = make(db, Thresholds(notify=50))
    incident = await one(db, pipeline, id="1", title="x", severity="low", user="mallory")
    assert incident.id is not None and incident.decision == "record" and cards(pipeline) == []
    assert (await pipeline.refresh(incident.id)) is not None
    await pipeline.flush()
    assert cards(pipeline) == []  # still a record: nothing to post
    pipeline.reload(Policy(thresholds=Thresholds(notify=10), digest={"below": 0}))  # a card
    refreshed = await pipeline.refresh(incident.id)
    await pipeline.flush()
    assert refreshed is not None and refreshed.decision == "notify"
    assert [c.id for c in cards(pipeline)] == [incident.id]


async def test_raised_to_auto_act_acts(db: Database) -> None:
    pipeline, responder = make(db, Thresholds(ask_approval=70))
    incident = await one(db, pipeline, id="1", title="x", severity="critical", user="alice")
    assert incident.id is not None and responder.executions == []
    pipeline.reload(
        Policy(
            actions=[ActionPolicy(responder="test_lock")],
            thresholds=Thresholds(ask_approval=70, auto_act=70),
        )
    )
    refreshed = await pipeline.refresh(incident.id)
    await pipeline.flush()
    assert refreshed is not None and refreshed.decision == "auto_act"
    assert responder.executions == ["alice"]
    actions = await act.actions_for(db, incident_id=incident.id)
    assert [(a.requested_by, a.status) for a in actions] == [("fido", "succeeded")]
    await pipeline.refresh(incident.id)  # again: nothing is run twice
    await pipeline.flush()
    assert responder.executions == ["alice"]


async def test_refreshing_a_missing_incident(db: Database) -> None:
    pipeline, _ = make(db, Thresholds())
    assert await pipeline.refresh(12345) is None
