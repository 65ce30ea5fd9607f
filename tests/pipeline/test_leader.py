"""Leadership among replicas on one database: one leader at a time, taken over when it
goes; a replica's name held while it lives; the claims of a replica that is gone put
back by the leader, and the actions it was running marked interrupted, never run again."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text
from sqlmodel import select

from integrations.detectors.generic import GenericDetector
from pipeline import act, audit, leader, queue
from pipeline.db import Database
from pipeline.errors import ConfigError, InputError
from pipeline.ingest import ingest
from pipeline.leader import Leadership
from pipeline.models import Action, ActionStatus, Event, Incident, OutboxMessage
from pipeline.plugins import ResponderResult
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import Proposal
from tests.pipeline.fakes import LockResponder


async def leads_soon(leadership: Leadership) -> bool:
    """Whether ``leadership`` becomes the leader within a few checks (a closed session's
    locks are released when its server process has ended, a moment after)."""
    for _ in range(50):
        if await leadership.campaign():
            return True
        await asyncio.sleep(0.1)
    return False


async def send(db: Database, *ids: str) -> None:
    async with db.session() as session:
        body = json.dumps([{"id": i, "title": f"alert {i}", "user": f"u{i}"} for i in ids])
        await ingest(session=session, detector=GenericDetector(), body=body.encode())


async def test_one_leader_at_a_time_and_another_takes_over(db: Database) -> None:
    first, second = Leadership(db, replica="a"), Leadership(Database(db.url), replica="b")
    await first.start()
    await second.start()
    try:
        if db.sqlite:  # one process: always the leader
            assert first.leader and second.leader
            return
        assert (first.leader, second.leader) == (True, False)
        assert await second.campaign() is False
        ran: list[str] = []

        async def job(name: str) -> None:
            ran.append(name)

        await first.only_leader(job)("first")
        await second.only_leader(job)("second")
        assert ran == ["first"]

        await first.stop()  # the leader goes: a check elsewhere soon takes over
        assert await leads_soon(second)
        await second.only_leader(job)("second")
        assert ran == ["first", "second"]
    finally:
        await first.stop()
        await second.stop()
        await second.db.dispose()


async def test_a_lost_connection_ends_leadership(db: Database) -> None:
    if db.sqlite:
        pytest.skip("leadership is shared through PostgreSQL")
    first, second = Leadership(db, replica="a"), Leadership(db, replica="b")
    await first.start()
    await second.start()
    try:
        assert first.leader and not second.leader
        assert first._connection is not None
        pid = (await first._connection.execute(text("SELECT pg_backend_pid()"))).scalar()
        async with db.engine.connect() as admin:  # the server drops the leader's session
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
        assert await first.campaign() is False
        assert await leads_soon(second)
        assert await first.campaign() is False  # reconnected, name taken again, follower
        assert first._connection is not None
    finally:
        await first.stop()
        await second.stop()


async def test_a_second_live_replica_with_the_same_name_is_refused(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.sqlite:
        pytest.skip("names are held through PostgreSQL")
    monkeypatch.setattr(leader, "NAME_ATTEMPTS", 2)
    first, twin = Leadership(db, replica="same"), Leadership(db, replica="same")
    await first.start()
    try:
        with pytest.raises(ConfigError, match="another running replica is named 'same'"):
            await twin.start()
    finally:
        await first.stop()
        await twin.stop()
    monkeypatch.setattr(leader, "NAME_ATTEMPTS", 20)
    again = Leadership(db, replica="same")  # once the first is gone, the name is free
    await again.start()
    await again.stop()


async def test_the_leader_puts_back_the_claims_of_a_replica_that_is_gone(db: Database) -> None:
    if db.sqlite:
        pytest.skip("one SQLite process releases its own claims at start-up")
    await send(db, "1", "2", "3")
    alive, chief = Leadership(db, replica="alive"), Leadership(db, replica="chief")
    await chief.start()
    await alive.start()
    try:
        assert chief.leader
        assert len(await queue.claim_many(db, 1, replica="gone")) == 1
        assert len(await queue.claim_many(db, 1, replica="alive")) == 1
        assert await alive.reclaim() == 0  # not the leader: does nothing
        assert await chief.reclaim() == 1
        async with db.session() as session:
            rows = (await session.exec(select(Event).order_by(Event.id))).all()  # type: ignore[arg-type]
        assert [(e.status, e.claimed_by) for e in rows] == [
            ("pending", None),  # the one "gone" held, claimable again now
            ("processing", "alive"),
            ("pending", None),
        ]
        assert await chief.reclaim() == 0
    finally:
        await alive.stop()
        await chief.stop()


async def running_actions(db: Database, **replicas: str) -> int:
    """An incident with one action per ``target=replica``, each left running by it."""
    async with db.session() as session:
        incident = Incident(title="t", proposed_actions=[])
        session.add(incident)
        await session.flush()
        assert incident.id is not None
        for target, replica in replicas.items():
            session.add(
                Action(
                    incident_id=incident.id,
                    responder="test_lock",
                    target=target,
                    requested_by="fido",
                    idempotency_key=act.idempotency_key(incident.id, "test_lock", target),
                    replica=replica,
                )
            )
        await session.commit()
        return incident.id


async def states(db: Database) -> dict[str, tuple[str, str | None]]:
    async with db.session() as session:
        actions = (await session.exec(select(Action))).all()
    return {a.target: (a.status, a.result) for a in actions}


async def test_the_leader_interrupts_the_actions_a_replica_that_is_gone_was_running(
    db: Database,
) -> None:
    """Whether a responder killed mid-call acted is unknown: the action is never run again
    behind anyone's back; it is marked interrupted, audited, and its card says so."""
    if db.sqlite:
        pytest.skip("one SQLite process interrupts its own actions at start-up")
    incident = await running_actions(db, alice="gone", bob="alive")
    alive, chief = Leadership(db, replica="alive"), Leadership(db, replica="chief")
    await chief.start()
    await alive.start()
    try:
        assert chief.leader
        assert await alive.reclaim() == 0  # not the leader: does nothing
        await chief.reclaim()
        found = await states(db)
        assert found["bob"] == ("running", None)  # its replica lives: still running
        status, result = found["alice"]
        assert status == ActionStatus.interrupted == "interrupted"
        assert result is not None and "gone" in result and "unknown" in result
        async with db.session() as session:
            [entry] = await audit.entries(session, verb="action.interrupted")
            cards = (await session.exec(select(OutboxMessage))).all()
        assert (entry.actor, entry.target, entry.incident_id) == (
            "fido",
            "test_lock:alice",
            incident,
        )
        assert entry.detail["replica"] == "gone"
        assert [(c.kind, c.incident_id) for c in cards] == [("card", incident)]
        await chief.reclaim()  # once only
        async with db.session() as session:
            assert len(await audit.entries(session, verb="action.interrupted")) == 1
    finally:
        await alive.stop()
        await chief.stop()


async def test_a_replica_restarting_interrupts_what_it_left_running(db: Database) -> None:
    await running_actions(db, alice="r1", bob="r2")
    assert await leader.interrupt_actions(db, replica="r1") == 1
    found = await states(db)
    assert (found["alice"][0], found["bob"][0]) == ("interrupted", "running")
    assert await leader.interrupt_actions(db, replica="r1") == 0


async def test_an_undo_left_half_done_goes_back_to_succeeded_to_be_pressed_again(
    db: Database,
) -> None:
    """A replica that died while undoing: the containment may still hold, so the action is
    ``succeeded`` again (Undo offered anew), audited, its card redrawn."""
    incident = await running_actions(db, alice="r1", bob="r1")
    async with db.session() as session:
        for action in (await session.exec(select(Action))).all():
            if action.target == "alice":
                action.status = ActionStatus.undoing.value
                session.add(action)
        await session.commit()
    assert await leader.interrupt_actions(db, replica="r1") == 2
    found = await states(db)
    assert found["bob"][0] == "interrupted"
    status, result = found["alice"]
    assert status == "succeeded" and result is not None and "Undo again" in result
    async with db.session() as session:
        [entry] = await audit.entries(session, verb="action.undo.interrupted")
    assert (entry.target, entry.incident_id) == ("test_lock:alice", incident)
    assert await leader.interrupt_actions(db, replica="r1") == 0


async def test_an_interrupted_action_is_not_run_again_by_a_click(db: Database) -> None:
    """An approver who clicks again is told what happened instead of acting twice."""
    incident = await running_actions(db, alice="r1")
    async with db.session() as session:
        row = await session.get(Incident, incident)
        assert row is not None
        row.proposed_actions = [Proposal(responder="test_lock", target="alice").model_dump()]
        session.add(row)
        await session.commit()
    await leader.interrupt_actions(db, replica="r1")
    responder = LockResponder()
    with pytest.raises(InputError, match="already decided: interrupted"):
        await act.approve(
            db=db,
            policy=Policy(actions=[ActionPolicy(responder="test_lock")]),
            responders={"test_lock": responder},
            incident_id=incident,
            responder="test_lock",
            target="alice",
            actor="UALICE",
        )
    assert responder.executions == []


async def test_an_action_records_the_replica_running_it(database_url: str, db: Database) -> None:
    named = Database(database_url, replica="r7")
    seen: list[str | None] = []

    class Watched(LockResponder):
        async def execute(self, target: str) -> ResponderResult:
            async with named.session() as session:
                [action] = (await session.exec(select(Action))).all()
            seen.append(action.replica)
            return await super().execute(target)

    try:
        incident = await running_actions(db)
        async with db.session() as session:
            row = await session.get(Incident, incident)
            assert row is not None
            row.proposed_actions = [Proposal(responder="test_lock", target="alice").model_dump()]
            session.add(row)
            await session.commit()
        done = await act.approve(
            db=named,
            policy=Policy(actions=[ActionPolicy(responder="test_lock")]),
            responders={"test_lock": Watched()},
            incident_id=incident,
            responder="test_lock",
            target="alice",
            actor="UALICE",
        )
    finally:
        await named.dispose()
    assert seen == ["r7"] and done.status == "succeeded"
