"""``/fido`` through Bolt with real signatures: good commands answer, bad ones explain."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures.slack import FakeSlack, signed_headers, slash_command_body
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

SECRET = "cmd-secret"


@pytest.fixture
async def slack_http(db: Database, fake_slack: FakeSlack) -> AsyncIterator[Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    pipeline = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock")]),
        enrichers=[DirectoryEnricher({"alice": {"display_name": "Alice"}})],
        responders={"test_lock": LockResponder()},
        approvers=["UANALYST"],
    )
    bolt = build_bolt_app(settings, pipeline, web_client(settings), {"test_lock": "lock"})
    api = build_http_app(db=db, detectors={}, webhook_token=SecretStr("x"), bolt=bolt)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://fido.test"
    ) as http:

        async def command(text: str) -> dict[str, Any]:
            body = slash_command_body(
                user_id="UANALYST",
                text=text,
                response_url=fake_slack.response_url(uuid.uuid4().hex),
            )
            headers = {
                **signed_headers(SECRET, body),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            count = len(fake_slack.calls("response_url")) + 1
            response = await http.post("/slack/events", content=body, headers=headers)
            assert response.status_code == 200
            await fake_slack.wait_for("response_url", count=count)
            return fake_slack.calls("response_url")[-1]

        command.pipeline = pipeline  # type: ignore[attr-defined]
        command.http = http  # type: ignore[attr-defined]
        yield command


async def test_incident_command_shows_the_card_ephemerally(slack_http: Any, db: Database) -> None:
    async with db.session() as session:
        await ingest(
            session=session,
            detector=GenericDetector(),
            body=json.dumps(
                {"id": "1", "title": "Token theft", "severity": "critical", "user": "alice"}
            ).encode(),
        )
    await slack_http.pipeline.drain()
    reply = await slack_http("incident 1")
    assert reply["response_type"] == "ephemeral"
    assert "Token theft" in json.dumps(reply["blocks"])
    assert "Approve: lock alice" in json.dumps(reply["blocks"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("incident 999", "there is no incident 999"),
        ("incident abc", "usage: `/fido incident N`"),
        ("frobnicate now", "unknown command `frobnicate`"),
        ("<!channel>", "unknown command"),
        ("payload=1 frobnicate", "unknown command `payload=1`"),
        ("incident payload.exe", "usage: `/fido incident N`"),
        ("close", "usage: `/fido close N tp|fp|benign [reason…]`"),
        ("close 1", "usage: `/fido close N tp|fp|benign"),
        ("close 1 maybe", "usage: `/fido close N tp|fp|benign"),
        ("close one fp", "usage: `/fido close N tp|fp|benign"),
        ("close 999 fp", "there is no incident 999"),
        ("suppress", "usage: `/fido suppress N [DAYS] [reason…]`"),
        ("suppress x", "usage: `/fido suppress N [DAYS]"),
        ("suppress 999", "there is no incident 999"),
        ("suppressions now", "usage: `/fido suppressions`"),
        ("unsuppress", "usage: `/fido unsuppress ID`"),
        ("unsuppress 1 2", "usage: `/fido unsuppress ID`"),
        ("unsuppress abc", "usage: `/fido unsuppress ID`"),
        ("unsuppress policy:scanner", "`policy:scanner` is in the policy file"),
        ("unsuppress 42", "there is no suppression 42 in force"),
    ],
)
async def test_bad_commands_get_an_ephemeral_reason(
    slack_http: Any, text: str, expected: str
) -> None:
    reply = await slack_http(text)
    assert reply["response_type"] == "ephemeral"
    assert expected in reply["text"]


async def test_help(slack_http: Any) -> None:
    reply = await slack_http("")
    assert reply == await slack_http("help") | {"response_id": reply["response_id"]}
    commands = [line for line in reply["text"].splitlines() if line.startswith("• ")]
    assert [line.split("`")[1].split()[1] for line in commands] == [
        "help",
        "lookup",
        "incident",
        "close",
        "suppress",
        "suppressions",
        "unsuppress",
        "pause",
        "resume",
        "extend",
    ]
    assert "• `/fido close N tp|fp|benign [reason…]`: close incident N with a verdict" in commands


async def test_lookup_shows_every_enricher_and_the_history(slack_http: Any, db: Database) -> None:
    async with db.session() as session:
        await ingest(
            session=session,
            detector=GenericDetector(),
            body=json.dumps(
                {"id": "9", "title": "Odd login", "severity": "critical", "user": "alice"}
            ).encode(),
        )
    await slack_http.pipeline.drain()
    await slack_http.pipeline.incidents.approve(
        incident_id=1, responder="test_lock", target="alice", actor="UANALYST"
    )
    reply = await slack_http("lookup user alice@corp.test")
    assert reply["response_type"] == "ephemeral"
    shown = json.dumps(reply["blocks"])
    assert "user: alice@corp.test" in shown
    assert "test_directory" in shown
    assert "#1 critical 70/100 Odd login" in shown  # severity critical 60 + real account 10
    assert "test_lock alice: succeeded" in shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lookup ip 999.1.1.1", "is not an IP address"),
        ("lookup hash xyz", "md5, sha1 or sha256"),
        ("lookup planet mars", "unknown kind `planet`"),
        ("lookup user", "usage: `/fido lookup"),
    ],
)
async def test_bad_lookups_explain(slack_http: Any, text: str, expected: str) -> None:
    reply = await slack_http(text)
    assert reply["response_type"] == "ephemeral" and expected in reply["text"]


async def test_lookup_of_a_slack_formatted_url(slack_http: Any) -> None:
    reply = await slack_http("lookup url <http://evil.test/a?b=1&amp;c=2|evil.test/a>")
    assert "url: http://evil.test/a?b=1&c=2" in json.dumps(reply["blocks"])


async def test_app_home_lists_open_incidents(
    slack_http: Any, db: Database, fake_slack: FakeSlack
) -> None:
    async with db.session() as session:
        await ingest(
            session=session,
            detector=GenericDetector(),
            body=json.dumps(
                {"id": "h", "title": "Beaconing <!here>", "severity": "high", "user": "alice"}
            ).encode(),
        )
    await slack_http.pipeline.drain()
    event = {
        "token": "x",
        "team_id": "T0FIDO",
        "api_app_id": "A0FIDO",
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": 1700000000,
        "event": {
            "type": "app_home_opened",
            "user": "UANALYST",
            "channel": "D1",
            "tab": "home",
            "event_ts": "1700000000.000100",
        },
    }
    body = json.dumps(event).encode()
    response = await slack_http.http.post(
        "/slack/events",
        content=body,
        headers={**signed_headers(SECRET, body), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    await fake_slack.wait_for("views.publish")
    [published] = fake_slack.calls("views.publish")
    assert published["user_id"] == "UANALYST"
    shown = json.dumps(published["view"])
    # severity high 40 + a real account in the directory 10
    assert "#1" in shown and "Beaconing &lt;!here&gt;" in shown and "50/100" in shown
    assert "paused" not in shown

    await slack_http.pipeline.incidents.pause(actor="UANALYST", reason="change freeze")
    response = await slack_http.http.post(
        "/slack/events",
        content=body,
        headers={**signed_headers(SECRET, body), "Content-Type": "application/json"},
    )
    await fake_slack.wait_for("views.publish", count=2)
    shown = json.dumps(fake_slack.calls("views.publish")[1]["view"])
    assert "Automatic action is paused* by <@UANALYST>" in shown and "/fido resume" in shown


async def test_an_oversized_slack_body_is_refused_before_it_is_read(slack_http: Any) -> None:
    """An unauthenticated 1 GiB request once took the process to 1.16 GB: the body is now
    refused with 413 after 1 MiB, before the signature is even looked at."""
    chunk = b"x" * 65536
    sent = 0

    async def gigabyte() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(2**30 // len(chunk)):
            sent += 1
            yield chunk

    response = await slack_http.http.post(
        "/slack/events",
        content=gigabyte(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert "larger than 1048576 bytes" in response.json()["detail"]
    assert sent <= 1024 * 1024 // len(chunk) + 2  # stopped just past 1 MiB, not at 1 GiB


async def test_a_declared_oversized_slack_body_is_refused_without_reading(
    slack_http: Any,
) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        sent += 1
        yield b"x"

    response = await slack_http.http.post(
        "/slack/events",
        content=body(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(2**30),
        },
    )
    assert response.status_code == 413
    assert sent == 0


async def test_pause_resume_and_extend_commands(slack_http: Any, fake_slack: FakeSlack) -> None:
    paused = await slack_http("pause change freeze")
    assert paused["response_type"] == "ephemeral"
    assert paused["text"].startswith("Automatic action is paused everywhere")
    assert (await slack_http("pause"))["text"] == "Automatic action was already paused."
    switches = await slack_http.pipeline.incidents.switches()
    assert switches.paused_by == "UANALYST"
    await slack_http.pipeline.flush()  # the channel is told, through the outbox
    notices = slack_http.pipeline.incidents.notifier.notices
    assert "<@UANALYST> paused automatic action: change freeze" in notices[0]
    assert (await slack_http("resume"))["text"] == "Automatic action is back on."
    assert (await slack_http("resume"))["text"] == "Automatic action was not paused."
    assert (await slack_http("resume test_lock"))[
        "text"
    ] == "test_lock had not reached its hourly cap."
    assert "no responder named `nope`" in (await slack_http("resume nope"))["text"]
    assert "usage: `/fido extend ACTION HOURS`" in (await slack_http("extend 1"))["text"]
    assert "there is no action 99" in (await slack_http("extend 99 4"))["text"]
