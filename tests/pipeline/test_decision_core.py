"""The decision core's promise, through the real lookup layer (cache, quota, privacy screen)
with a VirusTotal fake answering exactly as VirusTotal's v3 API documents, and the real
asset-inventory enricher on a CSV file: a malicious hash on a crown-jewel host outscores the
same alert with a clean hash on a spare laptop by at least 20 points, and the card says why.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlmodel import col, select

from bot.slack.blocks import incident_card
from bot.slack.text import render_text
from integrations.detectors.generic import GenericDetector
from integrations.enrichers.asset_inventory import AssetInventoryLookup
from integrations.enrichers.virustotal import VirusTotalLookup
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.lookups.enricher import lookup_enrichers
from pipeline.models import Incident
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import breakdown_of

PAYLOADS = Path(__file__).parents[1] / "integrations/enrichers/external/payloads"
BAD = "44d88612fea8a8f36de82e1278abb02f0123456789abcdef0123456789abcdef"
GOOD = "0000000000000000000000000000000000000000000000000000000000000001"


def vt_file(malicious: int, undetected: int) -> dict[str, Any]:
    body = copy.deepcopy(json.loads((PAYLOADS / "virustotal/file.json").read_text()))
    stats = body["data"]["attributes"]["last_analysis_stats"]
    stats.update(malicious=malicious, suspicious=0, undetected=undetected, harmless=0)
    for name in ("type-unsupported", "timeout", "confirmed-timeout", "failure"):
        stats[name] = 0
    return body


def virustotal(requests: list[httpx.Request]) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.endswith(BAD):
            return httpx.Response(200, json=vt_file(60, 10))
        return httpx.Response(200, json=vt_file(0, 70))

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_malicious_hash_on_crown_jewel_outscores_clean_on_spare_laptop(
    db: Database, tmp_path: Path
) -> None:
    inventory = tmp_path / "assets.csv"
    inventory.write_text(
        "pattern,owner,criticality,zone\n"
        "crown-db-*,Payments,crown-jewel,internal\n"
        "spare-*,IT,low,corporate\n"
    )
    policy = Policy(actions=[ActionPolicy(responder="log_only")], enrichers=[])
    requests: list[httpx.Request] = []
    async with virustotal(requests) as http:
        vt = VirusTotalLookup(http=http, api_key=SecretStr("k"), base_url="https://vt.test")
        assets = AssetInventoryLookup(path=inventory)
        engine = Engine(
            db=db, policy=policy, enrichers=lookup_enrichers([vt, assets], db=db, policy=policy)
        )
        for xid, sha, host in (("1", BAD, "crown-db-01"), ("2", GOOD, "spare-07")):
            alert = {"id": xid, "title": "Suspicious binary", "severity": "high"}
            async with db.session() as session:
                await ingest(
                    session=session,
                    detector=GenericDetector(),
                    body=json.dumps({**alert, "hash": sha, "host": host}).encode(),
                )
            await engine.drain()
    async with db.session() as session:
        bad, good = (await session.exec(select(Incident).order_by(col(Incident.id)))).all()
    assert [r.url.path for r in requests] == [f"/api/v3/files/{BAD}", f"/api/v3/files/{GOOD}"]
    assert bad.score - good.score >= 20, (bad.score, good.score)
    reasons = [line.text() for line in breakdown_of(bad.score_breakdown)]
    assert "+25 hash 44d8… is malicious on VirusTotal (60/70 engines)" in reasons
    assert "+15 host crown-db-01 is crown-jewel in the asset inventory" in reasons
    assert [line.text() for line in breakdown_of(good.score_breakdown)] == ["+40 severity high"]
    card = render_text(incident_card(bad, []))
    assert "+25 hash 44d8… is malicious on VirusTotal (60/70 engines)" in card
    assert "+15 host crown-db-01 is crown-jewel in the asset inventory" in card
