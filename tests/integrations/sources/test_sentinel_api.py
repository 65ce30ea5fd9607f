"""The Sentinel incidents poller against stand-ins for Entra ID and Azure Resource Manager
(``FakeMicrosoft``, see the Defender XDR poller's tests), parsed by the real
``microsoft_sentinel`` detector."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from integrations.detectors.microsoft_sentinel import SentinelDetector
from integrations.http import RetryPolicy
from integrations.sources.sentinel import SentinelIncidentsSource
from pipeline.db import Database
from pipeline.errors import ConfigError, IntegrationError
from pipeline.sources import poll
from tests.integrations.sources import test_defender_xdr_api as microsoft
from tests.integrations.sources.build import build_source
from tests.integrations.sources.remote.helpers import Sleeps, cursor_of, last_error, stored_events
from tests.integrations.sources.test_defender_xdr_api import (
    ARM,
    CLIENT_ID,
    TENANT,
    TOKEN,
    FakeMicrosoft,
    ms_error,
    stored_ids,
    times_out,
    ts,
)

SUBSCRIPTION = "d0cfe6b2-9ac0-4464-9919-dccaee2e48c0"
WORKSPACE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/soc-rg/providers/"
    "Microsoft.OperationalInsights/workspaces/soc-workspace"
)
INCIDENTS = f"{WORKSPACE}/providers/Microsoft.SecurityInsights/incidents"
DETECTOR = SentinelDetector()
# the fixtures: the fake Entra ID and ARM, a client through it, a sleep that does not wait
ms, http, sleeps = microsoft.ms, microsoft.http, microsoft.sleeps


def incident(n: int, modified: str) -> dict[str, Any]:
    """One incident as "Incidents - List" (2023-02-01) returns it."""
    name = f"73e01a99-5cd7-4139-a149-9f2736ff2a{n:02d}"
    return {
        "id": f"{INCIDENTS}/{name}",
        "name": name,
        "etag": '"0300bf09-0000-0000-0000-5c37296e0000"',
        "type": "Microsoft.SecurityInsights/incidents",
        "properties": {
            "title": f"Multiple failed sign-ins {n}",
            "description": "A user failed to sign in many times.",
            "severity": "High",
            "status": "New",
            "owner": {
                "objectId": None,
                "email": None,
                "assignedTo": None,
                "userPrincipalName": None,
            },
            "labels": [],
            "firstActivityTimeUtc": modified,
            "lastActivityTimeUtc": modified,
            "lastModifiedTimeUtc": modified,
            "createdTimeUtc": modified,
            "incidentNumber": 3100 + n,
            "additionalData": {
                "alertsCount": 1,
                "bookmarksCount": 0,
                "commentsCount": 0,
                "alertProductNames": ["Azure Sentinel"],
                "tactics": ["CredentialAccess"],
            },
            "relatedAnalyticRuleIds": [],
            "incidentUrl": f"https://portal.azure.com/#asset/Microsoft_Azure_Security_Insights"
            f"/Incident{INCIDENTS}/{name}",
        },
    }


GOOD = {
    "tenant_id": TENANT,
    "client_id": CLIENT_ID,
    "client_secret_env": "SENTINEL_SECRET",
    "subscription_id": SUBSCRIPTION,
    "resource_group": "soc-rg",
    "workspace": "soc-workspace",
}


def make(
    http: httpx.AsyncClient, ms: FakeMicrosoft, sleeps: Sleeps, **options: Any
) -> SentinelIncidentsSource:
    source = build_source(
        "sentinel_api",
        {**GOOD, "page_size": 2, **options},
        name="sentinel",
        detector="microsoft_sentinel",
        environ={"SENTINEL_SECRET": ms.client_secret},
        http=http,
        retry=RetryPolicy(sleep=sleeps, jitter=lambda: 1.0),
    )
    assert isinstance(source, SentinelIncidentsSource)
    return source


def names(numbers: list[int]) -> list[str]:
    return [incident(n, "")["name"] for n in numbers]


async def test_follows_next_links_in_order_and_parses_every_incident(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.incidents = [incident(n, ts(n)) for n in (4, 2, 0, 3, 1)]

    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)

    assert await stored_ids(db) == names([0, 1, 2, 3, 4])
    assert result.batches == 3 and result.duplicates == 0
    first, *rest = ms.calls(INCIDENTS)
    params = first.url.params
    assert params["api-version"] == "2023-02-01" and params["$top"] == "2"
    assert params["$orderby"] == "properties/lastModifiedTimeUtc asc"
    assert params["$filter"].startswith("properties/lastModifiedTimeUtc ge ")
    assert all(r.url.params["$skipToken"] for r in rest)
    (token_call,) = ms.calls(TOKEN)
    assert parse_qs(token_call.content.decode())["scope"] == [f"https://{ARM}/.default"]
    assert await cursor_of(db, "sentinel") == {"updated_at": ts(4), "ids_at_time": names([4])}
    event = next(e for e in await stored_events(db) if e.external_id == names([2])[0])
    assert event.title == "Multiple failed sign-ins 2" and event.severity == "high"


async def test_payload_is_the_arm_body_verbatim(
    ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.incidents = [incident(1, ts(1))]
    batch = await make(http, ms, sleeps).fetch({})
    assert batch.payloads == [ms.responses[-1].content] and batch.more is False
    assert json.loads(batch.payloads[0]) == {"value": [incident(1, ts(1))]}


async def test_the_cursor_advances_and_a_restart_neither_loses_nor_repeats(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.incidents = [incident(n, ts(n)) for n in range(3)]
    await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    ms.incidents += [incident(7, ts(2)), incident(8, ts(9))]  # a tie, and a newer one
    ms.requests.clear()

    restarted = make(http, ms, sleeps, page_size=3)
    batch = await restarted.fetch(await cursor_of(db, "sentinel"))

    expected = f"properties/lastModifiedTimeUtc ge {ts(2)}"
    assert ms.calls(INCIDENTS)[0].url.params["$filter"] == expected
    (payload,) = batch.payloads
    assert [i["name"] for i in json.loads(payload)["value"]] == names([7, 8])
    result = await poll(db=db, source=restarted, detector=DETECTOR)
    assert len(result.created) == 2 and result.duplicates == 0
    assert await stored_ids(db) == names([0, 1, 2, 7, 8])


async def test_a_restart_mid_query_continues_and_a_forgotten_link_starts_over(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.incidents = [incident(n, ts(n)) for n in range(5)]
    await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR, max_batches=1)
    stopped = await cursor_of(db, "sentinel")
    assert stopped["page"].startswith(f"https://{ARM}{INCIDENTS}?") and stopped["updated_at"] == ts(
        1
    )
    ms.skip_tokens.clear()  # the service forgot the skip token

    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)

    assert 400 in [r.status_code for r in ms.responses]
    # asked again from the query's start: incident 0 comes again and is known by its id,
    # incident 1 (at the watermark) is skipped; nothing is lost or stored twice
    assert len(result.created) == 3 and result.duplicates == 1
    assert await stored_ids(db) == names([0, 1, 2, 3, 4])


async def test_a_revoked_token_is_renewed_once(
    ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.incidents = [incident(1, ts(1))]
    source = make(http, ms, sleeps)
    await source.fetch({})
    ms.tokens.clear()
    assert (await source.fetch({})).payloads
    assert len(ms.calls(TOKEN)) == 2
    assert [r.status_code for r in ms.responses[-3:]] == [401, 200, 200]


async def test_a_forbidden_workspace_names_the_role(
    ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.fail(INCIDENTS, ms_error(403, "AuthorizationFailed"))
    with pytest.raises(IntegrationError, match="Microsoft Sentinel Reader"):
        await make(http, ms, sleeps).fetch({})


async def test_429_then_500_then_success(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.incidents = [incident(1, ts(1))]
    ms.fail(
        INCIDENTS,
        ms_error(429, "TooManyRequests", {"Retry-After": "9"}),
        ms_error(500, "InternalServerError"),
    )
    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    assert len(result.created) == 1 and sleeps.waits == [9.0, 2.0]

    ms.fail(INCIDENTS, *[ms_error(502)] * 4)
    with pytest.raises(IntegrationError, match="HTTP 502"):
        await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    assert "HTTP 502" in (await last_error(db, "sentinel") or "")


async def test_a_hung_vendor_times_out(sleeps: Sleeps) -> None:
    await times_out(SentinelIncidentsSource, sleeps, workspace_path=WORKSPACE)


async def test_refused_credentials_leak_no_secret(
    db: Database,
    ms: FakeMicrosoft,
    http: httpx.AsyncClient,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Zx8Q~an-old-secret-that-must-not-leak"
    source = build_source(
        "sentinel_api",
        GOOD,
        name="sentinel",
        detector="microsoft_sentinel",
        environ={"SENTINEL_SECRET": wrong},
        http=http,
        retry=RetryPolicy(sleep=sleeps, jitter=lambda: 1.0),
    )

    with pytest.raises(IntegrationError) as caught:
        await poll(db=db, source=source, detector=DETECTOR)

    message = str(caught.value)
    assert "AADSTS7000215" in message and "SENTINEL_SECRET" in message
    texts = [message, repr(source), caplog.text, await last_error(db, "sentinel") or ""]
    assert not any(wrong in t for t in texts)
    assert len(ms.calls(TOKEN)) == 1 and ms.calls(INCIDENTS) == []


def test_options_are_checked(http: httpx.AsyncClient) -> None:
    def build(options: dict[str, Any]) -> None:
        build_source(
            "sentinel_api",
            options,
            detector="microsoft_sentinel",
            environ={"SENTINEL_SECRET": "x"},
            http=http,
        )

    build(GOOD)
    build({**GOOD, "management_url": "https://management.usgovcloudapi.net"})
    for bad in (
        {**GOOD, "resource_group": "soc/../other"},
        {**GOOD, "workspace": "ws?x=1"},
        {**GOOD, "subscription_id": "sub"},
        {**GOOD, "api_version": "latest&$top=1"},
        {**GOOD, "management_url": "http://management.azure.com:80@evil"},
        {k: v for k, v in GOOD.items() if k != "workspace"},
    ):
        with pytest.raises(ConfigError):
            build(bad)
