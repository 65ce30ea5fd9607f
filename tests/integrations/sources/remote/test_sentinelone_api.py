"""The SentinelOne threats poller against a stand-in console: cursor paging, restarts in
the middle of a query and after it, ties, rate limits, server errors, a refused token."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.sources.http_retry import RetryPolicy
from integrations.sources.sentinelone_api import SentinelOneThreatsSource
from pipeline.db import Database
from pipeline.errors import ConfigError, IntegrationError
from pipeline.plugins import detectors
from pipeline.sources import poll
from tests.integrations.sources.build import build_source
from tests.integrations.sources.remote.helpers import Sleeps, cursor_of, last_error, stored_events
from tests.integrations.sources.remote.vendors import FakeSentinelOne, s1_threat, status

THREATS = "/web/api/v2.1/threats"
CONSOLE = "https://usea1-acme.sentinelone.net"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DETECTOR = detectors.get("test_s1_threats")()


def ts(second: int) -> str:
    """A SentinelOne timestamp (microseconds) ``second`` after BASE."""
    return (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S") + ".412000Z"


@pytest.fixture
def s1() -> FakeSentinelOne:
    return FakeSentinelOne()


@pytest.fixture
async def http(s1: FakeSentinelOne) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=s1.transport()) as client:
        yield client


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make(
    http: httpx.AsyncClient, s1: FakeSentinelOne, sleeps: Sleeps, **options: Any
) -> SentinelOneThreatsSource:
    source = build_source(
        "sentinelone_api",
        {"base_url": CONSOLE, "api_token_env": "S1_API_TOKEN", "page_size": 2, **options},
        name="s1",
        detector="test_s1_threats",
        environ={"S1_API_TOKEN": s1.api_token},
        http=http,
        retry=RetryPolicy(sleep=sleeps, jitter=lambda: 1.0),
    )
    assert isinstance(source, SentinelOneThreatsSource)
    return source


def ids(n: list[int]) -> list[str]:
    return [s1_threat(i, "")["id"] for i in n]


async def stored_ids(db: Database) -> list[str]:
    return [e.external_id for e in await stored_events(db)]


async def test_follows_next_cursor_and_keeps_the_cursor(
    db: Database, s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(n, ts(n)) for n in (4, 2, 0, 3, 1)]

    result = await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)

    assert await stored_ids(db) == ids([0, 1, 2, 3, 4])
    assert result.batches == 3 and result.duplicates == 0
    first, *rest = [r.url.params for r in s1.requests]
    assert "cursor" not in first
    assert first["sortBy"] == "updatedAt" and first["sortOrder"] == "asc"
    assert first["limit"] == "2"
    assert all(p["cursor"] and p["updatedAt__gte"] == first["updatedAt__gte"] for p in rest)
    assert s1.requests[0].headers["Authorization"] == f"ApiToken {s1.api_token}"
    assert await cursor_of(db, "s1") == {"updated_at": ts(4), "ids_at_time": ids([4])}


async def test_payload_is_the_response_body_verbatim(
    s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(1, ts(1))]
    batch = await make(http, s1, sleeps).fetch({})

    assert batch.payloads == [s1.responses[-1].content]
    body = json.loads(batch.payloads[0])
    assert body["pagination"] == {"nextCursor": None, "totalItems": 1}
    assert body["data"][0]["threatInfo"]["threatName"] == "invoice-1.exe"


async def test_restart_in_the_middle_of_a_query_continues_it(
    db: Database, s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(n, ts(n)) for n in range(5)]
    await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR, max_batches=1)
    stopped = await cursor_of(db, "s1")
    assert stopped["page"] and stopped["updated_at"] == ts(1)
    s1.requests.clear()

    result = await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)

    assert s1.requests[0].url.params["cursor"] == stopped["page"]
    assert len(result.created) == 3 and result.duplicates == 0
    assert await stored_ids(db) == ids([0, 1, 2, 3, 4])


async def test_restart_after_a_query_neither_loses_nor_repeats(
    db: Database, s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(n, ts(n)) for n in range(3)]
    await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)
    # later: a threat at exactly the cursor time, and a newer one
    s1.threats += [s1_threat(10, ts(2)), s1_threat(11, ts(4))]
    s1.requests.clear()

    restarted = make(http, s1, sleeps, page_size=3)
    batch = await restarted.fetch(await cursor_of(db, "s1"))

    assert s1.requests[0].url.params["updatedAt__gte"] == ts(2)
    # the page repeated threat 2; the payload keeps the vendor's shape without it
    (payload,) = batch.payloads
    body = json.loads(payload)
    assert [t["id"] for t in body["data"]] == ids([10, 11])
    assert set(body) == {"data", "pagination"}
    result = await poll(db=db, source=restarted, detector=DETECTOR)
    assert len(result.created) == 2 and result.duplicates == 0
    assert sorted(await stored_ids(db)) == sorted(ids([0, 1, 2, 10, 11]))


async def test_a_forgotten_page_token_starts_again_from_the_cursor(
    db: Database, s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(n, ts(n)) for n in range(5)]
    await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR, max_batches=1)
    s1.cursors.clear()  # e.g. the console was upgraded

    result = await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)

    assert result.duplicates == 0
    assert await stored_ids(db) == ids([0, 1, 2, 3, 4])
    assert 400 in [r.status_code for r in s1.responses]


async def test_429_with_an_http_date_then_success(
    db: Database, s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(1, ts(1))]
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    s1.fail(THREATS, status(429, {"Retry-After": later}))

    result = await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)

    assert len(result.created) == 1
    assert len(sleeps.waits) == 1 and 27 <= sleeps.waits[0] <= 30


async def test_server_errors_back_off_then_give_up(
    db: Database, s1: FakeSentinelOne, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    s1.threats = [s1_threat(1, ts(1))]
    s1.fail(THREATS, status(500), status(503))
    result = await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)
    assert len(result.created) == 1 and sleeps.waits == [1.0, 2.0]

    s1.fail(THREATS, *[status(502)] * 4)
    with pytest.raises(IntegrationError, match="HTTP 502"):
        await poll(db=db, source=make(http, s1, sleeps), detector=DETECTOR)
    assert sleeps.waits == [1.0, 2.0, 1.0, 2.0, 4.0]
    assert "HTTP 502" in (await last_error(db, "s1") or "")


async def test_refused_token_is_a_clear_error_without_the_token(
    db: Database,
    s1: FakeSentinelOne,
    http: httpx.AsyncClient,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "eyJ-an-expired-token-that-must-not-leak"
    source = SentinelOneThreatsSource(
        "s1", "test_s1_threats", http=http, base_url=CONSOLE, api_token=SecretStr(wrong)
    )

    with pytest.raises(IntegrationError) as caught:
        await poll(db=db, source=source, detector=DETECTOR)

    message = str(caught.value)
    assert "refused the API token" in message and "Authentication Failed" in message
    assert wrong not in message and wrong not in repr(source) and wrong not in caplog.text
    assert wrong not in (await last_error(db, "s1") or "")
    assert len(s1.requests) == 1  # a refused token is not retried


def test_options_are_checked(http: httpx.AsyncClient) -> None:
    good = {"base_url": CONSOLE, "api_token_env": "T"}

    def build(**options: Any) -> None:
        build_source("sentinelone_api", options, name="s1", environ={"T": "token"}, http=http)

    build(**good)
    for bad in (
        {**good, "sites": ["x"]},
        {"base_url": CONSOLE},
        {"api_token_env": "T"},
        {**good, "api_token_env": "UNSET"},
        {**good, "base_url": "ftp://console"},
        {**good, "page_size": 1001},
        {**good, "page_size": True},
    ):
        with pytest.raises(ConfigError):
            build(**bad)
