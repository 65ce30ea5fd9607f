"""Through the real webhook: a delivery of records the detector recognises but that hold
no alert is answered 202 with the reasons and stores nothing; a foreign payload is a 422
naming what the detector expected, kept as a dead letter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from bot.server import build_http_app
from integrations.detectors.suricata import SuricataDetector
from pipeline.db import Database
from pipeline.models import DeadLetter, Event
from tests.integrations.detectors.network.expect import payload

TOKEN = "detector-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = build_http_app(
        db=db, detectors={"suricata": SuricataDetector()}, webhook_token=SecretStr(TOKEN)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fido.test") as c:
        yield c


async def test_non_alert_eve_records_are_skipped_with_reasons(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = payload("suricata", "no_alerts.jsonl")
    response = await client.post("/webhooks/suricata", content=body, headers=AUTH)
    assert response.status_code == 202
    assert response.json() == {
        "accepted": [],
        "duplicates": [],
        "skipped": [
            {"reason": "EVE 'flow' record: not an alert", "count": 1},
            {"reason": "EVE 'stats' record: not an alert", "count": 1},
        ],
    }
    async with db.session() as session:
        assert (await session.exec(select(Event))).all() == []
        assert (await session.exec(select(DeadLetter))).all() == []


async def test_alerts_among_other_records_are_stored_and_the_rest_counted(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = payload("suricata", "eve.jsonl")
    response = await client.post("/webhooks/suricata", content=body, headers=AUTH)
    assert response.status_code == 202
    answer = response.json()
    async with db.session() as session:
        stored = (await session.exec(select(Event))).all()
    assert sorted(answer["accepted"]) == sorted(e.id for e in stored) and len(stored) == 3
    assert {item["reason"] for item in answer["skipped"]} >= {"EVE 'flow' record: not an alert"}


async def test_a_foreign_payload_is_a_422_and_a_dead_letter(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = b'{"id": 1, "event_type": "Threat Detected", "computer": {"hostname": "pc"}}'
    response = await client.post("/webhooks/suricata", content=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(
        "suricata: not a Suricata EVE alert: expected an EVE record"
    )
    async with db.session() as session:
        [letter] = (await session.exec(select(DeadLetter))).all()
        assert (await session.exec(select(Event))).all() == []
    assert letter.body == body
