"""Storms without floods: 600 alerts about 5 hosts, through the real pipeline and the real
Slack notifier, to a fake Slack that allows one message per second per channel (429 with
Retry-After past it). Five cards, each kept up to date, and a short reply in each card's
thread every few seconds — never a message per alert — with nothing lost and every 429
retried. Time is the test's clock, shared by Fido and the fake Slack."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.message_blocks import digest_message, note_text, thread_news_text
from bot.slack.notifier import Pacer, SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.digest import run_digest
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import Incident, OutboxMessage, OutboxStatus
from pipeline.policy import Policy
from pipeline.routing import Digest, DigestItem, Note, ThreadNews, individual
from tests.fixtures.slack import FakeSlack

CHANNEL = "C0STORM"
HOSTS = 5
REPLY = re.compile(r"➕ (\d+) new events? \((\d+) in all\)")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def epoch(self) -> float:
        return self.now.timestamp()


def make(db: Database, slack: FakeSlack, clock: Clock, *, pace: bool, **policy: Any) -> Engine:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=slack.token,
        SLACK_API_URL=slack.base_url,
    )
    notifier = SlackNotifier(
        web_client(settings), channel=CHANNEL, pacer=Pacer(clock=clock) if pace else None
    )
    slack.limit_messages(1.0, clock=clock.epoch)
    return Engine(db=db, policy=Policy(enrichers=[], **policy), notifier=notifier, clock=clock)


async def alerts(db: Database, first: int, count: int, *, severity: str = "high") -> None:
    async with db.session() as session:
        for n in range(first, first + count):
            body = {
                "id": f"ids-{n}",
                "title": f"ET SCAN suspicious inbound {n % 7}",
                "severity": severity,
                "host": f"web-{n % HOSTS}",
            }
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )


async def outbox_rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list((await session.exec(select(OutboxMessage))).all())


async def settle(engine: Engine, clock: Clock, *, seconds: int = 300) -> None:
    """Deliver until the outbox is empty, a second at a time."""
    for _ in range(seconds):
        await engine.flush()
        if all(r.status != OutboxStatus.pending.value for r in await outbox_rows(engine.db)):
            return
        clock.advance(1)
    raise AssertionError("the outbox did not empty")


async def storm(engine: Engine, clock: Clock, *, total: int = 600, per_second: int = 20) -> None:
    """``total`` alerts, ``per_second`` of them each second, triaged and delivered as
    they come (the worker and the sender run side by side in ``fido serve``)."""
    for second in range(total // per_second):
        await alerts(engine.db, second * per_second, per_second)
        assert await engine.worker.drain() == per_second
        await engine.flush()
        clock.advance(1)
    await settle(engine, clock)


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as session:
        return list((await session.exec(select(Incident).order_by(col(Incident.id)))).all())


async def check_storm(engine: Engine, slack: FakeSlack) -> None:
    found = await incidents(engine.db)
    assert len(found) == HOSTS and all(i.event_count == 600 // HOSTS for i in found)
    cards = slack.top_level(CHANNEL)
    assert len(cards) == HOSTS  # one top-level message per incident, however many alerts
    assert sorted(i.message_ts for i in found) == sorted(m["ts"] for m in cards)
    for incident in found:
        assert incident.message_channel == CHANNEL and incident.message_ts
        card = json.dumps(slack.messages[(CHANNEL, incident.message_ts)]["blocks"])
        assert "120 events" in card  # the card shows every alert
        replies = slack.replies(CHANNEL, incident.message_ts)
        told = [REPLY.search(r["text"]) for r in replies]
        assert all(told), [r["text"] for r in replies]
        # nothing lost: the replies account for every event after the card, in order
        card_events = 120 - sum(int(m.group(1)) for m in told if m)
        assert 1 <= card_events <= 20
        totals = [int(m.group(2)) for m in told if m]
        assert totals == sorted(totals) and totals[-1] == 120
        # batched: a storm of 30 s gives a reply every few seconds, not one per alert
        assert 1 <= len(replies) <= 14, len(replies)  # batched: never one per alert
    rows = await outbox_rows(engine.db)
    assert {r.status for r in rows} == {OutboxStatus.sent.value}  # nothing failed or waits
    posts = [c for c in slack.calls("chat.postMessage") if c.get("channel") == CHANNEL]
    delivered = len(slack.top_level(CHANNEL)) + sum(
        len(slack.replies(CHANNEL, i.message_ts or "")) for i in found
    )
    assert len(posts) == delivered + len(slack.rate_limited)  # each 429 was tried again


async def test_a_storm_without_pacing_is_rate_limited_and_every_429_retried(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock, pace=False)
    await storm(engine, clock)
    assert fake_slack.rate_limited  # Slack said "slow down" …
    await check_storm(engine, fake_slack)  # … and still every message arrived


async def test_a_paced_storm_keeps_within_slacks_limits(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock, pace=True)
    await storm(engine, clock)
    assert fake_slack.rate_limited == []  # Fido kept one message per second per channel
    await check_storm(engine, fake_slack)
    rows = await outbox_rows(db)
    assert all(r.attempts == 0 for r in rows)  # waiting for the allowance is no failure


async def test_a_429_from_elsewhere_holds_the_whole_channel(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock, pace=True)
    fake_slack.fail_next(
        "chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "5"}
    )
    await alerts(db, 0, 3)
    await engine.worker.drain()
    await engine.flush()
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the others wait with it
    for _ in range(4):
        clock.advance(1)
        await engine.flush()
        assert len(fake_slack.calls("chat.postMessage")) == 1
    await settle(engine, clock)
    assert len(fake_slack.top_level(CHANNEL)) == 3
    assert fake_slack.rate_limited == []


async def test_routing_sends_each_card_to_its_channel_and_updates_follow(
    db: Database, fake_slack: FakeSlack
) -> None:
    clock = Clock()
    routing = {
        "rules": [
            {"channel": "C0CRIT", "severities": ["critical"]},
            {"channel": "C0SCAN", "detectors": ["generic"], "max_score": 50},
        ]
    }
    engine = make(db, fake_slack, clock, pace=True, routing=routing)
    await alerts(db, 0, 1, severity="critical")  # web-0 → C0CRIT
    await alerts(db, 1, 1, severity="high")  # web-1, score 40 → C0SCAN
    await engine.worker.drain()
    await settle(engine, clock)
    await alerts(db, 5, 1, severity="critical")  # web-0 again: the same card, its thread
    await engine.worker.drain()
    clock.advance(4)
    await settle(engine, clock)
    first, second = await incidents(db)
    assert (first.message_channel, second.message_channel) == ("C0CRIT", "C0SCAN")
    assert [len(fake_slack.top_level(c)) for c in ("C0CRIT", "C0SCAN", CHANNEL)] == [1, 1, 0]
    assert first.message_ts is not None
    [reply] = fake_slack.replies("C0CRIT", first.message_ts)
    assert "1 new event (2 in all)" in reply["text"]
    [update] = fake_slack.calls("chat.update")
    assert update["channel"] == "C0CRIT"


async def test_low_scores_wait_for_the_digest(db: Database, fake_slack: FakeSlack) -> None:
    clock = Clock()
    engine = make(db, fake_slack, clock, pace=True, digest={"below": 30, "channel": "C0DIGEST"})
    await alerts(db, 0, 4, severity="low")  # score 10: no card of their own
    await engine.worker.drain()
    await settle(engine, clock)
    assert fake_slack.calls("chat.postMessage") == []
    assert await run_digest(db, policy=engine.policy, clock=clock) == 4
    assert await run_digest(db, policy=engine.policy, clock=clock) == 0  # listed once
    await settle(engine, clock)
    [digest] = fake_slack.top_level("C0DIGEST")
    assert "4 low-score incidents" in digest["text"]
    listed = json.dumps(digest["blocks"])
    assert all(f"#{n}" in listed for n in range(1, 5))
    # one of them becomes serious: it gets its card then
    await alerts(db, 4, 1, severity="critical")  # web-4 is a new host: a new incident
    await alerts(db, 5, 1, severity="critical")  # web-0 joins incident 1
    await engine.worker.drain()
    await settle(engine, clock)
    assert len(fake_slack.top_level(CHANNEL)) == 2
    assert len(fake_slack.top_level("C0DIGEST")) == 1


@pytest.mark.parametrize("below", [0, 25])
async def test_the_default_digest_threshold_is_not_zero(below: int) -> None:
    assert Policy().digest.below == 25
    policy = Policy(digest={"below": below})
    incident = Incident(title="t", score=20, decision="notify")
    assert individual(incident, policy) is (below == 0)


def test_what_alerts_say_is_escaped_in_every_message() -> None:
    news = ThreadNews(
        incident_id=1,
        new_events=2,
        total_events=3,
        by_detector={"x<y>": 2},
        titles=["<!channel> pwned <https://evil.example|click>"],
        score=5,
        decision="notify",
    )
    item = DigestItem(
        incident_id=1, title="<!here> hi", severity="low", score=3, events=1, detectors=["d"]
    )
    text, blocks = digest_message(Digest(items=[item]))
    note = note_text(
        Note(what="reminder", incident_id=1, group="<!everyone>", minutes=0.5),
        Incident(id=1, title="<@U123> & co"),
    )
    for said in (thread_news_text(news), json.dumps([b.to_dict() for b in blocks]), note):
        assert "<!" not in said and "<@" not in said and "<http" not in said
    assert "&lt;!channel&gt;" in thread_news_text(news) and "waited 30 s" in note


def test_the_fake_slack_allows_one_message_per_second_per_channel(fake_slack: FakeSlack) -> None:
    clock = Clock()
    fake_slack.limit_messages(1.0, clock=clock.epoch)
    client = httpx.Client(
        base_url=fake_slack.base_url, headers={"Authorization": "Bearer xoxb-test"}
    )

    def post(channel: str) -> httpx.Response:
        return client.post("chat.postMessage", json={"channel": channel, "text": "hi"})

    assert post("C1").json()["ok"] is True
    refused = post("C1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json() == {"ok": False, "error": "ratelimited"}
    assert post("C2").json()["ok"] is True  # per channel
    clock.advance(1)
    assert post("C1").json()["ok"] is True
    assert fake_slack.rate_limited == [("chat.postMessage", "C1")]
    client.close()
