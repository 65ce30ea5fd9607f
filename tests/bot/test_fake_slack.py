"""The fake Slack answers real slack_sdk and Bolt clients the way Slack does."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.ids import ACTION_ID_PATTERNS, ActionId, ButtonValue
from tests.fixtures.slack import (
    FakeSlack,
    block_actions_body,
    fake_slack_fixture,  # noqa: F401  (the fake_slack fixture)
    signed_headers,
    slash_command_body,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def client(fake: FakeSlack, token: str | None = "xoxb-test") -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.base_url)


async def test_auth_test_identifies_the_bot(fake_slack: FakeSlack) -> None:
    assert fake_slack.base_url.startswith("http://127.0.0.1:")
    assert fake_slack.base_url.endswith("/api/")
    response = await client(fake_slack).auth_test()
    assert response["ok"] is True
    assert response["user_id"] == "UFIDOBOT" and response["bot_id"] == "BFIDOBOT"
    assert response["team_id"] == "T0FIDO" and response["url"].startswith("https://")
    assert response.headers["X-OAuth-Scopes"] == "chat:write,commands,users:read"
    assert fake_slack.calls("auth.test") == [{}]


async def test_post_then_update_a_message_with_blocks(fake_slack: FakeSlack) -> None:
    web = client(fake_slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hello*"}}]
    posted = await web.chat_postMessage(channel="C0SEC", text="hello", blocks=blocks)
    assert posted["channel"] == "C0SEC"
    assert re.fullmatch(r"\d{10}\.\d{6}", posted["ts"])
    assert posted["message"]["blocks"] == blocks and posted["message"]["bot_id"] == "BFIDOBOT"
    second = await web.chat_postMessage(channel="C0SEC", text="again")
    assert second["ts"] != posted["ts"]

    (call, _) = await fake_slack.wait_for("chat.postMessage", count=2)
    assert call == {"channel": "C0SEC", "text": "hello", "blocks": blocks}

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*updated*"}}]
    updated = await web.chat_update(
        channel="C0SEC", ts=posted["ts"], text="updated", blocks=new_blocks
    )
    assert (updated["channel"], updated["ts"], updated["text"]) == (
        "C0SEC",
        posted["ts"],
        "updated",
    )
    assert fake_slack.messages[("C0SEC", posted["ts"])]["blocks"] == new_blocks
    assert fake_slack.calls("chat.update")[0]["ts"] == posted["ts"]

    with pytest.raises(SlackApiError) as missing:
        await web.chat_update(channel="C0SEC", ts="1.000001", text="nope")
    assert missing.value.response["error"] == "message_not_found"


async def test_other_methods_and_unknown_ones(fake_slack: FakeSlack) -> None:
    web = client(fake_slack)
    ephemeral = await web.chat_postEphemeral(channel="C0SEC", user="U0ALICE", text="just you")
    assert re.fullmatch(r"\d{10}\.\d{6}", ephemeral["message_ts"])
    view = {"type": "home", "blocks": []}
    assert (await web.views_publish(user_id="U0ALICE", view=view))["ok"] is True
    with pytest.raises(SlackApiError) as unknown:
        await web.conversations_list()
    assert unknown.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as no_text:
        # (slack_sdk itself warns when chat.postMessage has no text, so go around it)
        await web.api_call("chat.postMessage", json={"channel": "C0SEC"})
    assert no_text.value.response["error"] == "no_text"


async def test_form_encoded_calls_are_decoded(fake_slack: FakeSlack) -> None:
    blocks = [{"type": "divider"}]
    response = await client(fake_slack).api_call(
        "chat.postMessage", data={"channel": "C0SEC", "text": "t", "blocks": json.dumps(blocks)}
    )
    assert response["ok"] is True
    assert fake_slack.calls("chat.postMessage") == [
        {"channel": "C0SEC", "text": "t", "blocks": blocks}
    ]


async def test_missing_or_wrong_token_is_refused(fake_slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as no_token:
        await client(fake_slack, token=None).auth_test()
    assert no_token.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as wrong:
        await client(fake_slack, token="xoxb-stolen").chat_postMessage(channel="C", text="x")
    assert wrong.value.response["error"] == "invalid_auth"
    assert fake_slack.all_calls == []
    assert fake_slack.refused == [("auth.test", "not_authed"), ("chat.postMessage", "invalid_auth")]


async def test_fail_next_and_wait_for_timeout(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next(
        "chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "3"}
    )
    web = client(fake_slack)
    with pytest.raises(SlackApiError) as limited:
        await web.chat_postMessage(channel="C0SEC", text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    assert (await web.chat_postMessage(channel="C0SEC", text="x"))["ok"] is True
    with pytest.raises(TimeoutError, match="chat.update called 0/1"):
        await fake_slack.wait_for("chat.update", timeout=0.05)


def test_signed_headers_verify_with_slack_sdk() -> None:
    body = slash_command_body(user_id="U0ALICE", text="stats", response_url="http://x/r")
    headers = signed_headers(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(
        body=body,
        timestamp=headers["X-Slack-Request-Timestamp"],
        signature=headers["X-Slack-Signature"],
    )
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    old = signed_headers(SECRET, body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, old)  # replays older than 5 minutes fail


def signed_request(body: bytes) -> AsyncBoltRequest:
    return AsyncBoltRequest(body=body.decode(), headers=signed_headers(SECRET, body))


def bolt_app(fake: FakeSlack) -> AsyncApp:
    return AsyncApp(signing_secret=SECRET, client=client(fake))


async def test_bolt_handles_a_button_click_built_here(fake_slack: FakeSlack) -> None:
    app = bolt_app(fake_slack)
    seen: list[dict[str, Any]] = []

    @app.action(ACTION_ID_PATTERNS[ActionId.APPROVE])
    async def approve(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        seen.append(body)
        await respond(text="approved", replace_original=False)

    value = ButtonValue(incident_id=3, responder="ad_disable_account", target="alice")
    body = block_actions_body(
        user_id="U0ALICE",
        action_id="fido_approve:ad_disable_account:alice",
        value=value.model_dump_json(),
        channel="C0SEC",
        message_ts="1700000000.000100",
        response_url=fake_slack.response_url("click-1"),
    )
    response = await app.async_dispatch(signed_request(body))
    assert response.status == 200
    (click,) = seen
    assert ButtonValue.model_validate_json(click["actions"][0]["value"]) == value
    assert click["container"]["message_ts"] == "1700000000.000100"
    assert click["channel"]["id"] == "C0SEC" and click["user"]["id"] == "U0ALICE"
    # Bolt authorised against the fake (it names the team from the payload)
    assert fake_slack.calls("auth.test") == [{"team_id": "T0FIDO"}]
    (reply,) = await fake_slack.wait_for("response_url")
    assert reply == {"text": "approved", "replace_original": False, "response_id": "click-1"}

    tampered = AsyncBoltRequest(body=body.decode(), headers=signed_headers("wrong-secret", body))
    assert (await app.async_dispatch(tampered)).status == 401


async def test_bolt_handles_a_slash_command_built_here(fake_slack: FakeSlack) -> None:
    app = bolt_app(fake_slack)

    @app.command("/fido")
    async def fido(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(text=f"you said {command['text']} in {command['channel_id']}")

    body = slash_command_body(
        user_id="U0ALICE", text="lookup user alice", response_url=fake_slack.response_url(1)
    )
    response = await app.async_dispatch(signed_request(body))
    assert response.status == 200
    assert response.body == "you said lookup user alice in C0FIDO"
