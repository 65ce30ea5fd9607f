"""The pipeline end to end on a real database, with test plugins at the edges."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from integrations.detectors.generic import GenericDetector
from pipeline import act, audit, queue
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.errors import InputError, NotAuthorized, ResponderError
from pipeline.ingest import ingest
from pipeline.models import Action, Event, Incident, utcnow
from pipeline.policy import ActionPolicy, Policy, Thresholds
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

APPROVER = "UAPPROVER"
USERS = {"alice": {"display_name": "Alice"}, "bob": {"display_name": "Bob"}}


def make(db: Database, **kw: Any) -> tuple[Engine, DirectoryEnricher, LockResponder]:
    enricher = kw.pop("enricher", None) or DirectoryEnricher(USERS)
    responder = kw.pop("responder", None) or LockResponder()
    policy = kw.pop("policy", None) or Policy(actions=[ActionPolicy(responder="test_lock")])
    pipeline = Engine(
        db=db,
        policy=policy,
        enrichers=[enricher],
        responders={"test_lock": responder},
        approvers=[APPROVER],
        **kw,
    )
    return pipeline, enricher, responder


async def send(db: Database, **alert: Any) -> list[int]:
    async with db.session() as session:
        result = await ingest(
            session=session, detector=GenericDetector(), body=json.dumps(alert).encode()
        )
    return result.created


async def only_incident(db: Database) -> Incident:
    async with db.session() as session:
        return (await session.exec(select(Incident))).one()


async def test_alert_becomes_scored_incident_asking_approval(db: Database) -> None:
    pipeline, enricher, _ = make(db)
    await send(db, id="1", title="Bad sign-in", severity="critical", user="alice")
    assert await pipeline.drain() == 1
    incident = await only_incident(db)
    assert incident.score == 70  # severity critical 60 + a real directory account 10
    assert incident.decision == "ask_approval"
    assert incident.proposed_actions == [{"responder": "test_lock", "target": "alice"}]
    assert incident.enrichment["test_directory"]["facts"]["user:alice"]["display_name"] == "Alice"
    assert pipeline.incidents.notifier.published[0][0].id == incident.id  # type: ignore[attr-defined]
    async with db.session() as session:
        event = (await session.exec(select(Event))).one()
    assert (event.status, event.incident_id) == ("done", incident.id)


async def test_duplicate_delivery_is_dropped(db: Database) -> None:
    assert await send(db, id="same", title="x") != []
    assert await send(db, id="same", title="x") == []
    async with db.session() as session:
        assert len((await session.exec(select(Event))).all()) == 1


async def test_events_sharing_a_user_join_one_incident(db: Database) -> None:
    pipeline, _, _ = make(db)
    await send(db, id="1", title="first", severity="medium", user="alice")
    await send(db, id="2", title="second", severity="critical", user="ALICE", host="pc-1")
    await send(db, id="3", title="unrelated", severity="low", user="bob")
    await pipeline.drain()
    async with db.session() as session:
        incidents = (await session.exec(select(Incident).order_by(col(Incident.id)))).all()
    assert [i.event_count for i in incidents] == [2, 1]
    assert incidents[0].severity == "critical"
    assert incidents[0].title == "second"
    assert incidents[0].observables["hosts"] == ["pc-1"]
    extra = {"points": 3, "reason": "1 more related event", "component": "correlation"}
    assert extra in incidents[0].score_breakdown


async def test_failed_enricher_degrades_but_does_not_stop(db: Database) -> None:
    pipeline, _, _ = make(db, enricher=DirectoryEnricher(USERS, fail=True))
    await send(db, id="1", title="x", severity="critical", user="alice")
    await pipeline.drain()
    incident = await only_incident(db)
    assert incident.degraded
    assert incident.enrichment["test_directory"]["status"] == "error"
    assert incident.decision == "notify"  # the user cannot be confirmed, so nothing proposed


async def test_slow_enricher_times_out(db: Database) -> None:
    policy = Policy(actions=[ActionPolicy(responder="test_lock")], enrichment_timeout_seconds=0.05)
    pipeline, _, _ = make(db, enricher=DirectoryEnricher(USERS, delay=5), policy=policy)
    await send(db, id="1", title="x", user="alice")
    await pipeline.drain()
    incident = await only_incident(db)
    assert incident.enrichment["test_directory"]["status"] == "timeout"
    assert incident.degraded


async def test_a_crashing_event_is_kept_failed_and_others_go_on(db: Database, mocker) -> None:
    pipeline, _, _ = make(db)
    await send(db, id="bad", title="x", user="alice")
    await send(db, id="good", title="y", user="bob")
    real = pipeline.triage.enrich

    async def flaky(event: Event) -> Any:
        if event.external_id == "bad":
            raise RuntimeError("boom")
        return await real(event)

    mocker.patch.object(pipeline.triage, "enrich", side_effect=flaky)
    for _ in range(queue.MAX_ATTEMPTS + 2):
        await pipeline.drain()
    async with db.session() as session:
        events = {e.external_id: e for e in (await session.exec(select(Event))).all()}
    assert events["good"].status == "done"
    assert events["bad"].status == "failed"
    assert events["bad"].attempts == queue.MAX_ATTEMPTS
    assert "boom" in (events["bad"].last_error or "")


async def test_restart_resumes_an_event_left_processing(db: Database) -> None:
    [event_id] = await send(db, id="1", title="x", user="alice")
    claimed = await queue.claim(db)
    assert claimed is not None and claimed.id == event_id
    assert await queue.claim(db) is None  # leased to the crashed worker
    async with db.session() as session:  # the lease runs out
        await session.exec(update(Event).values(claimed_at=utcnow() - timedelta(hours=1)))
        await session.commit()
    pipeline, _, _ = make(db)
    assert await pipeline.drain() == 1
    async with db.session() as session:
        assert (await session.get(Event, event_id)).status == "done"  # type: ignore[union-attr]


async def approved_incident(db: Database) -> tuple[Engine, LockResponder, int]:
    pipeline, _, responder = make(db)
    await send(db, id="1", title="x", severity="critical", user="alice")
    await pipeline.drain()
    incident = await only_incident(db)
    assert incident.id is not None
    return pipeline, responder, incident.id


async def test_approval_runs_responder_once_and_audits(db: Database) -> None:
    pipeline, responder, incident_id = await approved_incident(db)
    first = await pipeline.incidents.approve(
        incident_id=incident_id, responder="test_lock", target="alice", actor=APPROVER
    )
    with pytest.raises(InputError, match="already decided: succeeded"):  # a second click
        await pipeline.incidents.approve(
            incident_id=incident_id, responder="test_lock", target="alice", actor=APPROVER
        )
    assert first.status == "succeeded"
    assert responder.executions == ["alice"]
    assert responder.locked == {"alice"}
    async with db.session() as session:
        verbs = [e.verb for e in await audit.entries(session, incident_id=incident_id)]
    assert verbs == ["incident.scored", "action.succeeded"]
    # the card was updated with the action, through the outbox
    await pipeline.flush()
    _, actions = pipeline.incidents.notifier.published[-1]  # type: ignore[attr-defined]
    assert [a.status for a in actions] == ["succeeded"]


async def test_non_approver_changes_nothing_and_is_audited(db: Database) -> None:
    pipeline, responder, incident_id = await approved_incident(db)
    with pytest.raises(NotAuthorized):
        await pipeline.incidents.approve(
            incident_id=incident_id, responder="test_lock", target="alice", actor="UINTRUDER"
        )
    assert responder.executions == []
    async with db.session() as session:
        refused = await audit.entries(session, verb="refused")
        assert (await session.exec(select(Action))).all() == []
    assert [(e.actor, e.target) for e in refused] == [("UINTRUDER", "approve test_lock")]


async def test_only_proposed_targets_can_be_approved(db: Database) -> None:
    pipeline, responder, incident_id = await approved_incident(db)
    with pytest.raises(InputError, match="not proposed"):
        await pipeline.incidents.approve(
            incident_id=incident_id, responder="test_lock", target="bob", actor=APPROVER
        )
    assert responder.executions == []


async def test_deny_blocks_later_approval(db: Database) -> None:
    pipeline, responder, incident_id = await approved_incident(db)
    denied = await pipeline.incidents.deny(
        incident_id=incident_id, responder="test_lock", target="alice", actor=APPROVER
    )
    with pytest.raises(InputError, match="already decided: denied"):
        await pipeline.incidents.approve(
            incident_id=incident_id, responder="test_lock", target="alice", actor=APPROVER
        )
    assert denied.status == "denied"
    assert responder.executions == []


async def test_undo_reverses_once(db: Database) -> None:
    pipeline, responder, incident_id = await approved_incident(db)
    action = await pipeline.incidents.approve(
        incident_id=incident_id, responder="test_lock", target="alice", actor=APPROVER
    )
    assert action.id is not None
    undone = await pipeline.incidents.undo(
        incident_id=incident_id, action_id=action.id, actor=APPROVER
    )
    again = await pipeline.incidents.undo(
        incident_id=incident_id, action_id=action.id, actor=APPROVER
    )
    assert undone.status == again.status == "undone"
    assert undone.undone_by == APPROVER
    assert responder.locked == set()


async def test_failed_responder_is_recorded(db: Database) -> None:
    pipeline, _, _ = make(db, responder=LockResponder(fail=True))
    await send(db, id="1", title="x", severity="critical", user="alice")
    await pipeline.drain()
    incident = await only_incident(db)
    action = await pipeline.incidents.approve(
        incident_id=incident.id,
        responder="test_lock",  # type: ignore[arg-type]
        target="alice",
        actor=APPROVER,
    )
    assert action.status == "failed"
    assert "cannot lock alice" in (action.result or "")


async def test_auto_act_when_opted_in_and_dry_run_acts_on_nothing(db: Database) -> None:
    auto = Policy(
        actions=[ActionPolicy(responder="test_lock")],
        thresholds=Thresholds(ask_approval=60, auto_act=70),
    )
    pipeline, _, responder = make(db, policy=auto)
    await send(db, id="1", title="x", severity="critical", user="alice")
    await pipeline.drain()
    assert responder.locked == {"alice"}
    actions = await act.actions_for(db, incident_id=(await only_incident(db)).id)  # type: ignore[arg-type]
    assert [(a.requested_by, a.status) for a in actions] == [("fido", "succeeded")]


async def test_protected_account_is_refused_even_when_approved(db: Database) -> None:
    pipeline, responder, incident_id = await approved_incident(db)
    pipeline.reload(
        Policy(actions=[ActionPolicy(responder="test_lock")], protected_accounts=["alice"])
    )
    with pytest.raises(ResponderError, match="protected"):
        await pipeline.incidents.approve(
            incident_id=incident_id, responder="test_lock", target="alice", actor=APPROVER
        )
    assert responder.executions == []


async def test_over_long_ids_and_vendor_severities_fit_their_columns(db: Database) -> None:
    from pipeline.ingest import store
    from pipeline.plugins import ParsedEvent

    long_a, long_b = "a" * 300, "a" * 299 + "b"
    async with db.session() as session:
        result = await store(
            session=session,
            detector="generic",
            parsed=[
                ParsedEvent(
                    external_id=long_a,
                    title="x",
                    severity="low",
                    raw="{}",
                    vendor_severity="v" * 100,
                ),
                ParsedEvent(external_id=long_b, title="y", severity="low", raw="{}"),
            ],
        )
    assert len(result.created) == 2
    async with db.session() as session:
        events = (await session.exec(select(Event).order_by(col(Event.id)))).all()
    assert all(len(e.external_id) <= 255 for e in events)
    assert events[0].external_id != events[1].external_id
    assert events[0].vendor_severity == "v" * 64
