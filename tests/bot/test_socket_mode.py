"""``fido serve`` in Socket Mode (SLACK_APP_TOKEN set): no public URL, no signing secret;
Slack's clicks arrive over the WebSocket, are acknowledged, and act like HTTP-mode clicks."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from bot.slack.ids import ActionId
from tests.bot.test_serve import TOKEN, clean_env, fido
from tests.fixtures.servers import free_port
from tests.fixtures.slack import block_actions_body
from tests.fixtures.slack_socket import SocketModeSlack

APPROVER = "UAPPROVER9"


def wait(condition: Any, what: str, process: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def listening(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_socket_mode_click_disables_and_updates_the_card(
    tmp_path: Path, socket_slack: SocketModeSlack
) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text(
        "enrichers: [static_directory]\n"
        "enricher_options: {static_directory: {users: {alice: {display_name: Alice A}}}}\n"
        "actions: [{responder: log_only}]\n"
    )
    port = free_port()
    env = clean_env(
        FIDO_DATABASE_URL=f"sqlite:///{tmp_path / 'fido.db'}",
        FIDO_CONFIG=str(policy),
        FIDO_HTTP_PORT=str(port),
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_SLACK_CHANNEL="C0SOCK",
        FIDO_APPROVERS=APPROVER,
        SLACK_BOT_TOKEN=socket_slack.token,
        SLACK_APP_TOKEN=socket_slack.app_token,
        SLACK_API_URL=socket_slack.base_url,
    )
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        wait(socket_slack.connected, "Fido never opened its Socket Mode connection", process)
        wait(lambda: listening(port), "Fido never answered on its HTTP port", process)
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/generic",
            content=json.dumps(
                {"id": "s1", "title": "Token theft", "severity": "critical", "user": "alice"}
            ),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert response.status_code == 202
        wait(lambda: socket_slack.messages, "no card was posted", process)
        [((channel, ts), message)] = socket_slack.messages.items()
        [approve] = [
            element
            for block in message["blocks"]
            for element in block.get("elements", [])
            if element.get("action_id", "").startswith(ActionId.APPROVE.value)
        ]
        body = block_actions_body(
            user_id=APPROVER,
            action_id=approve["action_id"],
            value=approve["value"],
            channel=channel,
            message_ts=ts,
            response_url=socket_slack.response_url("s"),
        )
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        envelope = socket_slack.push("interactive", payload)
        socket_slack.wait_for_ack(envelope)
        wait(lambda: socket_slack.calls("chat.update"), "the card was never updated", process)
        updated = json.dumps(socket_slack.calls("chat.update")[-1]["blocks"])
        assert "succeeded" in updated and APPROVER in updated
        # no HTTP endpoint for Slack in Socket Mode
        assert httpx.post(f"http://127.0.0.1:{port}/slack/events", content=b"x").status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert socket_slack.app_token not in output
