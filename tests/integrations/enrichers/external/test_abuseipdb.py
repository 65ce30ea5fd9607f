from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.enrichers.abuseipdb import AbuseIPDBLookup, verdict
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from pipeline.plugins import Context, Lookup, lookups
from tests.integrations.enrichers.external.vendor import (
    FakeVendor,
    assert_secret_only_in_header,
    build,
    payload,
)

KEY = "c3k69z846qn30q4r6eo3gsg3urqanuoypyluil350m7iyyw55mx6hd22aaa7xj9y0xbk2ygtrcxuzbh8"
BASE = "https://abuseipdb.test"


def make(vendor: FakeVendor, **kwargs: Any) -> AbuseIPDBLookup:
    return AbuseIPDBLookup(http=vendor.http, api_key=SecretStr(KEY), base_url=BASE, **kwargs)


def test_registered_and_satisfies_the_protocol(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert lookups.get("abuseipdb") is AbuseIPDBLookup
    assert isinstance(lookup, Lookup)
    assert (lookup.provider, lookup.external, lookup.kinds) == ("abuseipdb", True, {"ip"})


async def test_check_maps_the_verbose_answer(vendor: FakeVendor) -> None:
    vendor.reply_payload("abuseipdb/check_verbose.json")
    facts = await make(vendor).lookup("ip", "118.25.6.39")
    assert facts == {
        "abuse_confidence": 100,
        "total_reports": 3,
        "distinct_reporters": 2,
        "usage_type": "Data Center/Web Hosting/Transit",
        "isp": "Tencent Cloud Computing (Beijing) Co. Ltd",
        "domain": "tencent.com",
        "country": "CN",
        "country_name": "China",
        "is_tor": False,
        "is_whitelisted": False,
        "is_public": True,
        "last_reported_at": "2024-04-29T20:55:14+00:00",
        "categories": ["SSH", "Port Scan", "Brute-Force"],  # by count, then id
        "permalink": "https://www.abuseipdb.com/check/118.25.6.39",
        "verdict": "malicious",
    }


async def test_request_shape_and_key_only_in_header(vendor: FakeVendor) -> None:
    vendor.reply_payload("abuseipdb/check_clean.json")
    await make(vendor).lookup("ip", " 2001:4860:4860::8888 ")
    (request,) = vendor.requests
    assert request.method == "GET" and request.url.path == "/api/v2/check"
    params = request.url.params
    assert params["ipAddress"] == "2001:4860:4860::8888"  # colons travel url-encoded
    assert "ipAddress=2001%3A4860%3A4860%3A%3A8888" in str(request.url)
    assert params["maxAgeInDays"] == "90" and "verbose" in params
    assert request.headers["accept"] == "application/json"
    assert_secret_only_in_header(request, KEY, "Key")


async def test_whitelisted_clean_address(vendor: FakeVendor) -> None:
    vendor.reply_payload("abuseipdb/check_clean.json")
    facts = await make(vendor, max_age_days=30).lookup("ip", "8.8.8.8")
    assert facts is not None
    assert facts["verdict"] == "clean" and facts["is_whitelisted"] is True
    assert facts["total_reports"] == 0 and facts["categories"] == []
    assert facts["last_reported_at"] is None
    assert vendor.requests[0].url.params["maxAgeInDays"] == "30"


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0, "clean"),
        (24, "clean"),
        (25, "suspicious"),
        (74, "suspicious"),
        (75, "malicious"),
        (100, "malicious"),
    ],
)
def test_verdict_by_confidence(score: int, expected: str) -> None:
    assert verdict(score) == expected
    assert verdict(score, whitelisted=True) == "clean"


async def test_not_an_ip_is_not_sent(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert await lookup.lookup("ip", "999.1.1.1") is None
    assert await lookup.lookup("host", "web-1") is None
    assert vendor.requests == []


async def test_auth_failure_never_shows_the_key(vendor: FakeVendor) -> None:
    body = payload("abuseipdb/auth_failed.json")
    body["errors"][0]["detail"] += f" (key {KEY})"
    vendor.reply(401, json_body=body)
    with pytest.raises(IntegrationError) as caught:
        await make(vendor).lookup("ip", "118.25.6.39")
    assert "HTTP 401" in str(caught.value) and "Authentication failed" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_daily_limit_is_rate_limited_with_retry_after(vendor: FakeVendor) -> None:
    vendor.reply_payload(
        "abuseipdb/rate_limited.json",
        429,
        headers={
            "Retry-After": "29241",
            "X-RateLimit-Limit": "1000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1714521600",
        },
    )
    with pytest.raises(RateLimited) as caught:
        await make(vendor).lookup("ip", "118.25.6.39")
    assert caught.value.retry_after == 29241.0
    assert "Daily rate limit" in str(caught.value)


async def test_unprocessable_request_is_an_error(vendor: FakeVendor) -> None:
    vendor.reply_payload("abuseipdb/invalid_ip.json", 422)
    with pytest.raises(IntegrationError, match="HTTP 422.*max age"):
        await make(vendor).lookup("ip", "118.25.6.39")


async def test_server_error_and_malformed_json(vendor: FakeVendor) -> None:
    vendor.reply(502, content=b"Bad Gateway", headers={"content-type": "text/plain"})
    vendor.reply(200, content=b"<html>maintenance</html>", headers={"content-type": "text/html"})
    lookup = make(vendor)
    with pytest.raises(IntegrationError, match="server error \\(HTTP 502\\): Bad Gateway"):
        await lookup.lookup("ip", "118.25.6.39")
    with pytest.raises(IntegrationError, match="malformed JSON"):
        await lookup.lookup("ip", "118.25.6.39")


async def test_answer_without_a_score_is_rejected(vendor: FakeVendor) -> None:
    vendor.reply(200, json_body={"data": {"ipAddress": "118.25.6.39"}})
    with pytest.raises(IntegrationError, match="abuseConfidenceScore"):
        await make(vendor).lookup("ip", "118.25.6.39")


async def test_connection_failure(vendor: FakeVendor) -> None:
    vendor.fail(httpx.ConnectError("connection refused"))
    with pytest.raises(IntegrationError, match="request failed \\(ConnectError\\)"):
        await make(vendor).lookup("ip", "118.25.6.39")


def test_from_options(vendor: FakeVendor) -> None:
    context = Context(http=vendor.http, environ={"ABUSEIPDB_API_KEY": KEY})
    lookup = build(
        AbuseIPDBLookup,
        options={"api_key_env": "ABUSEIPDB_API_KEY", "max_age_days": 7},
        context=context,
    )
    assert lookup.max_age_days == 7 and lookup.base_url == "https://api.abuseipdb.com"
    with pytest.raises(ConfigError, match="max_age_days"):
        build(
            AbuseIPDBLookup,
            options={"api_key_env": "ABUSEIPDB_API_KEY", "max_age_days": 0},
            context=context,
        )
