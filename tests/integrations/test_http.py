"""The one HTTP layer every vendor integration uses (``integrations/http/``): the retry
policy (5xx and timeouts with capped backoff, 429 with Retry-After, 4xx never), the one
error parser on each vendor's documented error body, and secrets kept out of errors and
logs. A hung vendor and a refused connection are real sockets on loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.enrichers.virustotal import VirusTotalLookup
from integrations.http import (
    ONCE,
    Reason,
    RetryPolicy,
    VendorError,
    VendorHTTP,
    retry_after_of,
)
from integrations.retry_after import parse_retry_after
from pipeline.db import Database
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from tests.integrations.responders.saas import refused_url, silent_server
from tests.integrations.sources.remote.helpers import Sleeps
from tests.pipeline.lookups.fakes import Clock
from tests.pipeline.lookups.helpers import obs, wrap

URL = "https://api.vendor.test/v1/things/42"
KEY = "k3y-0123456789abcdef-never-shown"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.token-never-shown"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Vendor:
    """A vendor stand-in: gives ``answers`` in turn (the last from then on), keeps every
    request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer


def api(vendor: Vendor, sleeps: Sleeps, **policy: Any) -> VendorHTTP:
    rules = RetryPolicy(sleep=sleeps, jitter=lambda: 1.0, **policy)
    return VendorHTTP("acme", vendor.http, policy=rules, secrets=lambda: [SecretStr(KEY)])


# -- the retry policy ------------------------------------------------------------------


async def test_500_then_success_is_retried_after_a_backoff() -> None:
    sleeps, vendor = Sleeps(), Vendor(httpx.Response(500), httpx.Response(200, json={"ok": 1}))
    response = await api(vendor, sleeps).send("GET", URL)
    assert response.status_code == 200 and response.json() == {"ok": 1}
    assert len(vendor.requests) == 2 and sleeps.waits == [1.0]


async def test_a_5xx_that_stays_is_given_back_after_capped_backoffs() -> None:
    sleeps, vendor = Sleeps(), Vendor(httpx.Response(503, json={"message": "maintenance"}))
    http = api(vendor, sleeps, attempts=5, base_delay=10, max_delay=15)
    response = await http.send("GET", URL)
    assert response.status_code == 503 and len(vendor.requests) == 5
    assert sleeps.waits == [10.0, 15.0, 15.0, 15.0]
    with pytest.raises(VendorError) as caught:
        http.check(response)
    assert str(caught.value) == (
        "acme: GET /v1/things/42: server error (HTTP 503) after 5 tries: maintenance"
    )
    assert caught.value.retryable and caught.value.failure.reason is Reason.server


def _in(seconds: int) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "header",
    [
        lambda: {"Retry-After": "7"},
        lambda: {"Retry-After": format_datetime(_in(8), usegmt=True)},
        lambda: {"X-RateLimit-RetryAfter": str(int(_in(8).timestamp()))},  # CrowdStrike: epoch
        lambda: {"X-Rate-Limit-Reset": str(int(_in(8).timestamp()))},  # Okta: epoch second
    ],
    ids=["seconds", "http-date", "crowdstrike", "okta"],
)
async def test_429_waits_as_the_vendor_asked_then_succeeds(
    header: Callable[[], dict[str, str]],
) -> None:
    sleeps = Sleeps()
    vendor = Vendor(httpx.Response(429, headers=header()), httpx.Response(200))
    assert (await api(vendor, sleeps).send("GET", URL)).status_code == 200
    [wait] = sleeps.waits
    assert 5.0 <= wait <= 8.0


async def test_429_longer_than_the_cap_comes_back_at_once_as_rate_limited() -> None:
    sleeps, vendor = Sleeps(), Vendor(httpx.Response(429, headers={"Retry-After": "600"}))
    http = api(vendor, sleeps, max_retry_after=120)
    response = await http.send("GET", URL)
    assert response.status_code == 429 and len(vendor.requests) == 1 and sleeps.waits == []
    with pytest.raises(RateLimited) as caught:
        http.check(response)
    assert caught.value.retry_after == 600.0
    assert str(caught.value) == "acme: GET /v1/things/42: rate limited (HTTP 429)"


async def test_429_without_a_wait_backs_off_and_is_rate_limited_in_the_end() -> None:
    sleeps, vendor = Sleeps(), Vendor(httpx.Response(429))
    http = api(vendor, sleeps, attempts=3)
    response = await http.send("GET", URL)
    assert sleeps.waits == [1.0, 2.0]
    with pytest.raises(RateLimited, match=r"rate limited \(HTTP 429\) after 3 tries") as caught:
        http.check(response)
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_a_4xx_is_never_retried(status: int) -> None:
    sleeps, vendor = Sleeps(), Vendor(httpx.Response(status))
    http = api(vendor, sleeps)
    response = await http.send("POST", URL, json={"a": 1})
    assert response.status_code == status and len(vendor.requests) == 1 and sleeps.waits == []
    with pytest.raises(VendorError) as caught:
        http.check(response)
    assert caught.value.retryable is False


async def test_once_means_one_try() -> None:
    vendor = Vendor(httpx.Response(500))
    http = VendorHTTP("acme", vendor.http, policy=ONCE)
    assert (await http.send("GET", URL)).status_code == 500 and len(vendor.requests) == 1


async def test_a_hung_vendor_times_out_each_try_and_gives_up() -> None:
    sleeps = Sleeps()
    with silent_server() as base:
        async with httpx.AsyncClient() as client:
            rules = RetryPolicy(attempts=2, sleep=sleeps)
            http = VendorHTTP("acme", client, policy=rules, timeout=0.3)
            started = time.monotonic()
            with pytest.raises(VendorError) as caught:
                await http.send("GET", f"{base}/v1/alerts")
    assert time.monotonic() - started < 3
    failure = caught.value.failure
    assert (failure.reason, failure.tries, failure.status) == (Reason.timeout, 2, None)
    assert str(caught.value) == "acme: GET /v1/alerts: request timed out after 2 tries"
    assert len(sleeps.waits) == 1 and isinstance(caught.value, IntegrationError)


async def test_a_refused_connection_is_retried_then_unreachable() -> None:
    sleeps = Sleeps()
    async with httpx.AsyncClient() as client:
        http = VendorHTTP("acme", client, policy=RetryPolicy(attempts=3, sleep=sleeps))
        with pytest.raises(VendorError) as caught:
            await http.send("GET", f"{refused_url()}/v1/alerts?apikey={KEY}")
    assert caught.value.failure.reason is Reason.unreachable
    assert str(caught.value) == "acme: GET /v1/alerts: request failed (ConnectError) after 3 tries"
    assert len(sleeps.waits) == 2 and KEY not in str(caught.value)


@pytest.mark.parametrize("url", ["vendor.test/v1/alerts", "ftp://vendor.test/v1/alerts"])
async def test_a_url_that_cannot_work_is_not_retried(url: str) -> None:
    sleeps = Sleeps()
    async with httpx.AsyncClient() as client:
        http = VendorHTTP("acme", client, policy=RetryPolicy(sleep=sleeps))
        with pytest.raises(VendorError, match="request failed") as caught:
            await http.send("GET", url)
    assert caught.value.failure.reason is Reason.invalid and not caught.value.retryable
    assert sleeps.waits == []


def test_policy_refuses_nonsense_and_backoff_is_capped_and_jittered() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(base_delay=-1)
    low = RetryPolicy(base_delay=2, max_delay=5, jitter=lambda: 0.0)
    assert [low.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 2.5, 2.5]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(value: str | None, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_prefers_the_standard_header() -> None:
    later = str(int(time.time()) + 50)
    both = httpx.Response(429, headers={"Retry-After": "5", "X-Rate-Limit-Reset": later})
    assert retry_after_of(both) == 5.0
    assert retry_after_of(httpx.Response(429, headers={"X-Rate-Limit-Reset": "1"})) == 0.0
    assert retry_after_of(httpx.Response(429, headers={"X-Rate-Limit-Reset": "soon"})) is None


# -- the one error parser, on the vendors' documented error bodies ---------------------

OKTA = {
    "errorCode": "E0000001",
    "errorSummary": "Api validation failed: login",
    "errorLink": "E0000001",
    "errorId": "oaeHfmOAx1iRLa0H10DeMz5fQ",
    "errorCauses": [
        {"errorSummary": "login: An object with this field already exists in the current org"}
    ],
}
GRAPH = {
    "error": {
        "code": "Authorization_RequestDenied",
        "message": "Insufficient privileges to complete the operation.",
        "innerError": {
            "date": "2026-11-28T12:00:00",
            "request-id": "b0a1",
            "client-request-id": "c1",
        },
    }
}
FALCON = {
    "meta": {"query_time": 1.2e-05, "powered_by": "crowdstrike-api-gateway", "trace_id": "t-1"},
    "errors": [{"code": 403, "message": "access denied, authorization failed"}],
}
VIRUSTOTAL = {"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}}
SENTINELONE = {
    "errors": [{"code": 4030010, "detail": "Insufficient permissions", "title": "Forbidden"}]
}
ABUSEIPDB = {
    "errors": [
        {
            "detail": "The max age in days must be between 1 and 365.",
            "status": 422,
            "source": {"parameter": "maxAgeInDays"},
        }
    ]
}
JAMF = {
    "httpStatus": 403,
    "errors": [{"code": "INVALID_PRIVILEGE", "description": "Forbidden", "id": "0", "field": None}],
}
ENTRA_TOKEN = {
    "error": "invalid_client",
    "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\n",
    "error_codes": [7000215],
}
PANOS = (
    b"<response status = 'error' code = '403'><result><msg>Invalid Credential</msg>"
    b"</result></response>"
)


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (
            httpx.Response(400, json=OKTA),
            "E0000001: Api validation failed: login (login: An object with this field already "
            "exists in the current org)",
        ),
        (
            httpx.Response(403, json=GRAPH),
            "Authorization_RequestDenied: Insufficient privileges to complete the operation.",
        ),
        (httpx.Response(403, json=FALCON), "403: access denied, authorization failed"),
        (httpx.Response(401, json=VIRUSTOTAL), "WrongCredentialsError: Wrong API key"),
        (httpx.Response(403, json=SENTINELONE), "Forbidden: Insufficient permissions"),
        (httpx.Response(422, json=ABUSEIPDB), "The max age in days must be between 1 and 365."),
        (httpx.Response(403, json=JAMF), "INVALID_PRIVILEGE: Forbidden"),
        (
            httpx.Response(401, json=ENTRA_TOKEN),
            "invalid_client: AADSTS7000215: Invalid client secret provided.",
        ),  # fmt: skip
        (httpx.Response(404, json={"message": "IP not observed"}), "IP not observed"),
        (httpx.Response(403, content=PANOS), "code 403: Invalid Credential"),
        (httpx.Response(400, text="bad\n\tsignature"), "bad signature"),
        (httpx.Response(502, html="<html><h1>Bad gateway</h1></html>"), ""),
        (httpx.Response(500, content=b"\xff\xfe"), ""),
    ],
    ids=[
        "okta",
        "graph",
        "crowdstrike",
        "virustotal",
        "sentinelone",
        "abuseipdb",
        "jamf",
        "oauth",
        "message",
        "pan-os",
        "text",
        "html",
        "binary",
    ],  # fmt: skip
)
async def test_the_vendors_own_words_are_read_from_their_error_bodies(
    response: httpx.Response, words: str
) -> None:
    vendor = Vendor(response)
    http = VendorHTTP("acme", vendor.http, policy=ONCE)
    answer = await http.send("GET", URL)
    assert http.words(answer) == words
    with pytest.raises(IntegrationError) as caught:
        http.check(answer)
    said = f": {words}" if words else ""
    assert str(caught.value).startswith("acme: GET /v1/things/42: ")
    assert str(caught.value).endswith(f"(HTTP {response.status_code}){said}")


def test_words_are_one_short_line() -> None:
    http = VendorHTTP("acme", httpx.AsyncClient(), policy=ONCE)
    long = httpx.Response(400, json={"message": "line one\r\n\tline\x00two " + "y" * 300})
    text = http.words(long)
    assert text.startswith("line one line two yyy") and len(text) == 200 and text.endswith("…")


# -- secrets ---------------------------------------------------------------------------


async def test_no_secret_reaches_an_error_or_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    def echo(request: httpx.Request) -> httpx.Response:  # a vendor that quotes what it got
        said = f"bad {request.headers['Authorization']} and key {request.headers['x-apikey']}"
        return httpx.Response(401, json={"error": {"code": "Unauthorized", "message": said}})

    sleeps = Sleeps()
    vendor = Vendor(httpx.Response(500, json={"message": f"retry {KEY}"}), echo)
    http = VendorHTTP("acme", vendor.http, policy=RetryPolicy(sleep=sleeps))  # no secrets named
    headers = {"Authorization": f"Bearer {TOKEN}", "x-apikey": KEY}
    messages: list[str] = []
    with caplog.at_level(logging.DEBUG):
        response = await http.send("GET", URL, headers=headers)
        messages.append(http.words(response))
        with pytest.raises(VendorError) as caught:
            http.check(response)
        messages += [str(caught.value), repr(caught.value.failure)]
    assert "bad *** and key ***" in messages[1]
    for text in [*messages, caplog.text]:
        assert KEY not in text and TOKEN not in text


async def test_a_key_in_the_path_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    """VirusTotal's GET /api/v3/users/{key}: the key is in the path and the header. (httpx's
    own INFO line logs whole URLs: no integration puts a secret in one.)"""
    headers = {"x-apikey": KEY}
    vendor = Vendor(httpx.Response(401, json=VIRUSTOTAL))
    http = VendorHTTP("virustotal", vendor.http, policy=ONCE)
    with caplog.at_level(logging.DEBUG):
        response = await http.send("GET", f"https://vt.test/api/v3/users/{KEY}", headers=headers)
        with pytest.raises(VendorError) as refused:
            http.check(response)
        async with httpx.AsyncClient() as client:
            down = VendorHTTP("virustotal", client, policy=RetryPolicy(attempts=2, sleep=Sleeps()))
            with pytest.raises(VendorError) as lost:
                await down.send("GET", f"{refused_url()}/api/v3/users/{KEY}", headers=headers)
    assert str(refused.value).startswith("virustotal: GET /api/v3/users/***: credentials refused")
    assert str(lost.value).startswith("virustotal: GET /api/v3/users/***: request failed")
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("integrations")]
    assert ours  # the retry was logged, without the key
    for text in (str(refused.value), str(lost.value), *ours):
        assert KEY not in text


async def test_a_named_secret_echoed_in_a_body_is_redacted() -> None:
    vendor = Vendor(httpx.Response(400, json={"error": "invalid_client", "error_description": KEY}))
    http = VendorHTTP("acme", vendor.http, policy=ONCE, secrets=lambda: [SecretStr(KEY)])
    response = await http.send("POST", URL, data={"client_secret": KEY})
    with pytest.raises(VendorError, match=r"invalid_client: \*\*\*$") as caught:
        http.check(response)
    assert KEY not in str(caught.value)


def test_a_client_is_required() -> None:
    with pytest.raises(ConfigError, match="no HTTP client"):
        VendorHTTP("acme", None)  # type: ignore[arg-type]


# -- lookups: one try here, the lookup layer's retry around it -------------------------

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
VT_FILE = {
    "data": {
        "id": SHA,
        "type": "file",
        "attributes": {
            "last_analysis_stats": {
                "malicious": 0,
                "suspicious": 0,
                "undetected": 60,
                "harmless": 0,
                "timeout": 1,
            },  # fmt: skip
        },
    }
}


async def test_a_lookup_is_retried_by_the_lookup_layer_only(db: Database) -> None:
    sleeps = Sleeps()
    vendor = Vendor(httpx.Response(503), httpx.Response(200, json=VT_FILE))
    lookup = VirusTotalLookup(http=vendor.http, api_key=SecretStr(KEY), base_url="https://vt.test")
    enricher = wrap(lookup, db, Clock(), sleeps)  # type: ignore[arg-type]
    facts = await enricher.enrich(obs(hashes=[SHA]))
    assert facts[f"hash:{SHA}"]["verdict"] == "clean"
    assert len(vendor.requests) == 2 and len(sleeps.waits) == 1  # one retry, by the layer


async def test_a_refused_lookup_is_not_retried(db: Database) -> None:
    sleeps = Sleeps()
    vendor = Vendor(httpx.Response(401, json=VIRUSTOTAL))
    lookup = VirusTotalLookup(http=vendor.http, api_key=SecretStr(KEY), base_url="https://vt.test")
    enricher = wrap(lookup, db, Clock(), sleeps)  # type: ignore[arg-type]
    with pytest.raises(IntegrationError, match="every virustotal lookup failed"):
        await enricher.enrich(obs(hashes=[SHA]))
    assert len(vendor.requests) == 1 and sleeps.waits == []
