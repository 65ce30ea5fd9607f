"""``/fido`` through Bolt with real signatures: good commands answer, bad ones explain."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from bot.slack.listeners.commands import COMMANDS
from integrations.detectors.generic import GenericDetector
from pipeline import audit
from pipeline.clock import as_utc
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.models import CloseVerdict
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

        async def post(text: str, user: str = "UANALYST") -> httpx.Response:
            body = slash_command_body(
                user_id=user,
                text=text,
                response_url=fake_slack.response_url(uuid.uuid4().hex),
            )
            headers = {
                **signed_headers(SECRET, body),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            response = await http.post("/slack/events", content=body, headers=headers)
            assert response.status_code == 200
            return response

        async def command(text: str, user: str = "UANALYST") -> dict[str, Any]:
            count = len(fake_slack.calls("response_url")) + 1
            await post(text, user)
            await fake_slack.wait_for("response_url", count=count)
            return fake_slack.calls("response_url")[-1]

        command.pipeline = pipeline  # type: ignore[attr-defined]
        command.http = http  # type: ignore[attr-defined]
        command.post = post  # type: ignore[attr-defined]
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


async def test_help_lists_every_subcommand_from_the_dispatch_table(slack_http: Any) -> None:
    reply = await slack_http("")
    assert reply == await slack_http("help") | {"response_id": reply["response_id"]}
    commands = [line for line in reply["text"].splitlines() if line.startswith("• ")]
    listed = [line.split("`")[1].split()[1] for line in commands]
    assert listed == list(COMMANDS)
    assert listed[:5] == ["help", "lookup", "incident", "incidents", "stats"]
    assert {"close", "suppress", "suppressions", "unsuppress", "pause", "resume"} <= set(listed)
    assert "• `/fido close N tp|fp|benign [reason…]`: close incident N with a verdict" in commands
    # every subcommand the help lists is dispatched: none is an unknown command
    for name in listed:
        answer = await slack_http(name)
        assert answer["response_type"] == "ephemeral"
        assert "unknown command" not in answer["text"], name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("help me", "usage: `/fido help`"),
        ("incidents closed", "usage: `/fido incidents [open|mine|today]`"),
        ("incidents open mine", "usage: `/fido incidents [open|mine|today]`"),
        ("stats forever", "usage: `/fido stats [7d]`"),
        ("stats 0d", "is not a duration"),
        ("stats 7d 2w", "usage: `/fido stats [7d]`"),
        ("stats 400d", "at most a year"),
        ("lookup", "usage: `/fido lookup user|host|ip|hash|domain|url VALUE`"),
        ("incident", "usage: `/fido incident N`"),
        ("resume a b", "usage: `/fido resume`"),
        ("extend", "usage: `/fido extend ACTION HOURS`"),
    ],
)
async def test_mistakes_get_the_usage_line(slack_http: Any, text: str, expected: str) -> None:
    reply = await slack_http(text)
    assert reply["response_type"] == "ephemeral"
    assert expected in reply["text"]


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
    assert reply["replace_original"] is True  # the "working on it" line, not left behind


async def test_quick_answers_do_not_replace_anything(slack_http: Any) -> None:
    assert "replace_original" not in await slack_http("incidents")
    assert (await slack_http("incident x"))["replace_original"] is False  # an error


async def test_lookup_of_a_slack_formatted_url(slack_http: Any) -> None:
    reply = await slack_http("lookup url <http://evil.test/a?b=1&amp;c=2|evil.test/a>")
    assert "url: http://evil.test/a?b=1&c=2" in json.dumps(reply["blocks"])


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


async def test_extend_pushes_a_time_boxed_containment_back(slack_http: Any, db: Database) -> None:
    engine = slack_http.pipeline
    engine.reload(Policy(actions=[ActionPolicy(responder="test_lock", expire_after_hours=4)]))
    await _alert(db, "x1", "Token theft", "critical", "alice")
    await engine.drain()
    action = await engine.incidents.approve(
        incident_id=1, responder="test_lock", target="alice", actor="UANALYST"
    )
    assert action.id is not None and action.expires_at is not None
    ends = as_utc(action.expires_at) + timedelta(hours=2.5)

    refused = await slack_http(f"extend {action.id} 2.5", user="USTRANGER")
    assert refused["text"] == (
        ":no_entry: you are not an approver, so you cannot extend test_lock. "
        "This attempt has been recorded."
    )
    reply = await slack_http(f"extend {action.id} 2.5h")
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == (
        f"test_lock on alice now ends <!date^{int(ends.timestamp())}"
        f"^{{date_short_pretty}} {{time}}|{ends:%Y-%m-%d %H:%M} UTC>."
    )
    found = await engine.incidents.get(1)
    assert found is not None
    [extended] = found[1]
    assert extended.expires_at is not None and as_utc(extended.expires_at) == ends
    async with db.session() as session:
        entries = await audit.entries(session, verb="action.extended")
    assert [(e.actor, e.target, e.detail["expires_at"]) for e in entries] == [
        ("UANALYST", "test_lock:alice", ends.isoformat())
    ]
    assert engine.responders["test_lock"].locked == {"alice"}  # type: ignore[attr-defined]


async def _alert(db: Database, alert_id: str, title: str, severity: str, user: str) -> None:
    body = {"id": alert_id, "title": title, "severity": severity, "user": user}
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(body).encode())


async def test_incident_shows_a_timeline_of_events_actions_and_clicks(
    slack_http: Any, db: Database
) -> None:
    await _alert(db, "t1", "Token theft <!channel>", "critical", "alice")
    await _alert(db, "t2", "Second sign-in", "high", "alice")
    await slack_http.pipeline.drain()
    incidents = slack_http.pipeline.incidents
    await incidents.approve(incident_id=1, responder="test_lock", target="alice", actor="UANALYST")
    refused = await slack_http("close 1 fp", user="UEVE")
    assert "not an approver" in refused["text"]
    await slack_http("close 1 tp contained")
    reply = await slack_http("incident 1")
    assert reply["response_type"] == "ephemeral"
    [timeline] = [
        b["text"]["text"]
        for b in reply["blocks"]
        if b["type"] == "section" and b["text"]["text"].startswith("*Timeline*")
    ]
    title, *lines = timeline.splitlines()
    assert title == "*Timeline* · 2 events, 3 actions, clicks and decisions"
    assert lines[0].endswith("· `generic` · 🔴 Token theft &lt;!channel&gt;")
    assert lines[1].endswith("· `generic` · 🟠 Second sign-in")
    assert [line.split(" · ", 1)[1] for line in lines[2:]] == [
        "⚙️ <@UANALYST> · action.succeeded test_lock:alice: locked alice",
        "👆 <@UEVE> · refused close",
        "👆 <@UANALYST> · incident.closed true_positive: contained",
    ]
    assert "<!channel>" not in timeline  # mrkdwn: escaped (the header is plain text)
    assert "every point" in json.dumps(reply["blocks"])
    assert len(reply["blocks"]) <= 50


async def test_incidents_open_mine_and_today(slack_http: Any, db: Database) -> None:
    await _alert(db, "a", "Low thing", "low", "bob")
    await _alert(db, "b", "Big thing", "critical", "alice")
    await slack_http.pipeline.drain()
    await slack_http.pipeline.incidents.close(
        incident_id=1, verdict=CloseVerdict.benign, actor="UANALYST"
    )

    def numbers(reply: dict[str, Any]) -> list[str]:
        return re.findall(r"\*#(\d+)\*", json.dumps(reply["blocks"]))

    opened = await slack_http("incidents")
    assert opened["response_type"] == "ephemeral"
    assert numbers(opened) == ["2"] and "Open incidents, highest score first" in str(opened)
    assert numbers(await slack_http("incidents OPEN")) == ["2"]
    assert numbers(await slack_http("incidents mine")) == ["1"]
    assert numbers(await slack_http("incidents mine", user="UOTHER")) == []
    assert "None." in json.dumps((await slack_http("incidents mine", user="UOTHER"))["blocks"])
    assert numbers(await slack_http("incidents today")) == ["2", "1"]
    assert "closed, benign" in json.dumps((await slack_http("incidents today"))["blocks"])


async def test_stats_answer_after_a_working_line(
    slack_http: Any, db: Database, fake_slack: FakeSlack
) -> None:
    await _alert(db, "s1", "Odd login", "critical", "alice")
    await slack_http.pipeline.drain()
    await slack_http.pipeline.incidents.approve(
        incident_id=1, responder="test_lock", target="alice", actor="UANALYST"
    )
    response = await slack_http.post("stats")
    assert response.json() == {
        "text": ":hourglass_flowing_sand: Working on `/fido stats`…",
        "response_type": "ephemeral",
    }
    await fake_slack.wait_for("response_url")
    reply = await slack_http("stats 30d")
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is True
    text = reply["text"]
    assert "last 30 days" in text
    assert "*Alerts:* 1 (`generic` 1) · 0 suppressed" in text
    assert "*Incidents:* 1 · 1 still open" in text
    assert "`test_lock`: succeeded 1" in text
    assert "to approve 0s" in text or re.search(r"to approve \d+s", text)
    assert "no verdicts yet" in text


async def test_a_slow_answer_is_acknowledged_within_three_seconds(
    db: Database, fake_slack: FakeSlack
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    slow = DirectoryEnricher({"alice": {"display_name": "Alice"}}, delay=3.5)
    pipeline = Engine(db=db, policy=Policy(), enrichers=[slow], approvers=["UANALYST"])
    bolt = build_bolt_app(settings, pipeline, web_client(settings))
    api = build_http_app(db=db, detectors={}, webhook_token=SecretStr("x"), bolt=bolt)
    body = slash_command_body(
        user_id="UANALYST", text="lookup user alice", response_url=fake_slack.response_url("s")
    )
    headers = {**signed_headers(SECRET, body), "Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://fido.test"
    ) as http:
        started = time.monotonic()
        response = await http.post("/slack/events", content=body, headers=headers)
        assert time.monotonic() - started < 2
        assert response.status_code == 200
        assert "Working on `/fido lookup`" in response.json()["text"]
        assert response.json()["response_type"] == "ephemeral"
        assert fake_slack.calls("response_url") == []
        [answer] = await fake_slack.wait_for("response_url", timeout=10)
    assert time.monotonic() - started >= 3.5
    assert answer["replace_original"] is True and answer["response_type"] == "ephemeral"
    assert "user: alice" in json.dumps(answer["blocks"])
