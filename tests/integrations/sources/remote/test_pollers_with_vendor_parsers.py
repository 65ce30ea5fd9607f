"""The API pollers end to end with the real vendor parsers: what the poller fetches is
parsed by the `crowdstrike` / `sentinelone` detectors, stored once, and a restart adds
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from integrations import load_all
from integrations.sources.http_retry import RetryPolicy
from pipeline.db import Database
from pipeline.plugins import detectors
from pipeline.sources import poll
from tests.integrations.sources.build import build_source
from tests.integrations.sources.remote.helpers import Sleeps, dead_letters, stored_events
from tests.integrations.sources.remote.vendors import (
    FakeFalcon,
    FakeSentinelOne,
    falcon_alert,
    s1_threat,
)

load_all()
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def falcon_ts(second: int) -> str:
    return (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


def s1_ts(second: int) -> str:
    return (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def test_crowdstrike_alerts_api_into_the_crowdstrike_parser(db: Database) -> None:
    falcon = FakeFalcon()
    falcon.alerts = [falcon_alert(n, falcon_ts(n), user=f"user{n}") for n in range(3)]
    detector = detectors.get("crowdstrike")()
    async with httpx.AsyncClient(transport=falcon.transport()) as http:

        def source():  # type: ignore[no-untyped-def]
            return build_source(
                "crowdstrike_api",
                {
                    "client_id": falcon.client_id,
                    "client_secret_env": "FALCON_SECRET",
                    "page_size": 2,
                },
                name="falcon",
                detector="crowdstrike",
                environ={"FALCON_SECRET": falcon.client_secret},
                http=http,
                retry=RetryPolicy(sleep=Sleeps(), jitter=lambda: 1.0),
            )

        first = await poll(db=db, source=source(), detector=detector)
        again = await poll(db=db, source=source(), detector=detector)  # a restart
    events = await stored_events(db)
    assert await dead_letters(db) == []
    assert len(first.created) == 3 and again.created == []
    assert sorted(e.external_id for e in events) == sorted(a["composite_id"] for a in falcon.alerts)
    assert {u for e in events for u in e.observables["users"]} == {"user0", "user1", "user2"}
    assert all(e.detector == "crowdstrike" and e.title for e in events)


async def test_sentinelone_threats_api_into_the_sentinelone_parser(db: Database) -> None:
    console = FakeSentinelOne()
    console.threats = [s1_threat(n, s1_ts(n)) for n in range(3)]
    detector = detectors.get("sentinelone")()
    async with httpx.AsyncClient(transport=console.transport()) as http:
        source = build_source(
            "sentinelone_api",
            {
                "base_url": "https://usea1.sentinelone.net",
                "api_token_env": "S1_TOKEN",
                "page_size": 2,
            },
            name="s1",
            detector="sentinelone",
            environ={"S1_TOKEN": console.api_token},
            http=http,
            retry=RetryPolicy(sleep=Sleeps(), jitter=lambda: 1.0),
        )
        result = await poll(db=db, source=source, detector=detector)
    events = await stored_events(db)
    assert await dead_letters(db) == []
    assert len(result.created) == 3
    assert sorted(e.external_id for e in events) == sorted(str(t["id"]) for t in console.threats)
    assert all("CORP\\alice" in e.observables["users"] for e in events)
