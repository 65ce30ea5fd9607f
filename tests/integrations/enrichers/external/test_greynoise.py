from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.enrichers.greynoise import GreyNoiseLookup, verdict
from pipeline.errors import IntegrationError, RateLimited
from pipeline.plugins import Context, Lookup, lookups
from tests.integrations.enrichers.external.vendor import (
    FakeVendor,
    assert_secret_only_in_header,
    build,
)

KEY = "gn-Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"
BASE = "https://greynoise.test"


def make(vendor: FakeVendor) -> GreyNoiseLookup:
    return GreyNoiseLookup(http=vendor.http, api_key=SecretStr(KEY), base_url=BASE)


def test_registered_and_satisfies_the_protocol(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert lookups.get("greynoise") is GreyNoiseLookup
    assert isinstance(lookup, Lookup)
    assert (lookup.provider, lookup.external, lookup.kinds) == ("greynoise", True, {"ip"})


async def test_malicious_scanner(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/malicious.json")
    facts = await make(vendor).lookup("ip", "45.83.66.10")
    assert facts == {
        "noise": True,
        "riot": False,
        "classification": "malicious",
        "name": "unknown",
        "last_seen": "2024-04-30",
        "link": "https://viz.greynoise.io/ip/45.83.66.10",
        "verdict": "malicious",
    }
    (request,) = vendor.requests
    assert request.method == "GET" and request.url.path == "/v3/community/45.83.66.10"
    assert_secret_only_in_header(request, KEY, "key")


async def test_riot_service_is_benign(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/riot.json")
    facts = await make(vendor).lookup("ip", "8.8.8.8")
    assert facts is not None
    assert facts["riot"] is True and facts["name"] == "Google Public DNS"
    assert facts["link"] == "https://viz.greynoise.io/riot/8.8.8.8"
    assert facts["verdict"] == "benign"


@pytest.mark.parametrize(
    ("noise", "riot", "classification", "expected"),
    [
        (True, False, "malicious", "malicious"),
        (True, False, "benign", "benign"),
        (False, True, None, "benign"),
        (True, False, "unknown", "suspicious"),
        (False, False, None, "unknown"),
    ],
)
def test_verdict(noise: bool, riot: bool, classification: str | None, expected: str) -> None:
    assert verdict(noise=noise, riot=riot, classification=classification) == expected


async def test_not_observed_404_means_not_known(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/not_observed.json", 404)
    assert await make(vendor).lookup("ip", "203.0.113.77") is None


async def test_not_observed_200_from_older_deployments(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/not_observed.json", 200)
    assert await make(vendor).lookup("ip", "203.0.113.77") is None


async def test_not_routable_400_means_not_known(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/not_routable.json", 400)
    assert await make(vendor).lookup("ip", "10.1.2.3") is None


async def test_other_404_and_400_are_errors(vendor: FakeVendor) -> None:
    vendor.reply(404, content=b"no such route", headers={"content-type": "text/plain"})
    vendor.reply(400, json_body={"message": "bad things"})
    lookup = make(vendor)
    with pytest.raises(IntegrationError, match="HTTP 404"):
        await lookup.lookup("ip", "203.0.113.77")
    with pytest.raises(IntegrationError, match="HTTP 400.*bad things"):
        await lookup.lookup("ip", "203.0.113.77")


async def test_ipv6_and_garbage_are_not_sent(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert await lookup.lookup("ip", "2001:db8::1") is None
    assert await lookup.lookup("ip", "1.2.3.4/../../v2/riot") is None
    assert vendor.requests == []


async def test_unauthorized(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/unauthorized.json", 401)
    with pytest.raises(IntegrationError, match="credentials refused \\(HTTP 401\\)") as caught:
        await make(vendor).lookup("ip", "45.83.66.10")
    assert KEY not in str(caught.value)


async def test_rate_limited_with_http_date_retry_after(vendor: FakeVendor) -> None:
    vendor.reply_payload(
        "greynoise/rate_limited.json", 429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    with pytest.raises(RateLimited) as caught:
        await make(vendor).lookup("ip", "45.83.66.10")
    assert caught.value.retry_after == 0.0  # a date in the past: retry now
    assert "weekly rate limit" in str(caught.value)


async def test_rate_limited_with_seconds(vendor: FakeVendor) -> None:
    vendor.reply_payload("greynoise/rate_limited.json", 429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as caught:
        await make(vendor).lookup("ip", "45.83.66.10")
    assert caught.value.retry_after == 3600.0


async def test_server_error_and_malformed_body(vendor: FakeVendor) -> None:
    vendor.reply(500, json_body={"message": "internal error"})
    vendor.reply(200, content=b"not json", headers={"content-type": "application/json"})
    vendor.reply(200, json_body={"ip": "45.83.66.10", "message": "Success"})
    lookup = make(vendor)
    with pytest.raises(IntegrationError, match="server error \\(HTTP 500\\)"):
        await lookup.lookup("ip", "45.83.66.10")
    with pytest.raises(IntegrationError, match="malformed JSON"):
        await lookup.lookup("ip", "45.83.66.10")
    with pytest.raises(IntegrationError, match="noise/riot"):
        await lookup.lookup("ip", "45.83.66.10")


def test_from_options(vendor: FakeVendor) -> None:
    context = Context(http=vendor.http, environ={"GREYNOISE_API_KEY": KEY})
    lookup = build(GreyNoiseLookup, options={"api_key_env": "GREYNOISE_API_KEY"}, context=context)
    assert lookup.base_url == "https://api.greynoise.io"
