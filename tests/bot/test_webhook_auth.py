"""Per-detector tokens, vendor token headers, HMAC signatures and ownership challenges."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
from fastapi import HTTPException
from pydantic import SecretStr
from sqlmodel import select
from starlette.datastructures import Headers

from bot.server import build_http_app
from bot.settings import Settings
from bot.webhook_auth import DetectorAuth, Signature, check_signature
from bot.wiring import Wiring
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.errors import ConfigError
from pipeline.models import Event
from pipeline.policy import Policy, SignatureRule

GLOBAL = "global-token"
BODY = json.dumps({"id": "1", "title": "x"}).encode()
JSON = {"Content-Type": "application/json"}


class ChallengedDetector(GenericDetector):
    name = "challenged"

    def challenge(self, headers: Mapping[str, str]) -> dict | None:
        value = headers.get("x-okta-verification-challenge")
        return {"verification": value} if value else None


def hub_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    auth = {
        "edr": DetectorAuth(token=SecretStr("edr-token")),
        "keyed": DetectorAuth(token=SecretStr("key-123"), token_header="X-Api-Key"),
        "signed": DetectorAuth(
            token=SecretStr(GLOBAL),
            signature=Signature(
                SignatureRule(header="X-Hub-Signature-256", secret_env="S", prefix="sha256="),
                SecretStr("hmac-secret"),
            ),
        ),
        "stamped": DetectorAuth(
            token=SecretStr(GLOBAL),
            signature=Signature(
                SignatureRule(
                    header="X-Signature",
                    secret_env="S",
                    encoding="base64",
                    timestamp_header="X-Timestamp",
                    separator=".",
                ),
                SecretStr("stamp-secret"),
            ),
        ),
    }
    detectors = {
        name: GenericDetector() for name in ("generic", "edr", "keyed", "signed", "stamped")
    }
    detectors["challenged"] = ChallengedDetector()
    app = build_http_app(db=db, detectors=detectors, webhook_token=SecretStr(GLOBAL), auth=auth)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as c:
        yield c


async def count(db: Database) -> int:
    async with db.session() as session:
        return len((await session.exec(select(Event))).all())


async def test_each_detector_has_its_own_token(client: httpx.AsyncClient, db: Database) -> None:
    ok = await client.post(
        "/webhooks/edr", content=BODY, headers={**JSON, "Authorization": "Bearer edr-token"}
    )
    wrong = await client.post(
        "/webhooks/edr", content=BODY, headers={**JSON, "Authorization": f"Bearer {GLOBAL}"}
    )
    other = await client.post(
        "/webhooks/generic", content=BODY, headers={**JSON, "Authorization": "Bearer edr-token"}
    )
    assert (ok.status_code, wrong.status_code, other.status_code) == (202, 401, 401)
    assert await count(db) == 1


async def test_token_in_a_vendor_header(client: httpx.AsyncClient, db: Database) -> None:
    ok = await client.post(
        "/webhooks/keyed", content=BODY, headers={**JSON, "X-Api-Key": "key-123"}
    )
    bearer = await client.post(
        "/webhooks/keyed", content=BODY, headers={**JSON, "Authorization": "Bearer key-123"}
    )
    assert (ok.status_code, bearer.status_code) == (202, 401)


async def test_unknown_detector_needs_the_global_token_to_learn_it_is_unknown(
    client: httpx.AsyncClient,
) -> None:
    anonymous = await client.post("/webhooks/nosuch", content=BODY, headers=JSON)
    known = await client.post(
        "/webhooks/nosuch", content=BODY, headers={**JSON, "Authorization": f"Bearer {GLOBAL}"}
    )
    assert (anonymous.status_code, known.status_code) == (401, 404)


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        (hub_signature("hmac-secret", BODY), 202),
        (hub_signature("hmac-secret", BODY).upper().replace("SHA256=", "sha256="), 202),
        (hub_signature("wrong-secret", BODY), 401),
        (hub_signature("hmac-secret", BODY + b" "), 401),
        (hub_signature("hmac-secret", BODY).removeprefix("sha256="), 401),
        ("", 401),
    ],
)
async def test_hmac_signature_is_verified(
    client: httpx.AsyncClient, db: Database, signature: str, status: int
) -> None:
    headers = {**JSON, "Authorization": f"Bearer {GLOBAL}", "X-Hub-Signature-256": signature}
    response = await client.post("/webhooks/signed", content=BODY, headers=headers)
    assert response.status_code == status, response.text
    assert await count(db) == (1 if status == 202 else 0)


@pytest.mark.parametrize(("age", "status"), [(0, 202), (290, 202), (310, 401), (-400, 401)])
async def test_timestamped_signature_rejects_replays(
    client: httpx.AsyncClient, age: int, status: int
) -> None:
    stamp = str(int(time.time()) - age)
    digest = hmac.new(b"stamp-secret", stamp.encode() + b"." + BODY, hashlib.sha256).digest()
    headers = {
        **JSON,
        "Authorization": f"Bearer {GLOBAL}",
        "X-Timestamp": stamp,
        "X-Signature": base64.b64encode(digest).decode(),
    }
    response = await client.post("/webhooks/stamped", content=BODY, headers=headers)
    assert response.status_code == status


@pytest.mark.parametrize(
    "stamp",
    ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e9", "0x10", "", "\u00b2", "9" * 5000],
)
async def test_a_timestamp_that_is_not_a_whole_number_of_seconds_is_refused(
    client: httpx.AsyncClient, db: Database, stamp: str
) -> None:
    """float("nan") compares false with everything, so it passed the replay window."""
    digest = hmac.new(b"stamp-secret", stamp.encode() + b"." + BODY, hashlib.sha256).digest()
    headers = {
        **JSON,
        "Authorization": f"Bearer {GLOBAL}",
        "X-Timestamp": stamp.encode("latin-1"),  # "²" is a digit to str.isdigit()
        "X-Signature": base64.b64encode(digest).decode(),
    }
    response = await client.post("/webhooks/stamped", content=BODY, headers=headers)
    assert response.status_code == 401
    assert "timestamp" in response.json()["detail"]
    assert await count(db) == 0


@pytest.mark.parametrize("stamp", ["nan", "inf", "1700000000.5", "-1e400"])
def test_check_signature_refuses_non_integer_timestamps(stamp: str) -> None:
    rule = SignatureRule(header="X-Sig", secret_env="S", timestamp_header="X-Ts")
    message = stamp.encode() + BODY
    signed = hmac.new(b"k", message, hashlib.sha256).hexdigest()
    with pytest.raises(HTTPException) as refused:
        check_signature(
            Headers({"X-Sig": signed, "X-Ts": stamp}),
            BODY,
            Signature(rule, SecretStr("k")),
            now=lambda: 1700000000.0,
        )
    assert refused.value.status_code == 401


async def test_ownership_challenge(client: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {GLOBAL}"}
    answer = await client.get(
        "/webhooks/challenged", headers={**auth, "X-Okta-Verification-Challenge": "abc123"}
    )
    assert answer.json() == {"verification": "abc123"}
    unauthenticated = await client.get(
        "/webhooks/challenged", headers={"X-Okta-Verification-Challenge": "abc123"}
    )
    no_challenge = await client.get("/webhooks/generic", headers=auth)
    assert (unauthenticated.status_code, no_challenge.status_code) == (401, 405)


def test_wiring_reads_secrets_from_the_environment_variables_the_policy_names() -> None:
    policy = Policy.model_validate(
        {
            "detectors": {
                "generic": {
                    "token_env": "EDR_TOKEN",
                    "signature": {"header": "X-Sig", "secret_env": "EDR_HMAC"},
                }
            }
        }
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    wiring = Wiring(settings, policy, environ={"EDR_TOKEN": "t1", "EDR_HMAC": "h1"})
    auth = wiring.webhook_auth()["generic"]
    assert auth.token is not None and auth.token.get_secret_value() == "t1"
    assert auth.signature is not None and auth.signature.secret.get_secret_value() == "h1"
    with pytest.raises(ConfigError, match="EDR_HMAC is not set"):
        Wiring(settings, policy, environ={"EDR_TOKEN": "t1"}).webhook_auth()
