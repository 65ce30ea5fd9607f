"""Per-token rate limits on webhooks: past the policy's ``webhook_rate``, 429 with
``Retry-After``; each token has its own bucket; nothing refused is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlmodel import func, select

from bot.server import build_http_app
from bot.webhook_auth import DetectorAuth, RateLimiter
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.models import Event
from pipeline.policy import Policy, WebhookRate

TOKEN = "global-token"
OWN = "generic-two-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def policy() -> Policy:
    return Policy(webhook_rate=WebhookRate(per_second=0.5, burst=3))


@pytest.fixture
async def client(db: Database, clock: Clock, policy: Policy) -> AsyncIterator[httpx.AsyncClient]:
    app = build_http_app(
        db=db,
        detectors={"generic": GenericDetector(), "generic_two": GenericDetector()},
        webhook_token=SecretStr(TOKEN),
        auth={"generic_two": DetectorAuth(SecretStr(OWN))},
        limiter=RateLimiter(lambda: policy.webhook_rate, clock=clock),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fido.test") as c:
        yield c


async def deliver(
    client: httpx.AsyncClient, n: int, *, detector: str = "generic", token: str = TOKEN
) -> httpx.Response:
    return await client.post(
        f"/webhooks/{detector}",
        content=json.dumps({"id": f"{detector}-{n}", "title": f"alert {n}"}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def count(db: Database) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).select_from(Event))).one())


async def test_past_the_burst_429_with_retry_after_then_accepted_again(
    client: httpx.AsyncClient, db: Database, clock: Clock
) -> None:
    assert [(await deliver(client, n)).status_code for n in range(3)] == [202, 202, 202]
    refused = await deliver(client, 3)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"  # one delivery per 2 s at 0.5/s
    assert "0.5 deliveries a second" in refused.json()["detail"]
    assert await count(db) == 3  # the refused alert was not stored
    clock.now += 1.0  # half a delivery earned: still refused, a second left to wait
    again = await deliver(client, 3)
    assert (again.status_code, again.headers["Retry-After"]) == (429, "1")
    clock.now += 1.0
    assert (await deliver(client, 3)).status_code == 202
    assert (await deliver(client, 4)).status_code == 429
    clock.now += 60  # refills up to the burst, no more
    assert [(await deliver(client, n)).status_code for n in range(10, 14)] == [202, 202, 202, 429]
    assert await count(db) == 7


async def test_each_token_has_its_own_bucket(client: httpx.AsyncClient) -> None:
    assert [(await deliver(client, n)).status_code for n in range(4)] == [202, 202, 202, 429]
    own = [
        (await deliver(client, n, detector="generic_two", token=OWN)).status_code for n in range(4)
    ]
    assert own == [202, 202, 202, 429]


async def test_refusals_of_authentication_come_first_and_cost_nothing(
    client: httpx.AsyncClient,
) -> None:
    for n in range(5):
        assert (await deliver(client, n, token="wrong")).status_code == 401
    assert [(await deliver(client, n)).status_code for n in range(3)] == [202, 202, 202]


async def test_a_reloaded_policy_applies_at_once_and_none_is_unlimited(
    client: httpx.AsyncClient, policy: Policy
) -> None:
    assert [(await deliver(client, n)).status_code for n in range(4)] == [202, 202, 202, 429]
    policy.webhook_rate = None
    assert {(await deliver(client, n)).status_code for n in range(4, 40)} == {202}


def test_default_burst_is_one_seconds_worth() -> None:
    clock = Clock()
    limiter = RateLimiter(lambda: WebhookRate(per_second=2.5), clock=clock)
    auth = DetectorAuth(SecretStr("t"))
    for _ in range(3):
        limiter.check(auth)
    with pytest.raises(Exception) as refused:
        limiter.check(auth)
    assert getattr(refused.value, "status_code", None) == 429


def test_policy_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({"webhook_rate": {"per_second": 0}})
    with pytest.raises(ValidationError):
        Policy.model_validate({"webhook_rate": {"per_second": 5, "burst": 0}})
    assert Policy().webhook_rate is None
