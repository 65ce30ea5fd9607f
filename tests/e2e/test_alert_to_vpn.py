"""End to end against a real OpenVPN server and real clients on loopback:

an alert posted to the webhook → a card at the fake Slack Web API → a correctly signed
Approve click → the user's VPN client is disconnected and kept out while it keeps retrying
→ the card shows the action → Undo → the client connects again. Another user's client is
never touched. Slack requests go through Bolt's own signature verification; the responder
is built from the policy's options by the same wiring as ``fido serve``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bot.settings import Settings
from bot.slack.ids import ActionId
from pipeline import audit
from pipeline.db import Database
from pipeline.policy import ActionPolicy, Policy, Thresholds
from tests.e2e.test_alert_to_disable import (
    APPROVER,
    CHANNEL,
    SECRET,
    TOKEN,
    Fido,
    blocks_of,
    buttons,
    posted_card,
    running,
)
from tests.fixtures import openvpn as fixtures
from tests.fixtures.openvpn import OpenVPNServer, eventually, throughout
from tests.fixtures.slack import FakeSlack

openvpn_server = fixtures.openvpn_server
openvpn = fixtures.openvpn

PASSWORD_ENV = "FIDO_E2E_OPENVPN_PASSWORD"


@pytest.fixture
async def vpn_fido(
    openvpn: OpenVPNServer, fake_slack: FakeSlack, db: Database
) -> AsyncIterator[Fido]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        FIDO_DATABASE_URL=db.url,
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_APPROVERS=APPROVER,
        FIDO_SLACK_CHANNEL=CHANNEL,
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    policy = Policy(
        enrichers=[],  # no directory here: the VPN user is named by the alert
        thresholds=Thresholds(ask_approval=50),
        actions=[
            ActionPolicy(
                responder="openvpn_kill_session",
                require_directory_match=False,
                options={
                    "management_port": openvpn.management_port,
                    "password_env": PASSWORD_ENV,
                    "ccd_dir": str(openvpn.ccd_dir),
                },
            )
        ],
    )
    environ = {PASSWORD_ENV: openvpn.password or ""}
    async with running(settings, policy, environ, db, fake_slack) as fido:
        yield fido


async def test_approve_ends_the_vpn_session_and_keeps_it_out_until_undo(
    vpn_fido: Fido, openvpn: OpenVPNServer
) -> None:
    jdoe = openvpn.start_client("e2e-jdoe")
    openvpn.start_client("e2e-alice")
    await eventually(
        lambda: bool(openvpn.established("e2e-jdoe") and openvpn.established("e2e-alice")),
        20,
        "the clients did not connect",
    )
    response = await vpn_fido.alert(
        id="vpn-1", title="Impossible travel on the VPN", severity="critical", user="e2e-jdoe"
    )
    assert response.status_code == 202
    post = await posted_card(vpn_fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    assert approve["text"]["text"] == "Approve: end VPN session of e2e-jdoe"
    assert "End the VPN sessions of e2e-jdoe" in approve["confirm"]["text"]["text"]
    message = {"channel": post["channel"], "ts": post["ts"]}

    assert (await vpn_fido.click(approve, user=APPROVER, message=message)).status_code == 200
    await vpn_fido.slack.wait_for("chat.update", timeout=30)
    await eventually(lambda: not openvpn.established("e2e-jdoe"), 15, "still connected")
    # the client retries every second and is refused every time; alice never notices
    await throughout(lambda: not openvpn.established("e2e-jdoe"), 4, "let back in")
    assert jdoe.running and openvpn.established("e2e-alice")
    updated = blocks_of(vpn_fido.slack.calls("chat.update")[-1])
    assert "succeeded" in json.dumps(updated)
    [undo] = buttons(updated, ActionId.UNDO)

    assert (await vpn_fido.click(undo, user=APPROVER, message=message)).status_code == 200
    await vpn_fido.slack.wait_for("chat.update", count=2, timeout=30)
    await eventually(lambda: bool(openvpn.established("e2e-jdoe")), 20, "not back after Undo")
    assert not list(openvpn.ccd_dir.iterdir())  # Fido's disable entry is gone
    async with vpn_fido.db.session() as session:
        verbs = [e.verb for e in await audit.entries(session)]
    assert verbs == ["incident.scored", "action.succeeded", "action.undo.ok"]


async def test_a_management_injection_in_the_alert_never_reaches_the_server(
    vpn_fido: Fido, openvpn: OpenVPNServer
) -> None:
    """A user name carrying a management command is never proposed (a control character
    in an observable refuses the delivery), so nothing is sent to the server."""
    response = await vpn_fido.alert(
        id="vpn-2", title="x", severity="critical", user="e2e-bob\nsignal SIGTERM"
    )
    assert response.status_code == 422
    assert "control character" in response.json()["detail"]
    assert openvpn.running  # the server still runs
    assert vpn_fido.slack.calls("chat.postMessage") == []
