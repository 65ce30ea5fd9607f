"""End to end against a real OpenVPN server and real clients on loopback:

an alert posted to the webhook → a card at the fake Slack Web API → a correctly signed
Approve click → the user's VPN client is disconnected and kept out while it keeps retrying
→ the card shows the action → Undo → the client connects again. Another user's client is
never touched. Slack requests go through Bolt's own signature verification; the responder
is built from the policy's options by the same wiring as ``fido serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from bot.settings import Settings
from bot.slack.ids import ActionId
from bot.wiring import Wiring
from pipeline import audit
from pipeline.db import Database
from pipeline.leader import HOLD_EVERY, HeldContainments, Leadership
from pipeline.plugins import HoldsContainment
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
from tests.integrations.responders.test_openvpn_kill_session import ended_by_kill

openvpn_server = fixtures.openvpn_server
openvpn = fixtures.openvpn

PASSWORD_ENV = "FIDO_E2E_OPENVPN_PASSWORD"


@pytest.fixture
async def vpn_fido(
    openvpn: OpenVPNServer, fake_slack: FakeSlack, db: Database
) -> AsyncIterator[Fido]:
    settings = replica_settings(db, fake_slack)
    policy = vpn_policy(openvpn, ccd_dir=str(openvpn.ccd_dir))
    environ = {PASSWORD_ENV: openvpn.password or ""}
    async with running(settings, policy, environ, db, fake_slack) as fido:
        yield fido


def replica_settings(db: Database, fake_slack: FakeSlack) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        FIDO_DATABASE_URL=db.url,
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_APPROVERS=APPROVER,
        FIDO_SLACK_CHANNEL=CHANNEL,
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )


def vpn_policy(openvpn: OpenVPNServer, *, ccd_dir: str | None) -> Policy:
    options = {"management_port": openvpn.management_port, "password_env": PASSWORD_ENV}
    return Policy(
        enrichers=[],  # no directory here: the VPN user is named by the alert
        thresholds=Thresholds(ask_approval=50),
        actions=[
            ActionPolicy(
                responder="openvpn_kill_session",
                require_directory_match=False,
                options=options | ({"ccd_dir": ccd_dir} if ccd_dir else {}),
            )
        ],
    )


@pytest.fixture
async def guard_fido(
    openvpn: OpenVPNServer, fake_slack: FakeSlack, db: Database
) -> AsyncIterator[Fido]:
    """Two replicas in guard mode (no ccd_dir): this Fido takes the clicks; the leading
    replica, beside it on the same database, runs only the session guard's job."""
    settings = replica_settings(db, fake_slack)
    policy = vpn_policy(openvpn, ccd_dir=None)
    environ = {PASSWORD_ENV: openvpn.password or ""}
    on_leader = Wiring(settings, policy, environ=environ).responders()
    holders = {n: r for n, r in on_leader.items() if isinstance(r, HoldsContainment)}
    leadership = Leadership(db, replica="leader")
    leadership.leader = True  # it leads (on PostgreSQL without taking the real lock)
    holding = HeldContainments(leadership, holders)

    async def leader() -> None:
        while True:
            await holding.run()
            await asyncio.sleep(HOLD_EVERY)

    job = asyncio.create_task(leader())
    try:
        async with running(settings, policy, environ, db, fake_slack) as fido:
            yield fido
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        await holding.release()


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


async def test_guard_mode_a_click_on_another_replica_is_held_by_the_leader(
    guard_fido: Fido, openvpn: OpenVPNServer
) -> None:
    """Approve and Undo land on a replica that does not lead: it ends the session at once
    and records the action; the leader's guard reads it and keeps the user out until the
    Undo, recorded the same way, lets them in again."""
    jdoe = openvpn.start_client("e2e-guard-jdoe")
    alice = openvpn.start_client("e2e-guard-alice")
    await eventually(lambda: jdoe.connections == 1 and alice.connections == 1, 20, "not connected")
    response = await guard_fido.alert(
        id="vpn-g1", title="Impossible travel", severity="critical", user="e2e-guard-jdoe"
    )
    assert response.status_code == 202
    post = await posted_card(guard_fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    message = {"channel": post["channel"], "ts": post["ts"]}

    assert (await guard_fido.click(approve, user=APPROVER, message=message)).status_code == 200
    await guard_fido.slack.wait_for("chat.update", timeout=30)
    updated = blocks_of(guard_fido.slack.calls("chat.update")[-1])
    assert "Ended 1 VPN session of e2e-guard-jdoe" in json.dumps(updated)
    # ended by the click's replica, then again by the leader's guard as it reconnects
    await eventually(lambda: ended_by_kill(openvpn, "e2e-guard-jdoe") >= 3, 30, "not kept out")
    assert jdoe.running and alice.connections == 1
    assert ended_by_kill(openvpn, "e2e-guard-alice") == 0
    [undo] = buttons(updated, ActionId.UNDO)

    assert (await guard_fido.click(undo, user=APPROVER, message=message)).status_code == 200
    await guard_fido.slack.wait_for("chat.update", count=2, timeout=30)
    await asyncio.sleep(2 * HOLD_EVERY)  # the leader's guard reads the Undo at its next run

    def back_in() -> bool:  # the status file: the guard may hold the interface a moment more
        return any(
            s.common_name == "e2e-guard-jdoe" and s.established
            for s in openvpn.status_file_sessions()
        )

    await eventually(back_in, 20, "not back after Undo")
    kills = ended_by_kill(openvpn, "e2e-guard-jdoe")
    await throughout(back_in, 3, "ended again")
    assert ended_by_kill(openvpn, "e2e-guard-jdoe") == kills
    async with guard_fido.db.session() as session:
        verbs = [e.verb for e in await audit.entries(session)]
    assert verbs == ["incident.scored", "action.succeeded", "action.undo.ok"]
