from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.enrichers.virustotal import VirusTotalLookup, url_id, verdict
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from pipeline.plugins import Context, Lookup, lookups
from tests.integrations.enrichers.external.vendor import (
    FakeVendor,
    assert_secret_only_in_header,
    build,
    payload,
)

KEY = "vt-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
BASE = "https://vt.test"


def make(vendor: FakeVendor, **kwargs: Any) -> VirusTotalLookup:
    return VirusTotalLookup(http=vendor.http, api_key=SecretStr(KEY), base_url=BASE, **kwargs)


def test_registered_and_satisfies_the_protocol(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert lookups.get("virustotal") is VirusTotalLookup
    assert isinstance(lookup, Lookup)
    assert lookup.provider == "virustotal" and lookup.external is True
    assert lookup.kinds == {"hash", "ip", "domain", "url"}


async def test_file_report_maps_stats_and_sends_key_only_in_header(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/file.json")
    facts = await make(vendor).lookup("hash", SHA256.upper())
    assert facts == {
        "malicious": 12,
        "suspicious": 1,
        "undetected": 55,
        "harmless": 2,
        "detection_ratio": "12/70",
        "reputation": -23,
        "popular_threat_label": "trojan.emotet/heodo",
        "first_seen": "2024-04-01T00:00:00Z",
        "last_seen": "2024-04-30T10:00:00Z",
        "verdict": "malicious",
        "permalink": f"https://www.virustotal.com/gui/file/{SHA256}",
    }
    (request,) = vendor.requests
    assert request.method == "GET"
    assert request.url.path == f"/api/v3/files/{SHA256}"  # hash lower-cased
    assert_secret_only_in_header(request, KEY, "x-apikey")


async def test_ip_report_has_no_first_seen_and_uses_last_analysis(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/ip_address.json")
    facts = await make(vendor).lookup("ip", "185.220.101.7")
    assert facts is not None
    assert vendor.requests[0].url.path == "/api/v3/ip_addresses/185.220.101.7"
    assert facts["detection_ratio"] == "2/90"
    assert facts["verdict"] == "suspicious"  # 2 engines: below the threshold of 3
    assert facts["first_seen"] is None
    assert facts["last_seen"] == "2024-04-29T14:13:20Z"
    assert facts["popular_threat_label"] is None
    assert facts["permalink"] == "https://www.virustotal.com/gui/ip-address/185.220.101.7"


async def test_domain_report_uses_creation_date(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/domain.json")
    facts = await make(vendor).lookup("domain", "Example-Payroll.COM.")
    assert facts is not None
    assert vendor.requests[0].url.path == "/api/v3/domains/example-payroll.com"
    assert facts["verdict"] == "clean"
    assert facts["first_seen"] == "2024-03-28T00:00:00Z"
    assert facts["last_seen"] == "2024-04-27T06:40:00Z"
    assert facts["permalink"] == "https://www.virustotal.com/gui/domain/example-payroll.com"


async def test_url_is_addressed_by_unpadded_urlsafe_base64(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/url.json")
    url = "https://login.example-payroll.com/office365/?session=a1b2&x=>>?ab"  # would pad
    facts = await make(vendor).lookup("url", url)
    ident = vendor.requests[0].url.path.rsplit("/", 1)[1]
    assert "=" not in ident and "+" not in ident and "/" not in ident
    assert base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode() == url
    assert ident == url_id(url)
    assert facts is not None and facts["verdict"] == "malicious"
    assert facts["detection_ratio"] == "9/94"
    assert facts["permalink"].endswith("/gui/url/" + payload("virustotal/url.json")["data"]["id"])


def test_url_id_matches_virustotal_documentation() -> None:
    assert url_id("http://www.google.com/") == "aHR0cDovL3d3dy5nb29nbGUuY29tLw"


async def test_not_found_error_means_not_known(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/not_found.json", status=404)
    assert await make(vendor).lookup("hash", "0" * 64) is None


async def test_a_404_that_is_not_virustotal_is_an_error(vendor: FakeVendor) -> None:
    vendor.reply(404, content=b"<html>Not Found</html>", headers={"content-type": "text/html"})
    with pytest.raises(IntegrationError, match="HTTP 404"):
        await make(vendor).lookup("hash", SHA256)


async def test_values_virustotal_cannot_know_are_not_sent(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert await lookup.lookup("hash", "../../users/me") is None
    assert await lookup.lookup("ip", "not-an-ip") is None
    assert await lookup.lookup("domain", "a/b") is None
    assert await lookup.lookup("user", "alice") is None
    assert vendor.requests == []


async def test_wrong_key_is_an_integration_error_without_the_key(vendor: FakeVendor) -> None:
    body = payload("virustotal/wrong_credentials.json")
    body["error"]["message"] = f"Wrong API key {KEY}"  # even if the vendor echoes it
    vendor.reply(401, json_body=body)
    with pytest.raises(IntegrationError) as caught:
        await make(vendor).lookup("hash", SHA256)
    message = str(caught.value)
    assert "credentials refused (HTTP 401)" in message and "WrongCredentialsError" in message
    assert KEY not in message and not isinstance(caught.value, RateLimited)


async def test_quota_exceeded_is_rate_limited_with_retry_after(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/quota_exceeded.json", 429, headers={"Retry-After": "42"})
    with pytest.raises(RateLimited) as caught:
        await make(vendor).lookup("ip", "185.220.101.7")
    assert caught.value.retry_after == 42.0
    assert "QuotaExceededError" in str(caught.value)


async def test_quota_exceeded_without_retry_after(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/quota_exceeded.json", 429)
    with pytest.raises(RateLimited) as caught:
        await make(vendor).lookup("ip", "185.220.101.7")
    assert caught.value.retry_after is None


async def test_server_error(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/transient.json", 503)
    with pytest.raises(IntegrationError, match="server error \\(HTTP 503\\)"):
        await make(vendor).lookup("domain", "example.com")


async def test_malformed_json(vendor: FakeVendor) -> None:
    vendor.reply(
        200, content=b'{"data": {"attributes": ', headers={"content-type": "application/json"}
    )
    with pytest.raises(IntegrationError, match="malformed JSON"):
        await make(vendor).lookup("hash", SHA256)


async def test_json_without_analysis_stats_is_not_partial_garbage(vendor: FakeVendor) -> None:
    vendor.reply(200, json_body={"data": {"id": SHA256, "type": "file", "attributes": {}}})
    with pytest.raises(IntegrationError, match="last_analysis_stats"):
        await make(vendor).lookup("hash", SHA256)


async def test_timeout_is_an_integration_error(vendor: FakeVendor) -> None:
    vendor.fail(httpx.ReadTimeout("read timed out"))
    with pytest.raises(IntegrationError, match="timed out"):
        await make(vendor).lookup("hash", SHA256)


@pytest.mark.parametrize(
    ("malicious", "suspicious", "expected"),
    [
        (0, 0, "clean"),
        (0, 1, "suspicious"),
        (1, 0, "suspicious"),
        (2, 5, "suspicious"),
        (3, 0, "malicious"),
        (40, 0, "malicious"),
    ],
)
def test_verdict_thresholds(malicious: int, suspicious: int, expected: str) -> None:
    assert verdict(malicious, suspicious) == expected


async def test_threshold_is_configurable(vendor: FakeVendor) -> None:
    vendor.reply_payload("virustotal/file.json")  # 12 malicious
    facts = await make(vendor, malicious_threshold=20).lookup("hash", SHA256)
    assert facts is not None and facts["verdict"] == "suspicious"


def test_from_options_reads_the_secret_by_name(vendor: FakeVendor) -> None:
    context = Context(http=vendor.http, environ={"VT_KEY": KEY})
    lookup = build(
        VirusTotalLookup, options={"api_key_env": "VT_KEY", "base_url": BASE + "/"}, context=context
    )
    assert lookup.base_url == BASE and lookup.http is vendor.http
    assert KEY not in repr(vars(lookup))
    with pytest.raises(ConfigError, match="OTHER_KEY is not set"):
        build(VirusTotalLookup, options={"api_key_env": "OTHER_KEY"}, context=context)
    with pytest.raises(ConfigError, match="api_key_env"):
        build(VirusTotalLookup, options={}, context=context)
    with pytest.raises(ConfigError, match="HTTP client"):
        build(
            VirusTotalLookup,
            options={"api_key_env": "VT_KEY"},
            context=Context(environ={"VT_KEY": KEY}),
        )
