"""Nothing Fido sends is lost: cards go through the outbox, through the real SlackNotifier,
to a fake Slack that answers 500, 429 with Retry-After, a permanent error, or hangs —
switched during the test. Every card arrives after recovery, in order per incident, and
triage never waits for Slack."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select

from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.notifier import SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import Event, Incident, OutboxMessage, OutboxStatus
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures.slack import FakeSlack
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

CHANNEL = "C0OUTBOX"
APPROVER = "UAPPROVER"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make(db: Database, slack: FakeSlack, clock: Clock, **policy: Any) -> Engine:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=slack.token,
        SLACK_API_URL=slack.base_url,
    )
    engine = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock")], **policy),
        enrichers=[DirectoryEnricher({f"u{i}": {} for i in range(20)})],
        responders={"test_lock": LockResponder()},
        notifier=SlackNotifier(web_client(settings), channel=CHANNEL),
        approvers=[APPROVER],
        clock=clock,
    )
    engine.sender.timeout = 2.0
    return engine


async def alerts(db: Database, count: int, *, start: int = 0) -> None:
    async with db.session() as session:
        for i in range(start, start + count):
            body = {"id": f"a{i}", "title": f"alert {i}", "severity": "critical", "user": f"u{i}"}
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list(
            (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
        )


def posted_titles(slack: FakeSlack) -> list[str]:
    return [c["text"].split(": ", 1)[1] for c in slack.calls("chat.postMessage") if "ok" not in c]


async def test_slack_down_then_up_every_card_arrives_in_order(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    fake_slack.down("internal_error", status=500)
    await alerts(db, 10)
    assert await engine.worker.drain() == 10  # triage is not held up by Slack
    await engine.flush()
    async with db.session() as session:
        events = (await session.exec(select(Event))).all()
    assert {e.status for e in events} == {"done"}
    pending = await rows(db)
    assert len(pending) == 10 and {r.status for r in pending} == {"pending"}
    assert all(r.attempts == 1 and "internal_error" in (r.last_error or "") for r in pending)
    fake_slack.up()
    clock.advance(1)  # past the first backoff
    await engine.flush()
    assert {r.status for r in await rows(db)} == {"sent"}
    delivered = [c["text"] for c in fake_slack.calls("chat.postMessage")][-10:]
    assert sorted(t.rsplit(": ", 1)[1] for t in delivered) == sorted(
        f"alert {i}" for i in range(10)
    )
    async with db.session() as session:
        incidents = (await session.exec(select(Incident))).all()
    assert all(i.message_ts for i in incidents)  # later updates edit the right card


async def test_a_429_is_retried_exactly_after_retry_after(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    for _ in range(5):
        fake_slack.fail_next(
            "chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "7"}
        )
    await alerts(db, 5)
    await engine.drain()
    waiting = await rows(db)
    assert [r.status for r in waiting] == ["pending"] * 5
    assert all(r.not_before is not None for r in waiting)
    assert {
        round((r.not_before.replace(tzinfo=UTC) - clock.now).total_seconds()) for r in waiting
    } == {7}  # type: ignore[union-attr]
    clock.advance(6)
    assert await engine.flush() == 0  # not before Retry-After
    clock.advance(1)
    assert await engine.flush() == 5
    assert len(fake_slack.calls("chat.postMessage")) == 10  # 5 refused + 5 delivered


async def test_a_hanging_slack_never_holds_up_triage(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    engine.sender.timeout = 0.3
    fake_slack.delay = 5.0
    await alerts(db, 10)
    started = time.monotonic()
    assert await engine.worker.drain() == 10
    assert time.monotonic() - started < 4.0  # far less than one hanging call
    started = time.monotonic()
    await engine.sender.deliver_due()
    assert time.monotonic() - started < 3.0  # each delivery gives up at its timeout
    assert {r.last_error for r in await rows(db)} == {"no answer within 0.3 s"}
    fake_slack.up()
    engine.sender.timeout = 5.0
    for _ in range(3):  # calls that hung may still be finishing on Slack's side
        clock.advance(10)
        await engine.flush()
    assert {r.status for r in await rows(db)} == {"sent"}


async def test_one_incidents_messages_keep_their_order(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    responder = engine.responders["test_lock"]
    fake_slack.fail_next("chat.postMessage", "internal_error", status=500)
    await alerts(db, 1)
    await engine.drain()  # the card's post failed and backs off
    engine.reload(
        Policy(
            actions=[ActionPolicy(responder="test_lock")],
            thresholds={"ask_approval": 50, "auto_act": 60},
        )
    )
    await engine.refresh(1)  # now above auto_act: an automatic action is queued…
    await engine.flush()
    assert responder.executions == []  # …behind the incident's card, which waits
    assert [r.kind for r in await rows(db)] == ["card", "act"]
    clock.advance(1)
    await engine.flush()
    assert responder.executions == ["u0"]
    methods = [m for m, _ in fake_slack.all_calls if m.startswith("chat.")]
    assert methods == ["chat.postMessage", "chat.postMessage", "chat.update"]
    [update] = fake_slack.calls("chat.update")
    assert "succeeded" in json.dumps(update["blocks"])
    assert [r.status for r in await rows(db)] == ["sent", "sent", "sent"]


async def test_a_permanent_error_is_kept_failed_and_retried_on_request(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    await alerts(db, 1)
    await engine.drain()
    [row] = await rows(db)
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "Slack: not_in_channel")
    assert [r.id for r in await engine.sender.listing(statuses=[OutboxStatus.failed])] == [row.id]
    counts = await engine.incidents.counts()
    assert counts.outbox == {"failed": 1}
    assert await engine.sender.retry() == 1
    await engine.flush()
    [row] = await rows(db)
    assert row.status == "sent"


async def test_a_deleted_card_is_posted_again(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    await alerts(db, 1)
    await engine.drain()
    fake_slack.fail_next("chat.update", "message_not_found")
    await engine.incidents.deny(incident_id=1, responder="test_lock", target="u0", actor=APPROVER)
    await engine.flush()
    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert {r.status for r in await rows(db)} == {"sent"}


async def test_a_storm_on_one_incident_updates_its_card_every_few_seconds(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    send = [
        {"id": f"s{i}", "title": "storm", "severity": "medium", "user": "u1"} for i in range(30)
    ]
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(send[0]).encode())
    await engine.drain()
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the first card goes at once
    async with db.session() as session:
        for body in send[1:]:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )
    await engine.drain()
    assert fake_slack.calls("chat.update") == []  # held back: the next seconds join it
    waiting = [r for r in await rows(db) if r.status == OutboxStatus.pending.value]
    assert sorted(r.kind for r in waiting) == ["card", "message"]  # one of each for 29 changes
    clock.advance(3.5)
    await engine.flush()
    updates = fake_slack.calls("chat.update")
    assert len(updates) == 1 and "30" in json.dumps(updates[0])  # the card shows all 30
    posts = fake_slack.calls("chat.postMessage")
    assert len(posts) == 2 and posts[1]["thread_ts"] == posts[0].get("ts", updates[0]["ts"])
    assert "29 new events (30 in all)" in posts[1]["text"]  # one reply in the card's thread


async def test_a_new_decision_updates_the_card_at_once(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    low = {"id": "d1", "title": "odd login", "severity": "medium", "user": "u2"}
    critical = {"id": "d2", "title": "credential dump", "severity": "critical", "user": "u2"}
    for body in (low, critical):
        async with db.session() as session:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )
        await engine.drain()
    async with db.session() as session:
        (incident,) = (await session.exec(select(Incident))).all()
    assert incident.decision == "ask_approval", incident.decision_reason
    updates = fake_slack.calls("chat.update")
    assert len(updates) == 1 and "Approve" in json.dumps(updates[0])  # no waiting for buttons


class FailingStatements:
    """The database fails the next ``times`` statements that contain ``fragment`` (an
    OperationalError from the driver, as when the server goes away mid-transaction)."""

    def __init__(self, db: Database, fragment: str, times: int = 1) -> None:
        self.fragment, self.left, self.failed = fragment, times, 0
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._check)

    def _check(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.left and self.fragment in statement:
            self.left -= 1
            self.failed += 1
            raise OperationalError(statement, {}, Exception("server closed the connection"))


async def test_a_database_failure_reading_the_card_is_retried_and_the_card_arrives_once(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    await alerts(db, 3)
    assert await engine.worker.drain() == 3
    reads = FailingStatements(db, "FROM incident \nWHERE incident.id IN", times=100)
    await engine.flush()
    assert reads.failed >= 3  # the batched read failed, and each card's own read after it
    assert fake_slack.calls("chat.postMessage") == []
    reads.left = 0  # the database is back
    waiting = await rows(db)
    assert [r.status for r in waiting] == ["pending"] * 3
    assert all("server closed the connection" in (r.last_error or "") for r in waiting)
    clock.advance(1)  # past the first backoff
    await engine.flush()
    assert sorted(posted_titles(fake_slack)) == ["alert 0", "alert 1", "alert 2"]
    assert {r.status for r in await rows(db)} == {"sent"}


async def test_a_database_failure_storing_the_cards_place_costs_one_duplicate_at_most(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock)
    await alerts(db, 1)
    await engine.worker.drain()
    places = FailingStatements(db, "SET message_channel=")
    await engine.flush()
    assert places.failed == 1  # posted, but where it lives could not be kept …
    [row] = await rows(db)
    assert row.status == "pending" and "server closed" in (row.last_error or "")
    clock.advance(1)
    await engine.flush()  # … so the row is retried: one duplicate, never a lost card
    first, second = fake_slack.calls("chat.postMessage")
    assert first["text"] == second["text"]
    async with db.session() as session:
        [incident] = (await session.exec(select(Incident))).all()
    [row] = await rows(db)
    assert row.status == "sent"
    # the card kept is the one Slack answered last: later updates edit it
    await engine.incidents.deny(incident_id=1, responder="test_lock", target="u0", actor=APPROVER)
    await engine.flush()
    [update] = fake_slack.calls("chat.update")
    assert update["ts"] == incident.message_ts
    assert len(fake_slack.calls("chat.postMessage")) == 2
