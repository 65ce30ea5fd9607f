"""Approval that holds, on a real database: approvers per action, no self-approval, the
two-person rule, stale and old buttons, pause and resume surviving a restart, a
responder's hourly cap tripping at N+1, per-rule dry-run, and time-boxed containment
undone by the clock unless extended."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.slack.blocks import incident_card, render_text
from integrations.detectors.generic import GenericDetector
from pipeline import audit, reads
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.errors import InputError, NotAuthorized
from pipeline.incidents import EXPIRY_ACTOR
from pipeline.ingest import ingest
from pipeline.models import Action, Incident
from pipeline.notify import NullNotifier
from pipeline.policy import ActionPolicy, Policy, Thresholds
from pipeline.records import proposals_of
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

ALICE = "UALICE"  # an approver whose Slack e-mail is alice's directory e-mail
BOB = "UBOB"
CAROL = "UCAROL"
GROUPIE = "UGROUPIE"
USERS = {
    "alice": {"mail": "Alice@corp.example", "display_name": "Alice"},
    "ceo": {"mail": "ceo@corp.example", "title": "Chief Executive Officer"},
    "dave": {"mail": "dave@corp.example"},
    "erin": {"mail": "erin@corp.example"},
    "frank": {"mail": "frank@corp.example"},
    "gina": {"mail": "gina@corp.example"},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class People:
    emails = {ALICE: "alice@corp.example", BOB: "bob@corp.example", CAROL: "carol@corp.example"}
    groups = {"SSECOPS": {GROUPIE}}

    def __init__(self) -> None:
        self.down = False

    async def email(self, user_id: str) -> str | None:
        if self.down:
            raise RuntimeError("Slack is unreachable")
        return self.emails.get(user_id)

    async def in_group(self, user_id: str, group_id: str) -> bool:
        return user_id in self.groups.get(group_id, set())


def make(db: Database, clock: Clock | None = None, **rule: Any) -> tuple[Engine, LockResponder]:
    responder = LockResponder()
    policy = Policy(
        actions=[ActionPolicy(responder="test_lock", **rule)],
        thresholds=Thresholds(ask_approval=60),
    )
    engine = Engine(
        db=db,
        policy=policy,
        enrichers=[DirectoryEnricher(USERS)],
        responders={"test_lock": responder},
        notifier=NullNotifier(),
        approvers=[ALICE, BOB, CAROL],
        people=People(),
        clock=clock or Clock(),
    )
    return engine, responder


async def send(db: Database, user: str, n: int = 1) -> None:
    """Ingest one alert about ``user``, leaving it queued (a burst drains them together)."""
    async with db.session() as session:
        body = {
            "id": f"{user}-{n}",
            "title": "credential dump",
            "severity": "critical",
            "user": user,
        }
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(body).encode())


async def incident_of(db: Database, user: str) -> Incident:
    async with db.session() as session:
        incidents = (await session.exec(select(Incident).order_by(Incident.id))).all()  # type: ignore[arg-type]
    return next(i for i in incidents if user in i.observables.get("users", []))


async def alert(db: Database, engine: Engine, user: str, n: int = 1) -> Incident:
    await send(db, user, n)
    await engine.drain()
    async with db.session() as session:
        incidents = (await session.exec(select(Incident).order_by(Incident.id.desc()))).all()  # type: ignore[union-attr]
    return incidents[0]


async def click(engine: Engine, incident: Incident, target: str, actor: str, **kw: Any) -> Action:
    assert incident.id is not None
    return await engine.incidents.approve(
        incident_id=incident.id,
        responder="test_lock",
        target=target,
        actor=actor,
        version=kw.pop("version", incident.decision_version),
        issued=kw.pop("issued", engine.incidents.now()),
    )


async def verbs(db: Database) -> list[str]:
    async with db.session() as session:
        return [e.verb for e in await audit.entries(session)]


async def test_no_self_approval(db: Database) -> None:
    engine, responder = make(db)
    incident = await alert(db, engine, "alice")
    with pytest.raises(NotAuthorized, match="your own account"):
        await click(engine, incident, "alice", ALICE)
    assert responder.executions == []
    assert "refused.self_approval" in await verbs(db)
    assert (await click(engine, incident, "alice", BOB)).status == "succeeded"


async def test_self_approval_cannot_be_checked_so_it_is_refused(db: Database) -> None:
    engine, responder = make(db)
    incident = await alert(db, engine, "alice")
    engine.incidents.people.down = True  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="could not check"):
        await click(engine, incident, "alice", BOB)
    assert responder.executions == []


async def test_approvers_per_action_by_id_and_by_group(db: Database) -> None:
    engine, responder = make(db, approvers=["UONCALL"], approver_group="SSECOPS")
    incident = await alert(db, engine, "dave")
    with pytest.raises(NotAuthorized):
        await click(engine, incident, "dave", "USTRANGER")
    dave = await click(engine, incident, "dave", GROUPIE)
    assert dave.status == "succeeded"
    incident = await alert(db, engine, "erin")
    erin = await click(engine, incident, "erin", "UONCALL")
    assert erin.status == "succeeded"
    assert responder.executions == ["dave", "erin"]
    # the same approvers may undo, and nobody else
    for action in (dave, erin):
        assert action.id is not None and action.incident_id is not None
        with pytest.raises(NotAuthorized):
            await engine.incidents.undo(
                incident_id=action.incident_id, action_id=action.id, actor="USTRANGER"
            )
    assert dave.id is not None and dave.incident_id is not None
    undone = await engine.incidents.undo(
        incident_id=dave.incident_id, action_id=dave.id, actor="UONCALL"
    )
    assert undone.status == "undone"
    assert erin.id is not None and erin.incident_id is not None
    undone = await engine.incidents.undo(
        incident_id=erin.incident_id, action_id=erin.id, actor=GROUPIE
    )
    assert undone.status == "undone"


async def test_two_person_rule_needs_two_distinct_approvers(db: Database) -> None:
    engine, responder = make(db)
    incident = await alert(db, engine, "ceo")  # a VIP by title: two people, never automatic
    first = await click(engine, incident, "ceo", BOB)
    assert first.status == "awaiting_2nd" and responder.executions == []
    with pytest.raises(InputError, match="second, different approver"):
        await click(engine, incident, "ceo", BOB)
    second = await click(engine, incident, "ceo", CAROL)
    assert second.status == "succeeded" and second.approvals == [BOB, CAROL]
    assert responder.executions == ["ceo"]
    with pytest.raises(InputError, match="already decided"):
        await click(engine, incident, "ceo", ALICE)


async def test_two_approvers_clicking_at_once_make_one_action(db: Database) -> None:
    engine, responder = make(db, two_person=True)
    incident = await alert(db, engine, "dave")
    await click(engine, incident, "dave", BOB)
    results = await asyncio.gather(
        click(engine, incident, "dave", CAROL),
        click(engine, incident, "dave", ALICE),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Action) for r in results) == 1
    assert all(isinstance(r, Action | InputError) for r in results)
    assert responder.executions == ["dave"]


async def test_two_first_clicks_at_once_on_a_one_approver_action_make_one_action(
    db: Database,
) -> None:
    engine, responder = make(db, two_person=False)
    incident = await alert(db, engine, "dave")
    results = await asyncio.gather(
        click(engine, incident, "dave", BOB),
        click(engine, incident, "dave", CAROL),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Action) for r in results) == 1
    assert all(isinstance(r, Action | InputError) for r in results), results
    assert responder.executions == ["dave"]


async def test_a_stale_or_old_button_is_refused(db: Database) -> None:
    clock = Clock()
    engine, responder = make(db, clock)
    incident = await alert(db, engine, "dave")
    with pytest.raises(InputError, match="changed since"):
        await click(engine, incident, "dave", BOB, version=incident.decision_version - 1)
    old = clock.now - timedelta(hours=25)
    with pytest.raises(InputError, match="older than 24 hours"):
        await click(engine, incident, "dave", BOB, issued=old)
    assert responder.executions == []
    assert (await click(engine, incident, "dave", BOB)).status == "succeeded"


async def test_pause_survives_a_restart_and_resume_lifts_it(db: Database) -> None:
    engine, responder = make(db)
    engine.reload(engine.policy.model_copy(update={"thresholds": Thresholds(auto_act=70)}))
    with pytest.raises(NotAuthorized):
        await engine.incidents.pause(actor="USTRANGER")
    assert await engine.incidents.pause(actor=BOB, reason="change freeze")
    await engine.flush()
    assert "paused automatic action: change freeze" in engine.incidents.notifier.notices[0]  # type: ignore[attr-defined]
    restarted, responder = make(db)  # a new process: the pause is in the database
    restarted.reload(engine.policy)
    incident = await alert(db, restarted, "dave")
    assert incident.decision == "ask_approval" and "paused by <@UBOB>" in (
        incident.decision_reason or ""
    )
    assert responder.executions == []
    assert await restarted.incidents.resume(actor=CAROL)
    incident = await alert(db, restarted, "erin")
    await restarted.drain()
    assert incident.decision == "auto_act" and responder.executions == ["erin"]


async def test_an_action_queued_before_a_pause_asks_instead(db: Database) -> None:
    engine, responder = make(db)
    engine.reload(engine.policy.model_copy(update={"thresholds": Thresholds(auto_act=70)}))
    await send(db, "dave")
    await engine.worker.drain()  # triaged: the action is queued, not run yet
    assert (await incident_of(db, "dave")).decision == "auto_act"
    assert await engine.incidents.pause(actor=BOB)
    await engine.flush()
    assert responder.executions == []
    incident = await incident_of(db, "dave")
    assert "asking for test_lock on dave: automatic action is paused by <@UBOB>" in (
        incident.decision_reason or ""
    )
    assert [p.automatic for p in proposals_of(incident.proposed_actions)] == [False]
    assert "action.asked_instead" in await verbs(db)
    assert (await click(engine, incident, "dave", CAROL)).status == "succeeded"
    assert responder.executions == ["dave"]


async def test_an_action_queued_past_a_lowered_cap_asks_instead(db: Database) -> None:
    engine, responder = make(db)
    engine.reload(engine.policy.model_copy(update={"thresholds": Thresholds(auto_act=70)}))
    await send(db, "dave")
    await engine.worker.drain()
    capped = ActionPolicy(responder="test_lock", max_auto_per_hour=0)
    engine.reload(engine.policy.model_copy(update={"actions": [capped]}))
    await engine.flush()
    assert responder.executions == []
    assert "test_lock reached its cap of 0" in (
        (await incident_of(db, "dave")).decision_reason or ""
    )


async def test_a_proposal_held_back_in_an_automatic_incident_keeps_its_buttons(
    db: Database,
) -> None:
    lock, held = LockResponder(), LockResponder()
    engine = Engine(
        db=db,
        policy=Policy(
            actions=[
                ActionPolicy(responder="test_lock"),
                ActionPolicy(responder="test_hold", auto=False),
            ],
            thresholds=Thresholds(ask_approval=60, auto_act=70),
        ),
        enrichers=[DirectoryEnricher(USERS)],
        responders={"test_lock": lock, "test_hold": held},
        approvers=[BOB],
    )
    incident = await alert(db, engine, "dave")
    assert incident.decision == "auto_act" and lock.executions == ["dave"]
    assert "asking for the rest: test_hold on dave always asks" in (incident.decision_reason or "")
    assert incident.id is not None
    actions = await engine.incidents.get(incident.id)
    assert actions is not None
    waiting = reads.pending(incident, actions[1])
    assert [(p.responder, p.target) for p in waiting] == [("test_hold", "dave")]
    drawn = render_text(incident_card(incident, actions[1], labels={"test_hold": "hold"}))
    assert "Approve: hold dave" in drawn and "Approve: lock" not in drawn
    assert held.executions == []


class SessionsResponder(LockResponder):
    """Ends sessions: it leaves undo data, yet nothing can bring the sessions back."""

    reversible = False


async def test_an_irreversible_action_offers_no_undo_and_refuses_one(db: Database) -> None:
    ends = SessionsResponder()
    engine = Engine(
        db=db,
        policy=Policy(
            actions=[ActionPolicy(responder="test_lock")], thresholds=Thresholds(ask_approval=60)
        ),
        enrichers=[DirectoryEnricher(USERS)],
        responders={"test_lock": ends},
        approvers=[BOB],
        people=People(),
    )
    incident = await alert(db, engine, "dave")
    action = await click(engine, incident, "dave", BOB)
    assert action.status == "succeeded" and action.undo_data and action.id is not None
    assert engine.incidents.reversible() == frozenset()
    drawn = incident_card(incident, [action], reversible=engine.incidents.reversible())
    assert "Undo" not in render_text(drawn)
    with pytest.raises(InputError, match="test_lock on dave cannot be undone"):
        await engine.incidents.undo(incident_id=incident.id or 0, action_id=action.id, actor=BOB)
    async with db.session() as session:
        kept = await session.get(Action, action.id)
    assert kept is not None and kept.status == "succeeded"


async def test_a_responders_cap_trips_at_n_plus_one_and_stays_until_reset(db: Database) -> None:
    engine, responder = make(db, max_auto_per_hour=2)
    engine.reload(engine.policy.model_copy(update={"thresholds": Thresholds(auto_act=70)}))
    for n, user in enumerate(["alice", "dave", "erin"]):
        await send(db, user, n)
    await engine.drain()  # one burst: triaged before any action ran
    # the third asked instead (two incidents' actions run concurrently, in either order)
    assert sorted(responder.executions) == ["alice", "dave"]
    third = await incident_of(db, "erin")
    assert third.decision == "ask_approval" and "reached its cap of 2" in (
        third.decision_reason or ""
    )
    notices = engine.incidents.notifier.notices  # type: ignore[attr-defined]
    assert sum("reached its cap of 2" in n for n in notices) == 1
    assert (await verbs(db)).count("automation.cap_tripped") == 1
    await alert(db, engine, "dave", 9)  # the same incident again: no second action, no trip
    await alert(db, engine, "frank")  # still tripped, whatever the count
    assert sorted(responder.executions) == ["alice", "dave"]
    assert (await incident_of(db, "frank")).decision == "ask_approval"
    assert await engine.incidents.resume(actor=BOB, responder="test_lock")
    assert "automation.cap_reset" in await verbs(db)
    await alert(db, engine, "gina")  # reset: the count starts again
    assert sorted(responder.executions[:2]) == ["alice", "dave"]
    assert responder.executions[2:] == ["gina"]
    assert (await incident_of(db, "gina")).decision == "auto_act"


async def test_the_hourly_cap_on_all_automatic_actions_holds_in_a_burst(db: Database) -> None:
    engine, responder = make(db)
    engine.reload(
        engine.policy.model_copy(
            update={"thresholds": Thresholds(auto_act=70), "max_auto_actions_per_hour": 2}
        )
    )
    for n, user in enumerate(["alice", "dave", "erin"]):
        await send(db, user, n)
    await engine.drain()
    assert sorted(responder.executions) == ["alice", "dave"]
    third = await incident_of(db, "erin")
    assert third.decision == "ask_approval" and "cap of 2 automatic actions per hour" in (
        third.decision_reason or ""
    )


async def test_per_rule_dry_run_says_what_it_would_have_done(db: Database) -> None:
    engine, responder = make(db, dry_run=True)
    incident = await alert(db, engine, "dave")
    action = await click(engine, incident, "dave", BOB)
    assert action.status == "dry_run" and responder.executions == []
    assert action.result == "dry run: would have done this: Lock dave"


async def test_a_time_boxed_containment_is_undone_unless_extended(db: Database) -> None:
    clock = Clock()
    engine, responder = make(db, clock, expire_after_hours=4)
    incident = await alert(db, engine, "dave")
    action = await click(engine, incident, "dave", BOB)
    assert action.id is not None and action.expires_at is not None
    clock.now += timedelta(hours=3)
    assert await engine.incidents.expire_due() == 0
    await engine.incidents.extend(action_id=action.id, hours=2, actor=CAROL)
    clock.now += timedelta(hours=2)  # 5 h: past the first time box, within the extended one
    assert await engine.incidents.expire_due() == 0 and responder.locked == {"dave"}
    clock.now += timedelta(hours=2)
    assert await engine.incidents.expire_due() == 1
    assert responder.locked == set()
    async with db.session() as session:
        done = await session.get(Action, action.id)
    assert done is not None and done.status == "undone" and done.undone_by == EXPIRY_ACTOR
    assert await engine.incidents.expire_due() == 0  # once
