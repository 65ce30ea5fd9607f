"""Asking the affected user "was this you?": the direct message found by directory e-mail
(users.lookupByEmail, conversations.open), both answers clicked through Bolt with real
signatures, the refusals (another user, a second answer, too late), the timeout as its own
signal, a user Slack does not know, and Slack failing on the way — all audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from bot.slack.message_blocks import ASK_PATTERN
from bot.slack.notifier import SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline import ask
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import AuditEntry, Incident, OutboxMessage, UserCheck
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures.slack import FakeSlack, block_actions_body, signed_headers
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

SECRET = "ask-secret"
CHANNEL = "C0SECURITY"
ALICE, MALLORY = "UALICE", "UMALLORY"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Fido:
    def __init__(
        self, engine: Engine, http: httpx.AsyncClient, slack: FakeSlack, clock: Clock
    ) -> None:
        self.engine, self.http, self.slack, self.clock = engine, http, slack, clock

    async def alert(self, title: str = "Unusual sign-in from a new country", n: int = 1) -> None:
        body = {"id": f"a{n}", "title": title, "severity": "medium", "user": "alice"}
        async with self.engine.db.session() as session:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )
        await self.engine.drain()

    async def incident(self) -> Incident:
        return await self.engine.incidents.require(1)

    async def check(self) -> UserCheck:
        [found] = await ask.checks_for(self.engine.db, 1)
        return found

    def dm(self) -> dict[str, Any]:
        [message] = [m for (c, _), m in self.slack.messages.items() if c.startswith("D")]
        return message

    async def click(self, user: str, answer: str) -> dict[str, Any]:
        """``user`` clicks an answer in the DM; return what Fido answered (response_url)."""
        message = self.dm()
        [button] = [
            e
            for b in message["blocks"]
            for e in b.get("elements", [])
            if e.get("type") == "button" and e["action_id"].endswith(f":{answer}")
        ]
        assert ASK_PATTERN.match(button["action_id"])
        body = block_actions_body(
            user_id=user,
            action_id=button["action_id"],
            value=button["value"],
            channel="DALICE",
            message_ts=message["ts"],
            response_url=self.slack.response_url(uuid.uuid4().hex),
            button_text=button["text"]["text"],
            blocks=message["blocks"],
        )
        count = len(self.slack.calls("response_url")) + 1
        headers = {**signed_headers(SECRET, body), **FORM}
        response = await self.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 200
        await self.slack.wait_for("response_url", count=count)
        await self.engine.flush()
        return self.slack.calls("response_url")[-1]

    def card(self, incident: Incident) -> str:
        assert incident.message_ts
        return json.dumps(self.slack.messages[(CHANNEL, incident.message_ts)]["blocks"])


@pytest.fixture
async def fido(db: Database, fake_slack: FakeSlack) -> AsyncIterator[Fido]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    fake_slack.emails[ALICE] = "alice@corp.example"
    clock = Clock()
    client = web_client(settings)
    engine = Engine(
        db=db,
        policy=Policy(
            actions=[ActionPolicy(responder="test_lock")],
            thresholds={"ask_approval": 60},
            ask_user={"titles": ["*unusual sign-in*", "*impossible travel*"]},
        ),
        enrichers=[DirectoryEnricher({"alice": {"mail": "Alice@corp.example"}})],
        responders={"test_lock": LockResponder()},
        notifier=SlackNotifier(client, channel=CHANNEL),
        approvers=["UANALYST"],
        clock=clock,
    )
    bolt = build_bolt_app(settings, engine, client)
    api = build_http_app(db=db, detectors={}, webhook_token=SecretStr("x"), bolt=bolt)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://fido.test"
    ) as http:
        yield Fido(engine, http, fake_slack, clock)


async def audit(db: Database, verb: str) -> list[AuditEntry]:
    async with db.session() as session:
        rows = await session.exec(
            select(AuditEntry).where(AuditEntry.verb == verb).order_by(col(AuditEntry.id))
        )
        return list(rows.all())


async def test_the_user_is_found_by_email_and_asked_in_a_direct_message(fido: Fido) -> None:
    await fido.alert()
    [lookup] = fido.slack.calls("users.lookupByEmail")
    assert lookup["email"] == "Alice@corp.example"
    [opened] = fido.slack.calls("conversations.open")
    assert opened["users"] == ALICE
    dm = fido.dm()
    assert "was this you" in dm["text"].casefold()
    assert "Yes, this was me" in json.dumps(dm["blocks"])
    assert "No, this wasn't me" in json.dumps(dm["blocks"])
    check = await fido.check()
    assert (check.status, check.slack_user, check.dm_channel) == ("asked", ALICE, "DALICE")
    assert "asked, no answer yet" in fido.card(await fido.incident())
    assert len(await audit(fido.engine.db, "user.asked")) == 1
    await fido.alert(n=2)  # another alert about her: asked once per incident
    assert len(fido.slack.calls("conversations.open")) == 1


async def test_no_raises_the_score_and_alerts_the_channel_at_once(fido: Fido) -> None:
    await fido.alert()
    await fido.alert(n=2)  # its card update and thread reply are held back a few seconds…
    before = await fido.incident()
    assert before.decision == "notify"
    reply = await fido.click(ALICE, "no")
    assert reply["replace_original"] is True and "wasn't you" in reply["text"]
    after = await fido.incident()
    assert after.score == before.score + 30
    assert after.decision == "ask_approval"  # now above the approval threshold
    lines = [line["reason"] for line in after.score_breakdown]
    assert "user alice says it was not them" in lines
    assert after.message_ts is not None
    [alarm] = fido.slack.replies(CHANNEL, after.message_ts)  # … the alarm is not
    assert alarm.get("reply_broadcast") is True and "NOT them" in alarm["text"]
    card = fido.card(after)
    assert "No, this wasn" in card and "Approve" in card
    [entry] = await audit(fido.engine.db, "user.answered")
    assert (entry.actor, entry.target, entry.detail["answer"]) == (ALICE, "alice", "no")
    again = await fido.click(ALICE, "yes")  # once only
    assert "answered already" in again["text"]
    assert (await fido.check()).status == "no"
    assert (await fido.incident()).score == after.score


async def test_yes_lowers_the_score_and_only_that_user_can_answer(fido: Fido) -> None:
    await fido.alert()
    before = await fido.incident()
    refused = await fido.click(MALLORY, "yes")
    assert "only the user this question was sent to" in refused["text"]
    [entry] = await audit(fido.engine.db, "refused.user_answer")
    assert entry.actor == MALLORY
    assert (await fido.check()).status == "asked"
    await fido.click(ALICE, "yes")
    after = await fido.incident()
    assert after.score == before.score - 20
    assert "user alice confirmed it was them" in [r["reason"] for r in after.score_breakdown]
    assert "Yes, this was me" in fido.card(after)
    assert after.message_ts and fido.slack.replies(CHANNEL, after.message_ts) == []


async def test_no_answer_in_time_counts_as_its_own_signal(fido: Fido) -> None:
    await fido.alert()
    before = await fido.incident()
    fido.clock.now += timedelta(minutes=29)
    assert await ask.run_timeouts(fido.engine) == 0
    fido.clock.now += timedelta(minutes=2)
    assert await ask.run_timeouts(fido.engine) == 1
    await fido.engine.flush()
    after = await fido.incident()
    assert after.score == before.score + 10
    assert "did not answer in time" in fido.card(after)
    assert len(await audit(fido.engine.db, "user.no_answer")) == 1
    late = await fido.click(ALICE, "no")
    assert "time to answer has passed" in late["text"]
    assert (await fido.check()).status == "no_answer"


async def test_an_answer_after_the_time_is_refused_before_the_timeout_job_runs(
    fido: Fido,
) -> None:
    await fido.alert()
    before = await fido.incident()
    fido.clock.now += timedelta(minutes=30)  # due, but run_timeouts has not run yet
    late = await fido.click(ALICE, "no")
    assert late["response_type"] == "ephemeral" and late["replace_original"] is False
    assert late["text"] == (
        ":warning: the time to answer has passed; the security team will follow up"
    )
    check = await fido.check()
    assert check.status == "no_answer" and check.answered_at is not None
    after = await fido.incident()  # the same effects as the timeout job, no more
    assert after.score == before.score + 10 and after.user_answers == {"alice": "no_answer"}
    assert "did not answer in time" in fido.card(after)
    assert await audit(fido.engine.db, "user.answered") == []
    [entry] = await audit(fido.engine.db, "user.no_answer")
    assert (entry.actor, entry.target, entry.detail["minutes"]) == ("fido:ask", "alice", 30)
    assert after.message_ts and fido.slack.replies(CHANNEL, after.message_ts) == []
    assert await ask.run_timeouts(fido.engine) == 0  # nothing left for the job
    again = await fido.click(ALICE, "yes")
    assert "time to answer has passed" in again["text"]
    assert len(await audit(fido.engine.db, "user.no_answer")) == 1


async def test_a_user_slack_does_not_know_is_shown_and_not_retried(fido: Fido) -> None:
    fido.slack.emails.clear()
    await fido.alert()
    check = await fido.check()
    assert check.status == "unreachable" and "alice@corp.example" in (check.note or "").lower()
    assert fido.slack.calls("conversations.open") == []
    assert "could not be asked" in fido.card(await fido.incident())
    async with fido.engine.db.session() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    assert {r.status for r in rows} == {"sent"}


async def test_slack_failing_on_the_way_is_retried_and_asks_once(fido: Fido) -> None:
    fido.slack.fail_next("users.lookupByEmail", "internal_error", status=500)
    fido.slack.fail_next(  # the card's post: the question does not wait for it
        "chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "3"}
    )
    await fido.alert()
    assert (await fido.check()).status == "asking"
    fido.clock.now += timedelta(seconds=1)
    await fido.engine.flush()  # the question's backoff is over; the card's Retry-After is not
    check = await fido.check()
    assert check.status == "asked" and len(fido.slack.calls("users.lookupByEmail")) == 2
    assert (await fido.incident()).message_ts is None
    fido.clock.now += timedelta(seconds=2)
    await fido.engine.flush()
    assert (await fido.incident()).message_ts is not None
    assert len([m for (c, _), m in fido.slack.messages.items() if c == "DALICE"]) == 1
    async with fido.engine.db.session() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    assert {r.status for r in rows} == {"sent"}


async def test_only_selected_alerts_ask(fido: Fido) -> None:
    await fido.alert(title="Port scan")
    assert await ask.checks_for(fido.engine.db, 1) == []
    assert fido.slack.calls("users.lookupByEmail") == []
