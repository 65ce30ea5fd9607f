"""The CrowdStrike Alerts poller against a stand-in Falcon API: OAuth2, paging by update
time, restarts, ties, rate limits, server errors, token renewal, refused credentials."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.sources.crowdstrike_api import CrowdStrikeAlertsSource
from integrations.sources.http_retry import RetryPolicy
from pipeline.db import Database
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from pipeline.plugins import detectors
from pipeline.sources import poll
from tests.integrations.sources.build import build_source
from tests.integrations.sources.remote.helpers import (
    Sleeps,
    cursor_of,
    last_error,
    stored_events,
)
from tests.integrations.sources.remote.vendors import FakeFalcon, falcon_alert, status

QUERY = "/alerts/queries/alerts/v2"
ENTITIES = "/alerts/entities/alerts/v2"
TOKEN = "/oauth2/token"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DETECTOR = detectors.get("test_falcon_alerts")()


def ts(second: int, nanos: int = 123456789) -> str:
    """A Falcon timestamp (nanoseconds, as the API writes them) ``second`` after BASE."""
    return (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@pytest.fixture
def falcon() -> FakeFalcon:
    return FakeFalcon()


@pytest.fixture
async def http(falcon: FakeFalcon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=falcon.transport()) as client:
        yield client


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make(
    http: httpx.AsyncClient, falcon: FakeFalcon, sleeps: Sleeps, **options: Any
) -> CrowdStrikeAlertsSource:
    """The source as ``fido serve`` builds it: from the policy's options and the context."""
    source = build_source(
        "crowdstrike_api",
        {
            "client_id": falcon.client_id,
            "client_secret_env": "FALCON_SECRET",
            "page_size": 2,
            **options,
        },
        name="falcon",
        detector="test_falcon_alerts",
        environ={"FALCON_SECRET": falcon.client_secret},
        http=http,
        retry=RetryPolicy(sleep=sleeps, jitter=lambda: 1.0),
    )
    assert isinstance(source, CrowdStrikeAlertsSource)
    return source


def entity_ids(falcon: FakeFalcon) -> list[list[str]]:
    return [json.loads(r.content)["composite_ids"] for r in falcon.calls(ENTITIES)]


def filters(falcon: FakeFalcon) -> list[str]:
    return [r.url.params["filter"] for r in falcon.calls(QUERY)]


async def test_pages_through_alerts_and_keeps_the_cursor(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(n, ts(n)) for n in (3, 0, 4, 1, 2)]  # stored in any order
    source = make(http, falcon, sleeps)

    result = await poll(db=db, source=source, detector=DETECTOR)

    events = await stored_events(db)
    by_time = [falcon_alert(n, ts(n))["composite_id"] for n in range(5)]
    assert sorted(e.external_id for e in events) == sorted(by_time)
    assert len(result.created) == 5 and result.duplicates == 0 and result.batches > 1
    asked = [i for page in entity_ids(falcon) for i in page]
    assert sorted(asked) == sorted(by_time)  # each alert fetched exactly once
    assert await cursor_of(db, "falcon") == {"updated_at": ts(4), "ids_at_time": [by_time[4]]}
    # one token for the whole poll, sent as the OAuth2 form; then bearer on every call
    (token_request,) = falcon.calls(TOKEN)
    assert dict(httpx.QueryParams(token_request.content.decode())) == {
        "client_id": falcon.client_id,
        "client_secret": falcon.client_secret,
    }
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in falcon.calls(QUERY))
    first = falcon.calls(QUERY)[0].url.params
    assert first["sort"] == "updated_timestamp.asc" and first["limit"] == "2"
    assert filters(falcon)[1:] == [f"updated_timestamp:>='{ts(n)}'" for n in (1, 2, 3)]
    assert sleeps.waits == []


async def test_entities_body_is_the_payload_verbatim(
    falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(1, ts(1))]
    batch = await make(http, falcon, sleeps).fetch({})

    entities_response = falcon.responses[-1]
    assert batch.payloads == [entities_response.content]
    body = json.loads(batch.payloads[0])
    assert set(body) == {"meta", "resources", "errors"}
    assert body["resources"][0]["device"]["hostname"] == "LAPTOP-042"


async def test_restart_neither_loses_nor_repeats_alerts(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(n, ts(n)) for n in range(3)]
    await poll(db=db, source=make(http, falcon, sleeps), detector=DETECTOR)
    # later: one alert at exactly the cursor time (it was not visible yet), one newer
    falcon.alerts += [falcon_alert(10, ts(2)), falcon_alert(11, ts(5))]
    falcon.requests.clear()

    restarted = make(http, falcon, sleeps)  # a new process: nothing but the stored cursor
    result = await poll(db=db, source=restarted, detector=DETECTOR)

    assert len(result.created) == 2 and result.duplicates == 0
    assert filters(falcon)[0] == f"updated_timestamp:>='{ts(2)}'"
    delivered = falcon_alert(2, ts(2))["composite_id"]
    assert all(delivered not in page for page in entity_ids(falcon))
    events = await stored_events(db)
    assert len({e.external_id for e in events}) == len(events) == 5


async def test_more_alerts_than_a_page_share_one_timestamp(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(n, ts(7)) for n in range(5)]
    source = make(http, falcon, sleeps)

    result = await poll(db=db, source=source, detector=DETECTOR)

    assert len(result.created) == 5 and result.duplicates == 0
    assert result.batches < 10  # it made progress every time, and stopped
    falcon.requests.clear()
    again = await poll(db=db, source=make(http, falcon, sleeps), detector=DETECTOR)
    assert again.created == [] and falcon.calls(ENTITIES) == []


async def test_first_poll_starts_the_lookback_ago(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient
) -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    falcon.alerts = [
        falcon_alert(1, "2026-11-26T12:00:00.000000000Z"),  # two days old: history
        falcon_alert(2, "2026-11-28T11:59:00.000000000Z"),
    ]
    source = CrowdStrikeAlertsSource(
        "falcon",
        "test_falcon_alerts",
        http=http,
        client_id=falcon.client_id,
        client_secret=SecretStr(falcon.client_secret),
        initial_lookback_hours=24,
        now=lambda: now,
    )

    await poll(db=db, source=source, detector=DETECTOR)

    assert filters(falcon)[0] == "updated_timestamp:>='2026-11-27T12:00:00Z'"
    assert [e.external_id for e in await stored_events(db)] == [falcon_alert(2, "")["composite_id"]]


async def test_429_waits_as_told_then_succeeds(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(1, ts(1))]
    limited = {"Retry-After": "7", "X-RateLimit-Limit": "6000", "X-RateLimit-Remaining": "0"}
    falcon.fail(QUERY, status(429, limited))

    result = await poll(db=db, source=make(http, falcon, sleeps), detector=DETECTOR)

    assert len(result.created) == 1
    assert sleeps.waits == [7.0]
    assert len(falcon.calls(QUERY)) == 2


async def test_429_with_crowdstrike_retry_header(
    falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(1, ts(1))]
    at = str(int(time.time()) + 20)
    falcon.fail(ENTITIES, status(429, {"X-RateLimit-RetryAfter": at}))

    batch = await make(http, falcon, sleeps).fetch({})

    assert len(batch.payloads) == 1
    assert len(sleeps.waits) == 1 and 17 <= sleeps.waits[0] <= 20


async def test_429_asking_too_long_gives_up_at_once(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.fail(QUERY, status(429, {"Retry-After": "3600"}))

    with pytest.raises(RateLimited) as caught:
        await poll(db=db, source=make(http, falcon, sleeps), detector=DETECTOR)

    assert caught.value.retry_after == 3600
    assert sleeps.waits == []
    assert "429" in (await last_error(db, "falcon") or "")


async def test_server_errors_back_off_exponentially(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(1, ts(1))]
    falcon.fail(QUERY, status(503), status(502))

    result = await poll(db=db, source=make(http, falcon, sleeps), detector=DETECTOR)

    assert len(result.created) == 1
    assert sleeps.waits == [1.0, 2.0]  # base 1 s, doubled; jitter pinned to its maximum


async def test_a_server_that_stays_down_fails_the_poll(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.fail(QUERY, *[status(500)] * 4)

    failed = r"GET /alerts/queries/alerts/v2: server error \(HTTP 500\) after 4 tries"
    with pytest.raises(IntegrationError, match=failed):
        await poll(db=db, source=make(http, falcon, sleeps), detector=DETECTOR)

    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert await cursor_of(db, "falcon") == {}
    assert "HTTP 500" in (await last_error(db, "falcon") or "")


async def test_token_renewed_when_refused(
    db: Database, falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    falcon.alerts = [falcon_alert(1, ts(1))]
    source = make(http, falcon, sleeps)
    await poll(db=db, source=source, detector=DETECTOR)
    falcon.revoke_tokens()  # e.g. revoked in the console, or the clock skewed
    falcon.alerts.append(falcon_alert(2, ts(2)))

    result = await poll(db=db, source=source, detector=DETECTOR)

    assert len(result.created) == 1
    assert len(falcon.calls(TOKEN)) == 2
    statuses = [r.status_code for r in falcon.responses]
    assert 401 in statuses and statuses[-1] == 200


async def test_token_reused_until_shortly_before_it_expires(
    falcon: FakeFalcon, http: httpx.AsyncClient
) -> None:
    clock = [1000.0]
    source = CrowdStrikeAlertsSource(
        "falcon",
        "test_falcon_alerts",
        http=http,
        client_id=falcon.client_id,
        client_secret=SecretStr(falcon.client_secret),
        clock=lambda: clock[0],
    )
    await source.fetch({})
    clock[0] += 1700  # expires_in is 1799: still good
    await source.fetch({})
    assert len(falcon.calls(TOKEN)) == 1
    clock[0] += 60  # within a minute of expiry: renew before using it
    await source.fetch({})
    assert len(falcon.calls(TOKEN)) == 2
    assert not any(r.status_code == 401 for r in falcon.responses)


async def test_bad_credentials_are_a_clear_error_without_the_secret(
    db: Database,
    falcon: FakeFalcon,
    http: httpx.AsyncClient,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-S3cret-that-must-not-leak"
    source = build_source(
        "crowdstrike_api",
        {"client_id": falcon.client_id, "client_secret_env": "FALCON_SECRET"},
        name="falcon",
        detector="test_falcon_alerts",
        environ={"FALCON_SECRET": wrong},
        http=http,
        retry=RetryPolicy(sleep=sleeps),
    )

    with pytest.raises(IntegrationError) as caught:
        await poll(db=db, source=source, detector=DETECTOR)

    message = str(caught.value)
    assert "refused the API client credentials" in message and "HTTP 403" in message
    assert falcon.client_id in message
    assert wrong not in message and wrong not in repr(source)
    assert wrong not in caplog.text
    assert wrong not in (await last_error(db, "falcon") or "")
    assert falcon.calls(QUERY) == []


def test_options_are_checked(http: httpx.AsyncClient) -> None:
    good = {"client_id": "abc", "client_secret_env": "S"}

    def build(**options: Any) -> None:
        build_source("crowdstrike_api", options, name="falcon", environ={"S": "secret"}, http=http)

    build(**good)
    for bad in (
        {**good, "colour": "blue"},
        {"client_id": "abc"},
        {"client_secret_env": "S"},
        {**good, "client_secret_env": "UNSET"},
        {**good, "base_url": "http://api.crowdstrike.com"},
        {**good, "page_size": 0},
        {**good, "page_size": 5000},
        {**good, "initial_lookback_hours": "a day"},
    ):
        with pytest.raises(ConfigError):
            build(**bad)
    with pytest.raises(ConfigError, match=r"^source falcon \(crowdstrike_api\): no HTTP client"):
        build_source("crowdstrike_api", good, name="falcon", environ={"S": "x"})
    with pytest.raises(ConfigError, match="^source falcon .*: unknown option 'colour'$"):
        build(**good, colour="blue")


async def test_a_client_without_the_alerts_scope_is_told_so(
    falcon: FakeFalcon, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    def forbidden(request: httpx.Request) -> httpx.Response:
        errors = [{"code": 403, "message": "access denied, authorization failed"}]
        return httpx.Response(403, json={"meta": {"query_time": 0.0}, "errors": errors})

    falcon.fail(QUERY, forbidden)

    with pytest.raises(IntegrationError, match="authorization failed.*Alerts: Read scope"):
        await make(http, falcon, sleeps).fetch({})
    assert len(falcon.calls(TOKEN)) == 1  # a 403 is not a stale token: no renewal
