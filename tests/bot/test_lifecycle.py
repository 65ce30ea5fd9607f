"""Closing incidents and suppressing alerts from Slack, through Bolt with real signatures:
card buttons (``block_actions``) and ``/fido`` commands, against the fake Slack Web API."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from bot.slack.ids import ActionId, kind_of
from bot.slack.notifier import SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import Action, AuditEntry, Incident, OutboxStatus
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures.slack import (
    FakeSlack,
    block_actions_body,
    signed_headers,
    slash_command_body,
)
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

SECRET = "lifecycle-secret"
CHANNEL = "C0SECURITY"
APPROVER, STRANGER = "UANALYST", "USTRANGER"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Fido:
    """Fido behind its HTTP app, posting cards to the fake Slack."""

    def __init__(self, engine: Engine, http: httpx.AsyncClient, slack: FakeSlack) -> None:
        self.engine, self.http, self.slack = engine, http, slack
        self.alerts = 0

    async def alert(self, title: str = "Odd login") -> None:
        """A new (not redelivered) critical alert about alice, processed to the end."""
        self.alerts += 1
        body = {"id": str(self.alerts), "title": title, "severity": "critical", "user": "alice"}
        async with self.engine.db.session() as session:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )
        await self.settled()

    async def settled(self) -> None:
        """Wait until the running engine has processed every event and sent every message."""
        for _ in range(300):
            await self.engine.drain()
            busy = await self.engine.incidents.pending_events()
            if not busy and not await self.engine.sender.due(limit=1):
                if not await self.engine.sender.listing(statuses=[OutboxStatus.pending]):
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("the engine did not settle")

    async def incident(self, incident_id: int) -> Incident:
        return await self.engine.incidents.require(incident_id)

    async def card(self, incident_id: int) -> list[dict[str, Any]]:
        """The blocks of the incident's message as Slack now shows it."""
        incident = await self.incident(incident_id)
        assert incident.message_channel == CHANNEL and incident.message_ts
        return self.slack.messages[(CHANNEL, incident.message_ts)]["blocks"]

    async def _post(self, body: bytes) -> dict[str, Any]:
        """POST a signed request; wait for and return the reply sent to its response_url."""
        count = len(self.slack.calls("response_url")) + 1
        headers = {**signed_headers(SECRET, body), **FORM}
        response = await self.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 200
        await self.slack.wait_for("response_url", count=count)
        return self.slack.calls("response_url")[-1]

    async def click(
        self, user: str, button: dict[str, Any], *, incident_id: int = 1, updates: int = 0
    ) -> dict[str, Any] | None:
        """``user`` clicks ``button`` on incident ``incident_id``'s card. With ``updates``,
        wait until the card has been updated that many times in all; else return the
        ephemeral reply."""
        incident = await self.incident(incident_id)
        body = block_actions_body(
            user_id=user,
            action_id=button["action_id"],
            value=button["value"],
            channel=CHANNEL,
            message_ts=incident.message_ts or "",
            response_url=self.slack.response_url(uuid.uuid4().hex),
            button_text=button["text"]["text"],
        )
        if not updates:
            return await self._post(body)
        headers = {**signed_headers(SECRET, body), **FORM}
        response = await self.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 200
        await self.slack.wait_for("chat.update", count=updates)
        return None

    async def command(self, text: str, user: str = APPROVER) -> dict[str, Any]:
        return await self._post(
            slash_command_body(
                user_id=user, text=text, response_url=self.slack.response_url(uuid.uuid4().hex)
            )
        )


@pytest.fixture
async def fido(db: Database, fake_slack: FakeSlack) -> AsyncIterator[Fido]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    client, labels = web_client(settings), {"test_lock": "lock"}
    engine = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock")]),
        enrichers=[DirectoryEnricher({"alice": {"display_name": "Alice"}})],
        responders={"test_lock": LockResponder()},
        notifier=SlackNotifier(client, channel=CHANNEL, labels=labels),
        approvers=[APPROVER],
    )
    bolt = build_bolt_app(settings, engine, client, labels)
    api = build_http_app(db=db, detectors={}, webhook_token=SecretStr("x"), bolt=bolt)
    stop = asyncio.Event()  # the worker and the outbox sender run as in fido serve
    running = asyncio.create_task(engine.run(stop, idle=0.1))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://fido.test"
    ) as http:
        yield Fido(engine, http, fake_slack)
    stop.set()
    await running


def buttons(blocks: list[dict[str, Any]], kind: ActionId) -> list[dict[str, Any]]:
    found = [e for b in blocks for e in b.get("elements", []) + [b.get("accessory") or {}]]
    return [e for e in found if e.get("type") == "button" and kind_of(e["action_id"]) is kind]


def button(blocks: list[dict[str, Any]], kind: ActionId, text: str) -> dict[str, Any]:
    (found,) = [b for b in buttons(blocks, kind) if b["text"]["text"] == text]
    return found


def texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


async def audit(db: Database, verb: str) -> list[AuditEntry]:
    async with db.session() as session:
        rows = await session.exec(
            select(AuditEntry).where(AuditEntry.verb == verb).order_by(col(AuditEntry.id))
        )
        return list(rows.all())


async def actions(fido: Fido) -> list[Action]:
    found = await fido.engine.incidents.get(1)
    assert found is not None
    return found[1]


async def test_resolve_closes_the_incident_and_updates_the_card(fido: Fido, db: Database) -> None:
    await fido.alert()
    card = await fido.card(1)
    assert buttons(card, ActionId.APPROVE)  # score 70: approval is asked
    assert len(buttons(card, ActionId.CLOSE)) == 3

    await fido.click(
        APPROVER, button(card, ActionId.CLOSE, "✅ Resolve (true positive)"), updates=1
    )

    incident = await fido.incident(1)
    assert (incident.status, incident.verdict, incident.closed_by) == (
        "closed",
        "true_positive",
        APPROVER,
    )
    [entry] = await audit(db, "incident.closed")
    assert (entry.actor, entry.target, entry.incident_id) == (APPROVER, "true_positive", 1)
    [update] = fido.slack.calls("chat.update")
    assert update["channel"] == CHANNEL and update["ts"] == incident.message_ts
    closed = await fido.card(1)
    assert f"✅ Closed as true positive by <@{APPROVER}> · <!date^" in texts(closed)
    for kind in (ActionId.APPROVE, ActionId.DENY, ActionId.CLOSE, ActionId.SUPPRESS):
        assert buttons(closed, kind) == []
    assert len(fido.slack.calls("chat.postMessage")) == 1  # updated in place


async def test_a_stranger_cannot_close_and_nothing_changes(fido: Fido, db: Database) -> None:
    await fido.alert()
    card = await fido.card(1)
    reply = await fido.click(STRANGER, button(card, ActionId.CLOSE, "🙅 False positive"))
    assert reply is not None and reply["response_type"] == "ephemeral"
    assert reply["text"] == (
        ":no_entry: you are not an approver, so you cannot close this. "
        "This attempt has been recorded."
    )
    incident = await fido.incident(1)
    assert (incident.status, incident.verdict, incident.closed_by) == ("open", None, None)
    assert fido.slack.calls("chat.update") == []
    assert await audit(db, "incident.closed") == []
    [refusal] = await audit(db, "refused")
    assert (refusal.actor, refusal.target, refusal.incident_id) == (STRANGER, "close", 1)


async def test_a_second_close_is_refused(fido: Fido, db: Database) -> None:
    await fido.alert()
    stale = await fido.card(1)  # two analysts look at the same card
    await fido.click(APPROVER, button(stale, ActionId.CLOSE, "Benign"), updates=1)
    reply = await fido.click(APPROVER, button(stale, ActionId.CLOSE, "🙅 False positive"))
    assert reply is not None and reply["response_type"] == "ephemeral"
    assert reply["text"] == f":warning: incident 1 is already closed (benign by {APPROVER})"
    assert (await fido.incident(1)).verdict == "benign"
    assert len(await audit(db, "incident.closed")) == 1


async def test_false_positive_then_suppress_silences_the_next_alert_until_removed(
    fido: Fido, db: Database
) -> None:
    await fido.alert()
    card = await fido.card(1)
    await fido.click(APPROVER, button(card, ActionId.CLOSE, "🙅 False positive"), updates=1)
    closed = await fido.card(1)
    assert f"🙅 Closed as false positive by <@{APPROVER}>" in texts(closed)
    offer = button(closed, ActionId.SUPPRESS, "🔕 Suppress similar alerts (30 days)")

    reply = await fido.click(APPROVER, offer)
    assert reply is not None and reply["response_type"] == "ephemeral"
    assert reply["text"].startswith(
        "🔕 Alerts like incident #1's (detector `generic`, title `Odd login`, user `alice`) "
        "are suppressed by `db:1` until <!date^"
    )
    [made] = await fido.engine.incidents.suppressions()
    assert (made.key, made.owner, made.reason) == ("db:1", APPROVER, "false positive, incident #1")
    assert [e.target for e in await audit(db, "suppression.created")] == ["db:1"]
    again = await fido.click(APPROVER, offer)  # the card still offers it: made once only
    assert again is not None
    assert "already suppressed by `db:1`" in again["text"]
    assert len(await fido.engine.incidents.suppressions()) == 1

    await fido.alert()  # the same alert again: a new incident, silenced
    assert len(fido.slack.calls("chat.postMessage")) == 1
    silenced = await fido.incident(2)
    assert (silenced.suppressed_by, silenced.previous_id, silenced.message_ts) == ("db:1", 1, None)
    [counted] = await fido.engine.incidents.suppressions()
    assert counted.hits == 1 and counted.last_hit_at is not None

    listed = await fido.command("suppressions")
    assert listed["response_type"] == "ephemeral"
    shown = texts(listed["blocks"])
    assert "🔕 *db:1*" in shown and "1 hit, last <!date^" in shown
    assert f"Owner <@{APPROVER}>" in shown
    assert [b["action_id"] for b in buttons(listed["blocks"], ActionId.REMOVE_SUPPRESSION)] == [
        "fido_remove_suppression:1"
    ]

    removed = await fido.command("unsuppress 1")
    assert removed["text"] == "Removed suppression `db:1`: matching alerts post again."
    assert await fido.engine.incidents.suppressions() == []
    assert [e.target for e in await audit(db, "suppression.removed")] == ["db:1"]

    await fido.alert()  # no longer suppressed: posted again
    await fido.slack.wait_for("chat.postMessage", count=2)
    assert "Odd login" in fido.slack.calls("chat.postMessage")[-1]["text"]


async def test_close_and_suppress_by_command(fido: Fido) -> None:
    await fido.alert()
    reply = await fido.command("close #1 fp noisy rule &lt;b&gt;")  # Slack escapes a typed <
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == (
        "Closed incident #1 as false positive. `/fido suppress 1` silences alerts like it."
    )
    await fido.slack.wait_for("chat.update")
    incident = await fido.incident(1)
    assert (incident.verdict, incident.close_reason) == ("false_positive", "noisy rule <b>")
    closed = texts(await fido.card(1))
    assert f"🙅 Closed as false positive by <@{APPROVER}> · <!date^" in closed
    assert "· noisy rule &lt;b&gt;" in closed  # escaped again for mrkdwn

    suppressed = await fido.command("suppress 1 7d lab scanner")
    assert "are suppressed by `db:1` until" in suppressed["text"]
    assert "`/fido unsuppress 1` lifts it" in suppressed["text"]
    [made] = await fido.engine.incidents.suppressions()
    assert made.reason == "lab scanner"
    left = (made.expires_at - datetime.now(UTC)).total_seconds() / 86400
    assert 6.99 < left <= 7

    shown = await fido.command("incident 1")
    blocks = texts(shown["blocks"])
    assert "🔕 Alerts like this are suppressed by `db:1`" in blocks
    assert "*Timeline* · 1 event" in blocks and "`generic` · 🔴 Odd login" in blocks
    assert "*Score: 70/100* · every point" in blocks and "*Threat* +60" in blocks
    assert buttons(shown["blocks"], ActionId.SUPPRESS) == []


@pytest.mark.parametrize(
    ("words", "verdict"),
    [("tp", "true_positive"), ("resolve", "true_positive"), ("TRUE_POSITIVE", "true_positive"),
     ("false_positive", "false_positive"), ("benign", "benign")],
)  # fmt: skip
async def test_close_accepts_verdict_words(fido: Fido, words: str, verdict: str) -> None:
    await fido.alert()
    reply = await fido.command(f"close 1 {words}")
    assert reply["text"].startswith("Closed incident #1 as ")
    assert (await fido.incident(1)).verdict == verdict


async def test_commands_refuse_strangers(fido: Fido) -> None:
    await fido.alert()
    for text in ("close 1 tp", "suppress 1", "unsuppress 1"):
        reply = await fido.command(text, user=STRANGER)
        assert reply["text"].startswith(":no_entry: you are not an approver"), text
    assert (await fido.incident(1)).status == "open"


async def test_remove_button_in_the_list(fido: Fido) -> None:
    await fido.alert()
    await fido.command("close 1 fp")
    await fido.command("suppress 1 lab")
    listed = await fido.command("suppressions")
    (remove,) = buttons(listed["blocks"], ActionId.REMOVE_SUPPRESSION)

    refused = await fido.click(STRANGER, remove)
    assert refused is not None and refused["text"].startswith(":no_entry:")
    assert len(await fido.engine.incidents.suppressions()) == 1

    reply = await fido.click(APPROVER, remove)
    assert reply is not None and reply["replace_original"] is True
    shown = texts(reply["blocks"])
    assert "🗑️ Removed `db:1`" in shown and "No suppression is in force" in shown
    assert await fido.engine.incidents.suppressions() == []
    twice = await fido.click(APPROVER, remove)
    assert twice is not None and "there is no suppression 1 in force" in twice["text"]


async def test_deny_records_the_decision_and_redraws_the_card(fido: Fido, db: Database) -> None:
    await fido.alert()
    card = await fido.card(1)
    (deny,) = buttons(card, ActionId.DENY)

    refused = await fido.click(STRANGER, deny)
    assert refused is not None and refused["response_type"] == "ephemeral"
    assert refused["text"] == (
        ":no_entry: you are not an approver, so you cannot deny test_lock. "
        "This attempt has been recorded."
    )
    [refusal] = await audit(db, "refused")
    assert (refusal.actor, refusal.target, refusal.incident_id) == (STRANGER, "deny test_lock", 1)
    assert await actions(fido) == []
    assert fido.slack.calls("chat.update") == []

    await fido.click(APPROVER, deny, updates=1)
    [action] = await actions(fido)
    assert (action.responder, action.target, action.status) == ("test_lock", "alice", "denied")
    [entry] = await audit(db, "action.denied")
    assert (entry.actor, entry.target, entry.incident_id) == (APPROVER, "test_lock:alice", 1)
    denied = await fido.card(1)
    assert buttons(denied, ActionId.APPROVE) == [] and buttons(denied, ActionId.DENY) == []
    assert f"*Denied* by <@{APPROVER}>" in texts(denied)
    assert fido.engine.responders["test_lock"].executions == []  # type: ignore[attr-defined]
