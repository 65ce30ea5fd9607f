"""App Home through Bolt with real signatures, against the fake Slack: what each viewer
sees (their approvals, with the card's buttons; Undo only for who may undo), Fido's
health, clicks from the tab, and the tab drawn again when something changes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from pydantic import SecretStr

from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from bot.slack.people import SlackPeople
from integrations.detectors.generic import GenericDetector
from pipeline import audit, deadletters
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import OutboxMessage, OutboxStatus
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures.slack import (
    FakeSlack,
    block_actions_body,
    signed_headers,
    slash_command_body,
)
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

SECRET = "home-secret"


class Home:
    """A Fido wired as ``fido serve`` wires it, driven through ``/slack/events``."""

    def __init__(self, http: httpx.AsyncClient, fake: FakeSlack, engine: Engine) -> None:
        self.http, self.fake, self.engine = http, fake, engine

    async def post(self, body: bytes, content_type: str) -> httpx.Response:
        headers = {**signed_headers(SECRET, body), "Content-Type": content_type}
        response = await self.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 200
        return response

    async def open(self, user: str) -> dict[str, Any]:
        """``user`` opens Fido's Home tab; the view published for them."""
        count = len(self.fake.calls("views.publish")) + 1
        await self.opens(user)
        return await self.published(user, count)

    async def opens(self, user: str) -> None:
        """Slack tells Fido that ``user`` opened its Home tab (nothing awaited)."""
        event = {
            "token": "x",
            "team_id": "T0FIDO",
            "api_app_id": "A0FIDO",
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:8]}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": "D1",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
        }
        await self.post(json.dumps(event).encode(), "application/json")

    async def published(self, user: str, count: int, timeout: float = 5) -> dict[str, Any]:
        """The first view published for ``user`` as the ``count``-th call or later."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.fake.calls("views.publish")[count - 1 :]
            mine = [c for c in calls if c["user_id"] == user]
            if mine:
                return mine[0]["view"]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no view published for {user} since call {count}")

    async def click(self, user: str, button: dict[str, Any]) -> None:
        """``user`` clicks ``button`` in their Home tab (Slack's payload for a view)."""
        body = block_actions_body(
            user_id=user,
            action_id=button["action_id"],
            value=button["value"],
            channel="",
            message_ts="",
            response_url="",
        )
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        for key in ("channel", "message", "response_url"):
            payload.pop(key)
        payload["container"] = {"type": "view", "view_id": "V0FIDO"}
        payload["view"] = {"id": "V0FIDO", "type": "home", "blocks": [], "team_id": "T0FIDO"}
        await self.post(
            urlencode({"payload": json.dumps(payload)}).encode(),
            "application/x-www-form-urlencoded",
        )

    async def command(self, user: str, text: str) -> None:
        body = slash_command_body(
            user_id=user, text=text, response_url=self.fake.response_url(uuid.uuid4().hex)
        )
        await self.post(body, "application/x-www-form-urlencoded")


@pytest.fixture
async def home(db: Database, fake_slack: FakeSlack) -> AsyncIterator[Home]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    fake_slack.usergroups["S0SEC"] = ["UCAROL"]
    client = web_client(settings)
    engine = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock", approver_group="S0SEC")]),
        enrichers=[DirectoryEnricher({"alice": {"display_name": "Alice"}})],
        responders={"test_lock": LockResponder()},
        approvers=["UANALYST"],
        people=SlackPeople(client),
    )
    bolt = build_bolt_app(settings, engine, client, {"test_lock": "lock"})
    api = build_http_app(db=db, detectors={}, webhook_token=SecretStr("x"), bolt=bolt)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://fido.test"
    ) as http:
        yield Home(http, fake_slack, engine)


async def alert(db: Database, alert_id: str, title: str, severity: str, user: str) -> None:
    body = {"id": alert_id, "title": title, "severity": severity, "user": user}
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(body).encode())


def buttons(view: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        element
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"].startswith(kind + ":")
    ]


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


async def test_each_viewer_sees_the_approvals_waiting_for_them(home: Home, db: Database) -> None:
    await alert(db, "1", "Token theft <!here>", "critical", "alice")  # 70: asks approval
    await alert(db, "2", "Port scan", "low", "bob")
    await home.engine.drain()

    analyst = await home.open("UANALYST")  # an approver by setting
    [approve] = buttons(analyst, "fido_approve")
    assert json.loads(approve["value"])["incident_id"] == 1
    assert approve["text"]["text"] == "Approve: lock alice"
    assert [b["text"]["text"] for b in buttons(analyst, "fido_deny")] == ["Deny"]
    shown = text_of(analyst)
    assert "*Waiting for you* · 1 incidents" in shown
    assert "Token theft &lt;!here&gt;" in shown and "<!here>" not in shown
    # open incidents by score: #1 (70) before #2
    assert shown.index("*#1*", shown.index("*Open incidents*")) < shown.index("*#2*")

    carol = await home.open("UCAROL")  # an approver through the rule's Slack user group
    assert len(buttons(carol, "fido_approve")) == 1

    bob = await home.open("UBOB")  # not an approver
    assert buttons(bob, "fido_approve") == []
    assert "Nothing waits for your approval." in text_of(bob)
    assert "*#1*" in text_of(bob)  # but sees the open incidents


async def test_approve_from_home_acts_and_redraws_the_tab_with_undo(
    home: Home, db: Database
) -> None:
    await alert(db, "1", "Token theft", "critical", "alice")
    await home.engine.drain()
    await home.open("UBOB")
    analyst = await home.open("UANALYST")
    [approve] = buttons(analyst, "fido_approve")

    # a non-approver clicking the same button is refused (and audited), nothing runs; the
    # tab has no response_url, so the refusal is shown at the top of their tab
    count = len(home.fake.calls("views.publish"))
    await home.click("UBOB", approve)
    refused = await home.published("UBOB", count + 1)
    assert refused["blocks"][1]["text"]["text"].startswith(
        ":no_entry: you are not an approver, so you cannot approve test_lock"
    )
    assert home.engine.responders["test_lock"].locked == set()  # type: ignore[attr-defined]
    async with db.session() as session:
        entries = await audit.entries(session, verb="refused")
    assert [(e.actor, e.target) for e in entries] == [("UBOB", "approve test_lock")]

    count = len(home.fake.calls("views.publish"))
    await home.click("UANALYST", approve)
    redrawn = await home.published("UANALYST", count + 1)
    assert home.engine.responders["test_lock"].locked == {"alice"}  # type: ignore[attr-defined]
    assert buttons(redrawn, "fido_approve") == []
    assert "Nothing waits for your approval." in text_of(redrawn)
    [undo] = buttons(redrawn, "fido_undo")
    assert undo["text"]["text"] == "Undo: lock alice"
    assert "#1 ✅ *lock* `alice` · *succeeded* · approved by <@UANALYST>" in text_of(redrawn)
    # the other viewer's tab is drawn again too, without Undo: they may not undo
    other = await home.published("UBOB", count + 1)
    assert "*succeeded*" in text_of(other) and buttons(other, "fido_undo") == []

    await home.click("UANALYST", undo)
    undone = await home.published("UANALYST", len(home.fake.calls("views.publish")) + 1)
    assert home.engine.responders["test_lock"].locked == set()  # type: ignore[attr-defined]
    assert "*undone*" in text_of(undone) and buttons(undone, "fido_undo") == []


async def test_health_shows_enrichers_pause_dead_letters_and_failed_outbox(
    home: Home, db: Database
) -> None:
    view = await home.open("UANALYST")
    shown = text_of(view)
    assert "✅ *Fido is healthy*" in shown
    assert "🟢 enricher *test_directory* ok" in shown
    assert "🟢 responder *test_lock* ok" in shown
    assert "Automatic action is on" in shown

    home.engine.enrichers[0].fail = True  # type: ignore[attr-defined]
    await alert(db, "1", "Odd login", "high", "alice")
    await home.engine.drain()
    async with db.session() as session:
        deadletters.keep(session, detector="generic", body=b"{not json", error="bad JSON")
        session.add(OutboxMessage(kind="notice", status=OutboxStatus.failed.value, attempts=5))
        await session.commit()
    await home.command("UANALYST", "pause change freeze")
    view = await home.published("UANALYST", len(home.fake.calls("views.publish")) + 1)
    shown = text_of(view)
    assert "⚠️ *Fido needs attention*" in shown
    assert "Automatic action is paused* by <@UANALYST>" in shown
    assert "🟠 enricher *test_directory* degraded: error: directory unreachable" in shown
    assert "1 dead letters (`fido dead-letters`)" in shown
    assert "1 failed outbox messages (`fido outbox`)" in shown


async def test_a_failed_publish_is_dropped_and_the_next_opening_works(home: Home) -> None:
    home.fake.fail_next("views.publish", "internal_error", status=500)
    await home.open("UANALYST")  # answered 500: logged, nothing raised
    view = await home.open("UANALYST")
    assert "Fido" in text_of(view)
    await asyncio.sleep(0.5)
    assert len(home.fake.calls("views.publish")) == 2  # not drawn again by itself
    assert home.fake.refused == []


async def test_a_rate_limited_publish_is_drawn_again_after_retry_after(home: Home) -> None:
    home.fake.fail_next("views.publish", "ratelimited", status=429, headers={"Retry-After": "3"})
    started = time.monotonic()
    await home.open("UANALYST")  # answered 429 …
    # (the fake notes a call before it answers: let Fido read that answer first)
    await asyncio.sleep(0.2)
    await home.opens("UANALYST")  # … so Slack is not asked again before Retry-After
    await asyncio.sleep(0.3)
    if time.monotonic() - started < 2.5:  # (a slow machine may be past it already)
        assert len(home.fake.calls("views.publish")) == 1
    redrawn = await home.published("UANALYST", 2, timeout=10)  # … then drawn once, now
    assert time.monotonic() - started >= 3.0
    assert "Fido" in text_of(redrawn)
    await asyncio.sleep(0.5)
    assert len(home.fake.calls("views.publish")) == 2


async def test_the_messages_tab_is_not_drawn(home: Home) -> None:
    event = {
        "type": "event_callback",
        "team_id": "T0FIDO",
        "api_app_id": "A0FIDO",
        "event_id": "EvMsg",
        "event_time": int(time.time()),
        "event": {"type": "app_home_opened", "user": "UANALYST", "tab": "messages"},
    }
    await home.post(json.dumps(event).encode(), "application/json")
    await home.open("UBOB")  # a later opening is drawn, the messages tab never was
    assert [c["user_id"] for c in home.fake.calls("views.publish")] == ["UBOB"]


@pytest.fixture
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.slack.listeners import home as listener

    monkeypatch.setattr(listener, "WATCH_SECONDS", 0.1)


async def test_a_new_incident_redraws_open_tabs(
    quick_watch: None, home: Home, db: Database
) -> None:
    """Triage announces nothing to the incident service: the tab notices the change itself."""
    first = await home.open("UANALYST")
    assert "No open incidents" in text_of(first)
    count = len(home.fake.calls("views.publish"))
    await asyncio.sleep(0.3)  # nothing changed: nothing drawn
    assert len(home.fake.calls("views.publish")) == count
    await alert(db, "n", "New beacon", "high", "alice")
    await home.engine.drain()
    redrawn = await home.published("UANALYST", count + 1)
    assert "New beacon" in text_of(redrawn) and "No open incidents" not in text_of(redrawn)
    await asyncio.sleep(1)  # drawn once for that change, not at every tick
    assert len(home.fake.calls("views.publish")) == count + 1
