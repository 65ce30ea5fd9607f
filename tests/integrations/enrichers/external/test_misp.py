from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from integrations.enrichers.misp import MispLookup
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from pipeline.plugins import Context, Lookup, lookups
from tests.integrations.enrichers.external.vendor import (
    FakeVendor,
    assert_secret_only_in_header,
    build,
    payload,
)

KEY = "Z3VhcmRlZC1taXNwLWF1dGhrZXktMDEyMzQ1Njc4OWFi"
BASE = "https://misp.corp.test"


def make(vendor: FakeVendor, **kwargs: Any) -> MispLookup:
    return MispLookup(http=vendor.http, api_key=SecretStr(KEY), base_url=BASE, **kwargs)


def test_registered_and_satisfies_the_protocol(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert lookups.get("misp") is MispLookup
    assert isinstance(lookup, Lookup)
    assert lookup.provider == "misp" and lookup.external is False
    assert lookup.kinds == {"hash", "ip", "domain", "url"}
    assert make(vendor, external=True).external is True


async def test_matches_become_events_tags_and_worst_threat_level(vendor: FakeVendor) -> None:
    vendor.reply_payload("misp/attributes_ip.json")
    facts = await make(vendor).lookup("ip", "203.0.113.7")
    assert facts == {
        "attribute_count": 2,
        "truncated": False,
        "events": [
            {
                "id": "1423",
                "info": "Emotet epoch 5 C2 infrastructure",
                "threat_level": "medium",
                "date": "2024-04-29",
                "org": "CIRCL",
                "url": f"{BASE}/events/view/1423",
            },
            {
                "id": "1501",
                "info": "Phishing wave targeting finance",
                "threat_level": "high",
                "date": "2024-04-30",
                "org": "ACME-SOC",
                "url": f"{BASE}/events/view/1501",
            },
        ],
        "tags": ["kill-chain:Command and Control", "tlp:amber", 'misp-galaxy:malpedia="Emotet"'],
        "categories": ["Network activity"],
        "threat_level": "high",
        "to_ids": True,
        "verdict": "malicious",
    }


async def test_request_body_and_headers(vendor: FakeVendor) -> None:
    vendor.reply_payload("misp/attributes_empty.json")
    await make(vendor).lookup(
        "hash", "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
    )
    (request,) = vendor.requests
    assert request.method == "POST" and request.url.path == "/attributes/restSearch"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["returnFormat"] == "json" and body["includeContext"] is True
    assert body["value"] == "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
    assert {"md5", "sha256", "filename|sha256"} <= set(body["type"])
    assert "ip-dst" not in body["type"]
    assert_secret_only_in_header(request, KEY, "Authorization")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("ip", {"ip-src", "ip-dst", "domain|ip"}),
        ("domain", {"domain", "hostname", "domain|ip"}),
        ("url", {"url", "uri", "link"}),
    ],
)
async def test_types_by_kind(vendor: FakeVendor, kind: str, expected: set[str]) -> None:
    vendor.reply_payload("misp/attributes_empty.json")
    await make(vendor).lookup(kind, "x.example")  # type: ignore[arg-type]
    assert expected <= set(json.loads(vendor.requests[0].content)["type"])


async def test_no_match_is_not_known(vendor: FakeVendor) -> None:
    vendor.reply_payload("misp/attributes_empty.json")
    assert await make(vendor).lookup("domain", "example.org") is None


async def test_like_patterns_can_only_narrow(vendor: FakeVendor) -> None:
    """A URL with % is sent as is, but only attributes equal to it count as matches."""
    answer = payload("misp/attributes_ip.json")
    for attribute, value in zip(
        answer["response"]["Attribute"], ["http://a/%41", "http://b/x"], strict=True
    ):
        attribute["type"], attribute["value"] = "url", value
    vendor.reply(200, json_body=answer)
    vendor.reply(200, json_body=answer)
    lookup = make(vendor)
    facts = await lookup.lookup("url", "http://a/%41")
    assert facts is not None and facts["attribute_count"] == 1
    assert [e["id"] for e in facts["events"]] == ["1423"]
    assert await lookup.lookup("url", "%") is None  # matched everything, equals nothing


async def test_negation_is_never_sent(vendor: FakeVendor) -> None:
    assert await make(vendor).lookup("domain", "!example.com") is None
    assert vendor.requests == []


async def test_composite_value_matches_by_component_and_case(vendor: FakeVendor) -> None:
    answer = payload("misp/attributes_ip.json")
    answer["response"]["Attribute"] = answer["response"]["Attribute"][1:]  # domain|ip only
    vendor.reply(200, json_body=answer)
    facts = await make(vendor).lookup("domain", "CDN-Update.example.")
    assert facts is not None and facts["attribute_count"] == 1
    assert facts["to_ids"] is False and facts["verdict"] == "suspicious"
    assert facts["threat_level"] == "high"


async def test_caseless_kinds_still_need_equality(vendor: FakeVendor) -> None:
    answer = payload("misp/attributes_ip.json")
    answer["response"]["Attribute"] = answer["response"]["Attribute"][1:]  # domain|ip only
    vendor.reply(200, json_body=answer)
    assert await make(vendor).lookup("domain", "%.example") is None


async def test_truncated_when_the_limit_is_reached(vendor: FakeVendor) -> None:
    vendor.reply_payload("misp/attributes_ip.json")
    facts = await make(vendor, limit=2).lookup("ip", "203.0.113.7")
    assert facts is not None and facts["truncated"] is True
    assert json.loads(vendor.requests[0].content)["limit"] == 2


async def test_authentication_failed(vendor: FakeVendor) -> None:
    vendor.reply_payload("misp/auth_failed.json", 403)
    with pytest.raises(IntegrationError, match="credentials refused \\(HTTP 403\\)") as caught:
        await make(vendor).lookup("ip", "203.0.113.7")
    assert KEY not in str(caught.value)


async def test_rate_limit_server_error_and_malformed(vendor: FakeVendor) -> None:
    vendor.reply(429, json_body={"message": "slow down"}, headers={"Retry-After": "5"})
    vendor.reply(500, json_body={"name": "An Internal Error Has Occurred.", "url": "/x"})
    vendor.reply(
        200, content=b"<!DOCTYPE html><html>login</html>", headers={"content-type": "text/html"}
    )
    vendor.reply(200, json_body={"response": []})
    lookup = make(vendor)
    with pytest.raises(RateLimited) as caught:
        await lookup.lookup("ip", "203.0.113.7")
    assert caught.value.retry_after == 5.0
    with pytest.raises(IntegrationError, match="HTTP 500"):
        await lookup.lookup("ip", "203.0.113.7")
    with pytest.raises(IntegrationError, match="malformed JSON"):
        await lookup.lookup("ip", "203.0.113.7")
    with pytest.raises(IntegrationError, match="response is not an object"):
        await lookup.lookup("ip", "203.0.113.7")


async def test_from_options_shared_client_and_own_tls_client(
    vendor: FakeVendor, tmp_path: Path
) -> None:
    context = Context(http=vendor.http, environ={"MISP_KEY": KEY})
    shared = build(
        MispLookup, options={"api_key_env": "MISP_KEY", "base_url": BASE}, context=context
    )
    assert shared.http is vendor.http and shared.external is False
    await shared.aclose()
    assert not vendor.http.is_closed  # the shared client is not ours to close

    own = build(
        MispLookup,
        options={
            "api_key_env": "MISP_KEY",
            "base_url": BASE,
            "verify_tls": False,
            "external": True,
        },
        context=context,
    )
    assert own.http is not vendor.http and own.external is True
    await own.aclose()
    assert own.http.is_closed

    with pytest.raises(ConfigError, match="CA bundle"):
        build(
            MispLookup,
            options={
                "api_key_env": "MISP_KEY",
                "base_url": BASE,
                "verify_tls": str(tmp_path / "missing.pem"),
            },
            context=context,
        )
    with pytest.raises(ConfigError, match="base_url"):
        build(MispLookup, options={"api_key_env": "MISP_KEY"}, context=context)
