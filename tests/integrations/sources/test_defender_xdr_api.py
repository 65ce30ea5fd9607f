"""The Defender XDR alerts poller against stand-ins for Entra ID and Microsoft Graph, parsed
by the real ``m365_defender`` detector: next links, the cursor advancing and resuming, a
revoked token, 429, 5xx, a hung vendor, and no secret in any error or log line.

``FakeMicrosoft`` (used by the Sentinel poller's tests too) answers as Microsoft documents:

- Entra ID, "OAuth 2.0 client credentials flow": ``POST /{tenant}/oauth2/v2.0/token`` →
  200 ``{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
  "access_token"}``; a wrong secret 401 ``{"error": "invalid_client", "error_description":
  "AADSTS7000215: Invalid client secret provided. …", "error_codes": [7000215], …}``.
- Graph, "List alerts_v2": ``GET /v1.0/security/alerts_v2`` with ``$filter`` on
  ``lastUpdateDateTime``, ``$top`` and ``$skip`` (no ``$orderby``), newest first, paged
  with ``@odata.nextLink``; errors ``{"error": {"code", "message", "innerError"}}``, an
  expired token 401 ``InvalidAuthenticationToken``.
- Azure Resource Manager, "Incidents - List" (api-version 2023-02-01): ``$filter``,
  ``$orderby``, ``$top``, ``$skipToken``, paged with ``nextLink``; errors ``{"error":
  {"code", "message"}}``, an expired token 401 ``ExpiredAuthenticationToken``.

The filters and paging are implemented for real, so a poller asking the wrong question
gets the wrong answer.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from pydantic import SecretStr

from integrations import load_all
from integrations.detectors.m365_defender import M365DefenderDetector
from integrations.http import RetryPolicy
from integrations.sources.defender_xdr import DefenderXDRAlertsSource, EntraPoller
from integrations.sources.http_retry import timestamp_key
from pipeline.db import Database
from pipeline.errors import ConfigError, IntegrationError
from pipeline.sources import poll
from tests.integrations.responders.saas import silent_server
from tests.integrations.sources.build import build_source
from tests.integrations.sources.remote.helpers import Sleeps, cursor_of, last_error, stored_events

load_all()

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
LOGIN = "login.microsoftonline.com"
GRAPH = "graph.microsoft.com"
ARM = "management.azure.com"
ALERTS = "/v1.0/security/alerts_v2"
TOKEN = f"/{TENANT}/oauth2/v2.0/token"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DETECTOR = M365DefenderDetector()

Answer = Callable[[httpx.Request], httpx.Response]


def ts(second: int) -> str:
    """A Graph timestamp (seven fractional digits) ``second`` after BASE."""
    return (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S") + ".7211305Z"


def graph_alert(n: int, updated: str) -> dict[str, Any]:
    """One alert as "List alerts_v2" returns it (abridged to a device and a user)."""
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": f"da63755122767756081{n}_-96144481{n}",
        "providerAlertId": f"da63755122767756081{n}_-96144481{n}",
        "incidentId": str(1000 + n),
        "status": "new",
        "severity": "high",
        "classification": None,
        "determination": None,
        "serviceSource": "microsoftDefenderForEndpoint",
        "detectionSource": "antivirus",
        "detectorId": "e0da400f-affd-43ef-b1d5-afc2eb6f2756",
        "tenantId": TENANT,
        "title": f"Suspicious execution of hidden file {n}",
        "description": "A hidden file has been launched.",
        "category": "DefenseEvasion",
        "alertWebUrl": f"https://security.microsoft.com/alerts/da63755122767756081{n}",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{1000 + n}",
        "mitreTechniques": ["T1564.001"],
        "createdDateTime": updated,
        "lastUpdateDateTime": updated,
        "firstActivityDateTime": updated,
        "lastActivityDateTime": updated,
        "comments": [],
        "evidence": [
            {
                "@odata.type": "#microsoft.graph.security.deviceEvidence",
                "createdDateTime": updated,
                "verdict": "unknown",
                "remediationStatus": "none",
                "roles": [],
                "mdeDeviceId": "73e7e2de709dff64ef64b1d0c30e67fab63279db",
                "deviceDnsName": f"laptop-{n}.corp.example",
                "osPlatform": "Windows10",
                "loggedOnUsers": [{"accountName": f"user{n}", "domainName": "CORP"}],
                "ipInterfaces": ["10.0.0.5"],
            },
            {
                "@odata.type": "#microsoft.graph.security.userEvidence",
                "createdDateTime": updated,
                "verdict": "unknown",
                "remediationStatus": "none",
                "roles": [],
                "userAccount": {
                    "accountName": f"user{n}",
                    "domainName": "CORP",
                    "userSid": "S-1-5-21-1111111111-2222222222-3333333333-1001",
                    "azureAdUserId": "e8d2e4b1-7d5a-4b4a-9a5c-3f3c3f3c3f3c",
                    "userPrincipalName": f"user{n}@corp.example",
                    "displayName": f"User {n}",
                },
            },
        ],
        "systemTags": [],
    }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def ms_error(code: int, name: str = "", headers: dict[str, str] | None = None) -> Answer:
    """A canned Graph / ARM failure: ``{"error": {"code", "message"}}``."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": name or f"Http{code}", "message": f"HTTP {code} from Azure"}}
        return _json(code, body, headers)

    return answer


def _since(expression: str, field_name: str) -> tuple[int, int] | None:
    match = re.fullmatch(re.escape(field_name) + r" ge (\S+)", expression)
    return timestamp_key(match.group(1)) if match else None


@dataclass
class FakeMicrosoft:
    """Entra ID for one app registration, Graph's alerts v2, ARM's Sentinel incidents."""

    client_secret: str = "Zx8Q~entra-client-secret-never-shown~abc"
    alerts: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # token → scope it was issued for
    requests: list[httpx.Request] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)
    failures: list[tuple[str, Answer]] = field(default_factory=list)
    skip_tokens: dict[str, int] = field(default_factory=dict)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._record)

    def fail(self, path: str, *answers: Answer) -> None:
        """Answer the next requests for ``path`` with ``answers``, one each, in order."""
        self.failures.extend((path, answer) for answer in answers)

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def _record(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for index, (path, answer) in enumerate(self.failures):
            if path == request.url.path:
                del self.failures[index]
                response = answer(request)
                break
        else:
            response = self._handle(request)
        self.responses.append(response)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == LOGIN:
            return self._token(request)
        scope = self.tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if host == GRAPH:
            if scope != f"https://{GRAPH}/.default":
                error = {
                    "code": "InvalidAuthenticationToken",
                    "message": "Access token has expired or is not yet valid.",
                    "innerError": {"date": "2024-05-01T12:00:00", "request-id": str(uuid.uuid4())},
                }
                return _json(401, {"error": error})
            if request.url.path == ALERTS:
                return self._alerts(request)
        if host == ARM:
            if scope != f"https://{ARM}/.default":
                message = "The access token expiry UTC time is earlier than current UTC time."
                return _json(
                    401, {"error": {"code": "ExpiredAuthenticationToken", "message": message}}
                )
            if request.url.path.endswith("/providers/Microsoft.SecurityInsights/incidents"):
                return self._incidents(request)
        return _json(404, {"error": {"code": "ResourceNotFound", "message": "Not found"}})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if (
            request.url.path != TOKEN
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != self.client_secret
        ):
            description = (
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                f"in the request is the client secret value.\r\nTrace ID: {uuid.uuid4()}"
            )
            return _json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": description,
                    "error_codes": [7000215],
                    "timestamp": "2024-05-01 12:00:00Z",
                    "trace_id": str(uuid.uuid4()),
                    "correlation_id": str(uuid.uuid4()),
                },
            )
        token = f"eyJ0eXAiOiJKV1Qi.{uuid.uuid4().hex}{uuid.uuid4().hex}"
        self.tokens[token] = form.get("scope", "")
        body = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599}
        return _json(200, {**body, "access_token": token})

    def _alerts(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if "$orderby" in params:  # not a documented parameter of alerts_v2
            return _json(400, {"error": {"code": "BadRequest", "message": "Invalid $orderby"}})
        since = _since(params.get("$filter", ""), "lastUpdateDateTime")
        if since is None:
            return _json(400, {"error": {"code": "BadRequest", "message": "Invalid filter"}})
        found = [
            a for a in self.alerts if (timestamp_key(a["lastUpdateDateTime"]) or (0, 0)) >= since
        ]
        found.sort(key=lambda a: timestamp_key(a["lastUpdateDateTime"]) or (0, 0), reverse=True)
        top, skip = int(params.get("$top", 50)), int(params.get("$skip", 0))
        body: dict[str, Any] = {
            "@odata.context": f"https://{GRAPH}/v1.0/$metadata#security/alerts_v2",
            "value": found[skip : skip + top],
        }
        if skip + top < len(found):
            query = {"$filter": params["$filter"], "$top": top, "$skip": skip + top}
            body["@odata.nextLink"] = f"https://{GRAPH}{ALERTS}?{urlencode(query)}"
        return _json(200, body)

    def _incidents(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if params.get("api-version") != "2023-02-01":
            message = "The api-version query parameter is required for all requests."
            return _json(400, {"error": {"code": "MissingApiVersionParameter", "message": message}})
        skip = 0
        if "$skipToken" in params:
            if params["$skipToken"] not in self.skip_tokens:
                return _json(400, {"error": {"code": "BadRequest", "message": "Bad skip token"}})
            skip = self.skip_tokens[params["$skipToken"]]
        since = _since(params.get("$filter", ""), "properties/lastModifiedTimeUtc")
        if since is None:
            return _json(400, {"error": {"code": "BadRequest", "message": "Invalid $filter"}})

        def modified(i: dict[str, Any]) -> tuple[int, int]:
            return timestamp_key(i["properties"]["lastModifiedTimeUtc"]) or (0, 0)

        found = [i for i in self.incidents if modified(i) >= since]
        if params.get("$orderby") == "properties/lastModifiedTimeUtc asc":
            found.sort(key=modified)
        top = int(params.get("$top", 50))
        body: dict[str, Any] = {"value": found[skip : skip + top]}
        if skip + top < len(found):
            token = uuid.uuid4().hex
            self.skip_tokens[token] = skip + top
            query = {k: v for k, v in params.items() if k != "$skipToken"} | {"$skipToken": token}
            body["nextLink"] = f"https://{ARM}{request.url.path}?{urlencode(query)}"
        return _json(200, body)


# -- the Defender XDR poller -------------------------------------------------------------


@pytest.fixture
def ms() -> FakeMicrosoft:
    return FakeMicrosoft()


@pytest.fixture
async def http(ms: FakeMicrosoft) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=ms.transport()) as client:
        yield client


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make(
    http: httpx.AsyncClient, ms: FakeMicrosoft, sleeps: Sleeps, **options: Any
) -> DefenderXDRAlertsSource:
    source = build_source(
        "defender_xdr_api",
        {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret_env": "DEFENDER_SECRET",
            "page_size": 2,
            **options,
        },
        name="xdr",
        detector="m365_defender",
        environ={"DEFENDER_SECRET": ms.client_secret},
        http=http,
        retry=RetryPolicy(sleep=sleeps, jitter=lambda: 1.0),
    )
    assert isinstance(source, DefenderXDRAlertsSource)
    return source


def ids(numbers: list[int]) -> list[str]:
    return [graph_alert(n, "")["id"] for n in numbers]


async def stored_ids(db: Database) -> list[str]:
    return sorted(e.external_id for e in await stored_events(db))


async def test_follows_next_links_and_parses_every_alert(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(n, ts(n)) for n in (4, 2, 0, 3, 1)]

    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)

    assert await stored_ids(db) == sorted(ids([0, 1, 2, 3, 4]))
    assert result.batches == 3 and result.duplicates == 0
    first, *rest = ms.calls(ALERTS)
    assert first.url.params["$top"] == "2" and "$orderby" not in first.url.params
    assert first.url.params["$filter"].startswith("lastUpdateDateTime ge ")
    assert [r.url.params["$skip"] for r in rest] == ["2", "4"]
    (token_call,) = ms.calls(TOKEN)  # one token for the whole poll
    form = parse_qs(token_call.content.decode())
    assert form["scope"] == [f"https://{GRAPH}/.default"]
    assert form["grant_type"] == ["client_credentials"]
    assert await cursor_of(db, "xdr") == {"updated_at": ts(4), "ids_at_time": ids([4])}
    events = {e.external_id: e for e in await stored_events(db)}
    event = events[ids([3])[0]]
    assert event.title == "Suspicious execution of hidden file 3"
    assert event.severity == "high"


async def test_payload_is_the_graph_body_verbatim(
    ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(1, ts(1))]
    batch = await make(http, ms, sleeps).fetch({})
    assert batch.payloads == [ms.responses[-1].content] and batch.more is False
    (parsed,) = DETECTOR.parse(batch.payloads[0])
    assert parsed.external_id == ids([1])[0]
    assert "user1@corp.example" in json.dumps(parsed.observables.model_dump(mode="json"))


async def test_the_cursor_advances_and_a_restart_neither_loses_nor_repeats(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(n, ts(n)) for n in range(3)]
    await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    # later: an alert at exactly the cursor time, and a newer one
    ms.alerts += [graph_alert(7, ts(2)), graph_alert(8, ts(9))]
    ms.requests.clear()

    restarted = make(http, ms, sleeps, page_size=3)
    batch = await restarted.fetch(await cursor_of(db, "xdr"))

    assert ms.calls(ALERTS)[0].url.params["$filter"] == f"lastUpdateDateTime ge {ts(2)}"
    (payload,) = batch.payloads  # alert 2 came again: re-encoded without it
    body = json.loads(payload)
    assert sorted(a["id"] for a in body["value"]) == sorted(ids([7, 8]))
    assert set(body) == {"@odata.context", "value"}
    result = await poll(db=db, source=restarted, detector=DETECTOR)
    assert len(result.created) == 2 and result.duplicates == 0
    assert await stored_ids(db) == sorted(ids([0, 1, 2, 7, 8]))


async def test_a_restart_in_the_middle_of_a_query_continues_its_next_link(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(n, ts(n)) for n in range(5)]
    await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR, max_batches=1)
    stopped = await cursor_of(db, "xdr")
    # newest first: the watermark is already the newest, the query's start is kept
    assert stopped["page"].startswith(f"https://{GRAPH}{ALERTS}?") and stopped["since"]
    assert stopped["updated_at"] == ts(4)
    ms.requests.clear()

    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)

    assert ms.calls(ALERTS)[0].url.params["$skip"] == "2"
    assert len(result.created) == 3 and result.duplicates == 0
    assert await stored_ids(db) == sorted(ids([0, 1, 2, 3, 4]))


async def test_a_next_link_to_another_host_is_refused(
    ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    source = make(http, ms, sleeps)
    cursor = {"page": "https://attacker.example/v1.0/security/alerts_v2?$skip=2", "since": ts(0)}
    with pytest.raises(IntegrationError, match="refused to follow a next link"):
        await source.fetch(cursor)
    assert ms.requests == []  # no token fetched, nothing sent


async def test_a_revoked_token_is_renewed_once(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(n, ts(n)) for n in range(3)]
    source = make(http, ms, sleeps)
    await source.fetch({})
    ms.tokens.clear()  # revoked, or expired early

    batch = await source.fetch({})

    assert batch.payloads and len(ms.calls(TOKEN)) == 2
    assert [r.status_code for r in ms.responses[-3:]] == [401, 200, 200]
    assert sleeps.waits == []


async def test_a_token_refused_again_is_a_clear_error(
    ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(1, ts(1))]
    ms.fail(ALERTS, ms_error(401, "InvalidAuthenticationToken"), ms_error(401))
    with pytest.raises(IntegrationError, match="a fresh token was refused too"):
        await make(http, ms, sleeps).fetch({})
    assert len(ms.calls(TOKEN)) == 2 and len(ms.calls(ALERTS)) == 2


async def test_429_waits_what_retry_after_says(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(1, ts(1))]
    ms.fail(ALERTS, ms_error(429, "TooManyRequests", {"Retry-After": "17"}))

    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)

    assert len(result.created) == 1 and sleeps.waits == [17.0]


async def test_a_server_error_then_success_and_giving_up(
    db: Database, ms: FakeMicrosoft, http: httpx.AsyncClient, sleeps: Sleeps
) -> None:
    ms.alerts = [graph_alert(1, ts(1))]
    ms.fail(ALERTS, ms_error(500, "generalException"))
    result = await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    assert len(result.created) == 1 and sleeps.waits == [1.0]

    ms.fail(ALERTS, *[ms_error(503, "serviceNotAvailable")] * 4)
    with pytest.raises(IntegrationError, match="HTTP 503"):
        await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    assert "HTTP 503" in (await last_error(db, "xdr") or "")


async def times_out(kind: type[EntraPoller], sleeps: Sleeps, **extra: Any) -> None:
    """A ``kind`` poller against a loopback server that never answers gives up in time,
    after the policy's tries, without the secret in its error."""
    with silent_server() as base:
        async with httpx.AsyncClient() as client:
            source = kind(
                "hung",
                "generic",
                http=client,
                api_url=base,
                login_url=base,
                tenant_id=TENANT,
                client_id=CLIENT_ID,
                client_secret=SecretStr("s3cret-value"),
                scope=f"{base}/.default",
                retry=RetryPolicy(attempts=2, sleep=sleeps, jitter=lambda: 1.0),
                **extra,
            )
            source.api.timeout = 0.3
            started = time.monotonic()
            with pytest.raises(IntegrationError, match="timed out after 2 tries") as caught:
                await source.fetch({})
    assert time.monotonic() - started < 3
    assert "s3cret-value" not in str(caught.value) and sleeps.waits == [1.0]


async def test_a_hung_vendor_times_out(sleeps: Sleeps) -> None:
    await times_out(DefenderXDRAlertsSource, sleeps)


async def test_refused_credentials_are_a_clear_error_without_the_secret(
    db: Database,
    ms: FakeMicrosoft,
    http: httpx.AsyncClient,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    right = ms.client_secret
    ms.alerts = [graph_alert(1, ts(1))]
    await poll(db=db, source=make(http, ms, sleeps), detector=DETECTOR)
    issued = list(ms.tokens)
    ms.client_secret = "rotated-on-the-portal"
    ms.tokens.clear()
    source = make(http, ms, sleeps)
    source._secret = SecretStr(right)  # the old secret, now wrong

    with pytest.raises(IntegrationError) as caught:
        await poll(db=db, source=source, detector=DETECTOR)

    message = str(caught.value)
    assert "Entra ID refused the credentials" in message and "AADSTS7000215" in message
    assert CLIENT_ID in message and "DEFENDER_SECRET" in message
    texts = [message, repr(source), caplog.text, await last_error(db, "xdr") or ""]
    for secret in [right, *issued]:
        assert not any(secret in t for t in texts)
    assert len(ms.calls(TOKEN)) == 2  # refused credentials are not retried


def test_options_are_checked(http: httpx.AsyncClient) -> None:
    good = {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret_env": "S"}

    def build(**options: Any) -> None:
        build_source(
            "defender_xdr_api", options, detector="m365_defender", environ={"S": "x"}, http=http
        )

    build(**good)
    build(
        **{
            **good,
            "tenant_id": "contoso.onmicrosoft.com",
            "graph_url": "https://graph.microsoft.us",
        }
    )
    for bad in (
        {**good, "client_secret": "inline"},
        {**good, "client_id": "not-a-guid"},
        {**good, "tenant_id": "../common"},
        {**good, "client_secret_env": "UNSET"},
        {**good, "graph_url": "ftp://graph"},
        {**good, "login_url": "https://user:pw@login.example"},
        {**good, "page_size": 0},
    ):
        with pytest.raises(ConfigError):
            build(**bad)
