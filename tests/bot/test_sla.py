"""The approval SLA on a controllable clock, with fractional minutes: a pending approval is
re-announced in the card's thread mentioning the approver group, escalated to a second
channel and group, and on timeout gets the policy's default — denied, or run where the
policy says so (never a two-person action) — shown on the card and audited. An approval
decided in time hears nothing more."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.notifier import SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline import controls
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import AuditEntry, Incident
from pipeline.policy import ActionPolicy, Policy
from pipeline.sla import run_sla
from tests.fixtures.slack import FakeSlack
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

CHANNEL, ESCALATION = "C0SECURITY", "C0ESCALATE"
APPROVER = "UANALYST"
SLA = {
    "remind_minutes": 0.5,
    "escalate_minutes": 1,
    "escalate_channel": ESCALATION,
    "escalate_group": "SONCALL",
    "timeout_minutes": 2.5,
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def minutes(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def make(
    db: Database, slack: FakeSlack, clock: Clock, *, rule: dict[str, Any] | None = None, **sla: Any
) -> Engine:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=slack.token,
        SLACK_API_URL=slack.base_url,
    )
    action = ActionPolicy(responder="test_lock", approver_group="SAPPROVERS", **(rule or {}))
    return Engine(
        db=db,
        policy=Policy(actions=[action], approval_sla={**SLA, **sla}),
        enrichers=[DirectoryEnricher({"alice": {}})],
        responders={"test_lock": LockResponder()},
        notifier=SlackNotifier(web_client(settings), channel=CHANNEL, labels={"test_lock": "lock"}),
        approvers=[APPROVER],
        clock=clock,
    )


async def alert(engine: Engine) -> Incident:
    body = {"id": "a1", "title": "Credential dump", "severity": "critical", "user": "alice"}
    async with engine.db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(body).encode())
    await engine.drain()
    incident = await engine.incidents.require(1)
    assert incident.decision == "ask_approval" and incident.message_ts
    return incident


async def tick(engine: Engine) -> int:
    moved = await run_sla(engine.incidents)
    await engine.flush()
    return moved


def thread(slack: FakeSlack, incident: Incident) -> list[str]:
    assert incident.message_ts
    return [m["text"] for m in slack.replies(CHANNEL, incident.message_ts)]


async def verbs(db: Database) -> list[str]:
    async with db.session() as session:
        rows = await session.exec(
            select(AuditEntry.verb)
            .where(col(AuditEntry.verb).startswith("approval."))
            .order_by(col(AuditEntry.id))
        )
        return list(rows.all())


async def test_reminded_escalated_then_denied_by_default(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    incident = await alert(engine)
    clock.minutes(0.4)
    assert await tick(engine) == 0
    clock.minutes(0.15)  # 33 s: the reminder, in the card's thread, to the approver group
    assert await tick(engine) == 1
    [reminder] = thread(fake_slack, incident)
    assert "<!subteam^SAPPROVERS>" in reminder and "waited 33 s for approval" in reminder
    assert await tick(engine) == 0  # said once
    clock.minutes(0.5)  # a minute: escalated to the second channel and group
    assert await tick(engine) == 1
    [escalation] = fake_slack.top_level(ESCALATION)
    assert "<!subteam^SONCALL>" in escalation["text"]
    assert f"<#{CHANNEL}>" in escalation["text"] and "#1" in escalation["text"]
    clock.minutes(1.4)
    assert await tick(engine) == 0
    clock.minutes(0.1)  # 2.5 minutes: the policy's default, deny
    assert await tick(engine) == 1
    [action] = await engine.incidents.recent_actions()
    assert (action.status, action.approved_by) == ("denied", "fido:sla")
    assert engine.responders["test_lock"].executions == []  # type: ignore[attr-defined]
    replies = thread(fake_slack, incident)
    assert len(replies) == 2 and "test_lock on alice: deny → denied" in replies[1]
    card = json.dumps(fake_slack.messages[(CHANNEL, incident.message_ts or "")]["blocks"])
    assert "no decision in time" in card and "Denied" in card and "Approve" not in card
    assert await verbs(db) == ["approval.reminder", "approval.escalation", "approval.timeout"]
    clock.minutes(60)
    assert await tick(engine) == 0  # decided: nothing more


async def test_the_policy_may_act_on_timeout(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock, act_on_timeout=["test_lock"], remind_minutes=None)
    incident = await alert(engine)
    clock.minutes(1)
    assert await tick(engine) == 1  # no reminder configured: straight to the escalation
    clock.minutes(1.5)
    assert await tick(engine) == 1
    assert engine.responders["test_lock"].executions == ["alice"]  # type: ignore[attr-defined]
    [action] = await engine.incidents.recent_actions()
    assert (action.status, action.requested_by) == ("succeeded", "fido:sla")
    assert "act → succeeded" in thread(fake_slack, incident)[-1]


async def test_a_two_person_action_is_never_run_by_the_timeout(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock, rule={"two_person": True}, on_timeout="act")
    await alert(engine)
    clock.minutes(3)
    assert await tick(engine) == 1  # past every stage at once: the timeout decides
    [action] = await engine.incidents.recent_actions()
    assert action.status == "denied"
    assert engine.responders["test_lock"].executions == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("stop", ["paused", "auto: false", "cap tripped"])
async def test_a_timeout_never_acts_while_automatic_action_is_stopped(
    db: Database, fake_slack: FakeSlack, stop: str
) -> None:
    clock = Clock()
    rule = {"auto": False} if stop == "auto: false" else {}
    engine = make(db, fake_slack, clock, rule=rule, on_timeout="act")
    incident = await alert(engine)
    if stop == "paused":
        await engine.incidents.pause(actor=APPROVER)
    elif stop == "cap tripped":
        async with db.session() as session:
            await controls.trip(session, responder="test_lock", cap=1, count=2)
            await session.commit()
    clock.minutes(3)
    assert await tick(engine) == 1
    assert engine.responders["test_lock"].executions == []  # type: ignore[attr-defined]
    assert await engine.incidents.recent_actions() == []  # neither run nor denied
    assert "not run" in thread(fake_slack, incident)[-1]
    assert "left for an approver" in thread(fake_slack, incident)[-1]
    card = json.dumps(fake_slack.messages[(CHANNEL, incident.message_ts or "")]["blocks"])
    assert "Approve: lock alice" in card


async def test_an_approval_decided_in_time_hears_nothing(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    incident = await alert(engine)
    clock.minutes(0.2)
    await engine.incidents.approve(
        incident_id=1, responder="test_lock", target="alice", actor=APPROVER
    )
    await engine.flush()
    clock.minutes(10)
    assert await tick(engine) == 0
    assert thread(fake_slack, incident) == [] and fake_slack.top_level(ESCALATION) == []
    assert await verbs(db) == []


async def test_a_failing_slack_loses_no_reminder(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    incident = await alert(engine)
    fake_slack.down("internal_error", status=500)
    clock.minutes(0.5)
    assert await tick(engine) == 1
    assert thread(fake_slack, incident) == []
    fake_slack.up()
    clock.minutes(0.05)
    await engine.flush()
    assert len(thread(fake_slack, incident)) == 1
