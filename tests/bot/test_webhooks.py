"""Detector webhooks: 202 only after the event is stored; every refusal says why and
stores nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from bot.server import MAX_BODY, build_http_app
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.models import Event

TOKEN = "detector-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    woken: list[bool] = []
    app = build_http_app(
        db=db,
        detectors={"generic": GenericDetector()},
        webhook_token=SecretStr(TOKEN),
        on_ingest=lambda: woken.append(True),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fido.test") as c:
        c.woken = woken  # type: ignore[attr-defined]
        yield c


async def stored(db: Database) -> list[Event]:
    async with db.session() as session:
        return list((await session.exec(select(Event))).all())


async def test_accepted_alert_is_stored_before_202(client: httpx.AsyncClient, db: Database) -> None:
    body = {"id": "x-1", "title": "Bad thing", "severity": "high", "user": "alice"}
    response = await client.post("/webhooks/generic", content=json.dumps(body), headers=AUTH)
    assert response.status_code == 202
    [event] = await stored(db)
    assert response.json() == {"accepted": [event.id], "duplicates": []}
    assert (event.detector, event.external_id, event.status) == ("generic", "x-1", "pending")
    assert client.woken == [True]  # type: ignore[attr-defined]


async def test_redelivery_is_reported_as_duplicate(client: httpx.AsyncClient, db: Database) -> None:
    body = json.dumps({"id": "x-1", "title": "Bad thing"})
    await client.post("/webhooks/generic", content=body, headers=AUTH)
    again = await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert again.status_code == 202
    assert again.json() == {"accepted": [], "duplicates": ["x-1"]}
    assert len(await stored(db)) == 1


GOOD = json.dumps({"title": "x"}).encode()


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "detail"),
    [
        ("/webhooks/generic", {"Content-Type": "application/json"}, GOOD, 401, "bearer token"),
        ("/webhooks/generic", {**AUTH, "Authorization": "Bearer wrong"}, GOOD, 401, "bearer"),
        ("/webhooks/generic", {**AUTH, "Authorization": f"Basic {TOKEN}"}, GOOD, 401, "bearer"),
        ("/webhooks/nosuch", AUTH, GOOD, 404, "no detector named 'nosuch'"),
        ("/webhooks/generic", {**AUTH, "Content-Type": "text/plain"}, GOOD, 415, "Content-Type"),
        ("/webhooks/generic", AUTH, b"{" + b" " * MAX_BODY + b"}", 413, "larger than"),
        ("/webhooks/generic", AUTH, b"{not json", 422, "not valid JSON"),
        ("/webhooks/generic", AUTH, b'{"severity": "low"}', 422, "'title' is required"),
    ],
)
async def test_bad_requests_get_a_reason_and_store_nothing(
    client: httpx.AsyncClient,
    db: Database,
    path: str,
    headers: dict,
    body: bytes,
    status: int,
    detail: str,
) -> None:
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert await stored(db) == []


async def test_oversized_body_without_content_length_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * (MAX_BODY // 10)

    response = await client.post("/webhooks/generic", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert await stored(db) == []


async def test_no_token_configured_refuses_everyone(db: Database) -> None:
    app = build_http_app(db=db, detectors={"generic": GenericDetector()}, webhook_token=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as c:
        response = await c.post(
            "/webhooks/generic", content=GOOD, headers={**AUTH, "Authorization": "Bearer "}
        )
    assert response.status_code == 401


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_metrics_count_what_is_stored(client: httpx.AsyncClient) -> None:
    await client.post("/webhooks/generic", content=b'{"id": "m1", "title": "x"}', headers=AUTH)
    await client.post("/webhooks/generic", content=b"{broken", headers=AUTH)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'fido_events{status="pending"} 1.0' in lines
    assert 'fido_dead_letters{status="pending"} 1.0' in lines
    assert "fido_deferred_lookups 0.0" in lines


async def test_metrics_count_verdicts_and_what_each_suppression_hid(
    client: httpx.AsyncClient, db: Database
) -> None:
    from datetime import UTC, datetime, timedelta

    from pipeline.engine import Engine
    from pipeline.models import CloseVerdict
    from pipeline.policy import Policy, SuppressionMatch, SuppressionRule

    rule = SuppressionRule(
        name="pentest",
        match=SuppressionMatch(title="scan*"),
        owner="secops",
        reason="pen test",
        expires=datetime.now(UTC) + timedelta(days=1),
    )
    engine = Engine(db=db, policy=Policy(enrichers=[], suppressions=[rule]), approvers=["UA"])
    for i, title in enumerate(("scan one", "scan two", "real one")):
        body = json.dumps({"id": f"s{i}", "title": title, "host": f"h{i}"}).encode()
        await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert await engine.drain() == 3
    await engine.incidents.close(incident_id=3, verdict=CloseVerdict.true_positive, actor="UA")
    lines = (await client.get("/metrics")).text.splitlines()
    assert 'fido_suppressed_alerts{suppression="policy:pentest"} 2.0' in lines
    assert 'fido_incident_verdicts{verdict="true_positive"} 1.0' in lines
