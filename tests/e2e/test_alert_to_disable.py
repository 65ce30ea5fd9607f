"""The walking skeleton, end to end, against real components where they can run here:

a critical alert posted to the webhook → enrichment from a real Samba AD → a card at the
fake Slack Web API → a correctly signed Approve click from an approver → the account is
disabled in AD (its bind fails with sub-code 533) → the card is updated → Undo → the bind
works again. Slack requests go through Bolt's own signature verification.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from bot.slack.ids import ActionId
from bot.slack.notifier import SlackNotifier
from bot.slack.people import SlackPeople
from bot.wiring import Wiring
from pipeline import audit
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.models import Action, Incident
from pipeline.policy import Policy
from tests.fixtures.slack import FakeSlack, block_actions_body, signed_headers


def bind_error(url: str, user: str, password: str) -> str | None:
    """None when ``user`` can bind with ``password``; else the server's diagnostic message."""
    import ldap3

    connection = ldap3.Connection(
        ldap3.Server(url, connect_timeout=5), user=user, password=password, receive_timeout=10
    )
    try:
        if connection.bind():
            return None
        return str(connection.result.get("message") or connection.result)
    finally:
        connection.unbind()


SECRET = "e2e-signing-secret"
TOKEN = "e2e-webhook-token"
APPROVER = "UAPPROVER1"
APPROVER2 = "UAPPROVER2"
CHANNEL = "C0INCIDENT"


@dataclass
class Fido:
    http: httpx.AsyncClient
    slack: FakeSlack
    pipeline: Engine
    db: Database

    async def alert(self, **fields: Any) -> httpx.Response:
        return await self.http.post(
            "/webhooks/generic",
            content=json.dumps(fields),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )

    async def click(
        self,
        button: dict[str, Any],
        *,
        user: str,
        message: dict[str, Any],
        timestamp: int | None = None,
        secret: str = SECRET,
    ) -> httpx.Response:
        body = block_actions_body(
            user_id=user,
            action_id=button["action_id"],
            value=button["value"],
            channel=message["channel"],
            message_ts=message["ts"],
            response_url=self.slack.response_url(uuid.uuid4().hex),
        )
        headers = {
            **signed_headers(secret, body, timestamp),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return await self.http.post("/slack/events", content=body, headers=headers)


def buttons(blocks: list[dict[str, Any]], kind: ActionId) -> list[dict[str, Any]]:
    found = []
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["action_id"].startswith(kind.value):
                found.append(element)
    return found


def blocks_of(call: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = call["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else blocks


@pytest.fixture
async def fido(samba_ad: Any, fake_slack: FakeSlack, db: Database) -> AsyncIterator[Fido]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        FIDO_DATABASE_URL=db.url,
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_APPROVERS=f"{APPROVER},{APPROVER2}",
        FIDO_SLACK_CHANNEL=CHANNEL,
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.base_url,
    )
    directory = {  # the directory's settings sit beside it (integrations/directory/config.py)
        "FIDO_AD_URL": samba_ad.url,
        "FIDO_AD_BIND_DN": samba_ad.admin_dn,
        "FIDO_AD_PASSWORD": samba_ad.admin_password,
        "FIDO_AD_BASE_DN": samba_ad.base_dn,
    }
    async with running(settings, Policy(), directory, db, fake_slack) as fido:
        yield fido


@asynccontextmanager
async def running(
    settings: Settings,
    policy: Policy,
    environ: dict[str, str],
    db: Database,
    fake_slack: FakeSlack,
) -> AsyncIterator[Fido]:
    """Fido wired as ``fido serve`` wires it (bot/service.py), its worker and outbox
    running, its HTTP app behind an in-process client."""
    wiring = Wiring(settings, policy, environ=environ)
    responders = wiring.responders()
    client = web_client(settings)
    pipeline = Engine(
        db=db,
        policy=policy,
        enrichers=wiring.enrichers(db),
        responders=responders,
        notifier=SlackNotifier(
            client,
            channel=CHANNEL,
            labels=wiring.labels(responders),
            reversible={name for name, r in responders.items() if r.reversible},
            plan=lambda responder, target, facts: responders[responder].plan(target, facts),
        ),
        approvers=settings.approvers,
        people=SlackPeople(client),
    )
    bolt = build_bolt_app(settings, pipeline, client, wiring.labels(responders))
    api = build_http_app(
        db=db,
        detectors=wiring.detectors(),
        webhook_token=settings.webhook_token,
        bolt=bolt,
        on_ingest=pipeline.worker.wakeup.set,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(pipeline.run(stop, idle=0.1))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://fido.test"
        ) as http:
            yield Fido(http=http, slack=fake_slack, pipeline=pipeline, db=db)
    finally:
        stop.set()
        await worker


async def posted_card(fido: Fido) -> dict[str, Any]:
    """The one chat.postMessage call, with the ts Slack answered it with."""
    await fido.slack.wait_for("chat.postMessage", timeout=30)
    [post] = fido.slack.calls("chat.postMessage")
    [(channel, ts)] = fido.slack.messages.keys()
    assert channel == post["channel"]
    return {**post, "ts": ts}


async def test_alert_card_approve_disables_in_ad_and_undo_enables(
    fido: Fido, samba_ad: Any
) -> None:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(name, password, display_name="Erin Endtoend", title="Accountant")
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None

    response = await fido.alert(
        id=f"e2e-{name}",
        title="Sign-in after MFA fatigue",
        severity="critical",
        user=name,
        src_ip="203.0.113.7",
    )
    assert response.status_code == 202

    post = await posted_card(fido)
    assert post["channel"] == CHANNEL
    card = json.dumps(blocks_of(post))
    assert "Erin Endtoend" in card and "70/100" in card
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    assert approve["text"]["text"] == f"Approve: disable {name}"
    message = {"channel": post["channel"], "ts": post["ts"]}

    assert (await fido.click(approve, user=APPROVER, message=message)).status_code == 200
    await fido.slack.wait_for("chat.update", timeout=30)

    error = bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password)
    assert error is not None and "data 533" in error
    [update] = fido.slack.calls("chat.update")
    assert (update["channel"], update["ts"]) == (message["channel"], message["ts"])
    updated = json.dumps(blocks_of(update))
    assert APPROVER in updated and "succeeded" in updated
    assert buttons(blocks_of(update), ActionId.APPROVE) == []
    [undo] = buttons(blocks_of(update), ActionId.UNDO)

    assert (await fido.click(undo, user=APPROVER, message=message)).status_code == 200
    await fido.slack.wait_for("chat.update", count=2, timeout=30)
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    assert "undone" in json.dumps(blocks_of(fido.slack.calls("chat.update")[1]))

    async with fido.db.session() as session:
        verbs = [e.verb for e in await audit.entries(session)]
    assert verbs == ["incident.scored", "action.succeeded", "action.undo.ok"]


async def test_click_by_non_approver_changes_nothing(fido: Fido, samba_ad: Any) -> None:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(name, password)
    await fido.alert(title="Ransomware note written", severity="critical", user=name)
    post = await posted_card(fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    message = {"channel": post["channel"], "ts": post["ts"]}

    assert (await fido.click(approve, user="UINTRUDER", message=message)).status_code == 200
    await fido.slack.wait_for("response_url", timeout=30)

    [reply] = fido.slack.calls("response_url")
    assert reply["response_type"] == "ephemeral"
    assert "not an approver" in reply["text"]
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    assert fido.slack.calls("chat.update") == []
    async with fido.db.session() as session:
        assert (await session.exec(select(Action))).all() == []
        [refusal] = await audit.entries(session, verb="refused")
    assert refusal.actor == "UINTRUDER"


@pytest.mark.parametrize(
    ("secret", "age"), [("not-the-secret", 0), (SECRET, 6 * 60)], ids=["bad-signature", "stale"]
)
async def test_unsigned_or_stale_clicks_are_refused(
    fido: Fido, samba_ad: Any, secret: str, age: int
) -> None:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(name, password)
    await fido.alert(title="Suspicious token use", severity="critical", user=name)
    post = await posted_card(fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    message = {"channel": post["channel"], "ts": post["ts"]}
    response = await fido.click(
        approve, user=APPROVER, message=message, secret=secret, timestamp=int(time.time()) - age
    )
    assert response.status_code == 401
    await asyncio.sleep(0.5)
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    async with fido.db.session() as session:
        assert (await session.exec(select(Action))).all() == []


async def test_a_button_from_a_card_that_has_changed_is_refused(fido: Fido, samba_ad: Any) -> None:
    """An Approve drawn before the decision changed (new alerts, a new proposal) is refused
    with a clear message, through the signed click: nothing is disabled."""
    name = f"e2e{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(name, password)
    await fido.alert(title="Ransomware note written", severity="critical", user=name)
    post = await posted_card(fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    message = {"channel": post["channel"], "ts": post["ts"]}
    async with fido.db.session() as session:  # the incident was decided again since
        [incident] = (await session.exec(select(Incident))).all()
        incident.decision_version += 1
        session.add(incident)
        await session.commit()

    assert (await fido.click(approve, user=APPROVER, message=message)).status_code == 200
    await fido.slack.wait_for("response_url", timeout=30)
    [reply] = fido.slack.calls("response_url")
    assert reply["response_type"] == "ephemeral"
    assert "changed since this button was drawn" in reply["text"]
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    async with fido.db.session() as session:
        assert (await session.exec(select(Action))).all() == []


@pytest.mark.parametrize("user", ["Administrator", "CORP\\administrator", "ADMİNİSTRATOR"])
async def test_a_protected_account_is_never_proposed_and_stays_enabled(
    fido: Fido, samba_ad: Any, user: str
) -> None:
    """The directory's own Administrator, in any of its forms or a look-alike of it, gets a
    card without an Approve button, and its bind keeps working."""
    await fido.alert(title="Ransomware note written", severity="critical", user=user)
    post = await posted_card(fido)
    assert buttons(blocks_of(post), ActionId.APPROVE) == []
    admin = f"Administrator@{samba_ad.realm}"
    assert bind_error(samba_ad.url, admin, samba_ad.admin_password) is None
    async with fido.db.session() as session:
        assert (await session.exec(select(Action))).all() == []


async def test_a_privileged_vip_needs_two_approvers_and_never_themselves(
    fido: Fido, samba_ad: Any
) -> None:
    """The domain admin running a credential dump: proposed for two people, never
    automatic; the first click records an approval, the same approver cannot be the
    second, an approver cannot approve their own account, and the second, different
    approver's click disables the account in the real directory."""
    name = f"vip{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(
        name,
        password,
        display_name="Victor Ip",
        title="Chief Financial Officer",
        groups=["Domain Admins"],
    )
    response = await fido.alert(
        id=f"vip-{name}", title="Credential dump", severity="critical", user=name
    )
    assert response.status_code == 202
    post = await posted_card(fido)
    card = json.dumps(blocks_of(post), ensure_ascii=False)
    assert f"+15 user {name} is privileged (Administrators, Domain Admins)" in card
    assert f'+10 user {name} is a VIP by title \\"Chief Financial Officer\\"' in card
    assert f"+10 user {name} is a real account in Active Directory" in card
    assert "90/100" in card  # 60 severity + the user component capped at 30
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    assert approve["text"]["text"] == f"Approve: disable {name} (1 of 2)"
    message = {"channel": post["channel"], "ts": post["ts"]}

    assert (await fido.click(approve, user=APPROVER, message=message)).status_code == 200
    await fido.slack.wait_for("chat.update", timeout=30)
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    first = json.dumps(blocks_of(fido.slack.calls("chat.update")[-1]))
    assert APPROVER in first and "needs a second, different approver" in first

    await fido.click(approve, user=APPROVER, message=message)  # the same approver again
    await fido.slack.wait_for("response_url", timeout=30)
    assert "second, different approver" in fido.slack.calls("response_url")[-1]["text"]
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None

    [again] = buttons(blocks_of(fido.slack.calls("chat.update")[-1]), ActionId.APPROVE)
    assert again["text"]["text"] == f"Approve: disable {name} (2 of 2)"
    assert (await fido.click(again, user=APPROVER2, message=message)).status_code == 200
    await fido.slack.wait_for("chat.update", count=2, timeout=30)
    error = bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password)
    assert error is not None and "data 533" in error
    done = json.dumps(blocks_of(fido.slack.calls("chat.update")[-1]))
    assert f"{APPROVER}" in done and f"{APPROVER2}" in done and "succeeded" in done


async def test_an_approver_cannot_approve_an_action_on_their_own_account(
    fido: Fido, samba_ad: Any
) -> None:
    name = f"self{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(name, password, mail=f"{name}@corp.example")
    fido.slack.emails[APPROVER] = f"{name.upper()}@corp.example"  # the approver is the user
    await fido.alert(title="Ransomware note written", severity="critical", user=name)
    post = await posted_card(fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    message = {"channel": post["channel"], "ts": post["ts"]}
    assert (await fido.click(approve, user=APPROVER, message=message)).status_code == 200
    await fido.slack.wait_for("response_url", timeout=30)
    assert "your own account" in fido.slack.calls("response_url")[-1]["text"]
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    async with fido.db.session() as session:
        assert "refused.self_approval" in [e.verb for e in await audit.entries(session)]


async def test_a_replayed_or_forged_click_is_refused_before_anything_runs(
    fido: Fido, samba_ad: Any
) -> None:
    """A signed click captured and sent again after Slack's five-minute window, or signed
    with another secret, is refused by Bolt's own verification: nothing is disabled."""
    name = f"rep{uuid.uuid4().hex[:8]}"
    password = "Fido-e2e-Passw0rd!"
    samba_ad.create_user(name, password)
    await fido.alert(title="Ransomware note written", severity="critical", user=name)
    post = await posted_card(fido)
    [approve] = buttons(blocks_of(post), ActionId.APPROVE)
    message = {"channel": post["channel"], "ts": post["ts"]}
    stale = int(time.time()) - 6 * 60
    replayed = await fido.click(approve, user=APPROVER, message=message, timestamp=stale)
    forged = await fido.click(approve, user=APPROVER, message=message, secret="not-the-secret")
    assert (replayed.status_code, forged.status_code) == (401, 401)
    assert bind_error(samba_ad.url, f"{name}@{samba_ad.realm}", password) is None
    async with fido.db.session() as session:
        assert (await session.exec(select(Action))).all() == []
