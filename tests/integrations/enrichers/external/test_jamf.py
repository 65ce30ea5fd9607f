from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from integrations.enrichers.jamf import JamfLookup, rsql_quote
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from pipeline.plugins import Context, Lookup, lookups
from tests.integrations.enrichers.external.vendor import FakeVendor, build, payload

BASE = "https://corp.jamfcloud.test"
CLIENT_ID = "3f1e9d6a-2b7c-4e8f-9a1d-5c6b7e8f9a0b"
SECRET = "jamf-client-secret-Q29ycFNlY3JldDEyMzQ1"
INVENTORY = "/api/v1/computers-inventory"
TOKEN = "/api/oauth/token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Jamf:
    """A Jamf Pro stand-in: issues numbered tokens, answers inventory by a queue."""

    def __init__(self, vendor: FakeVendor, expires_in: int = 60) -> None:
        self.vendor = vendor
        self.expires_in = expires_in
        self.tokens = 0
        self.inventory: list[httpx.Response] = []
        vendor.handler = self.handle

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN:
            self.tokens += 1
            body = payload("jamf/token.json")
            body["access_token"] = f"token-{self.tokens}"
            body["expires_in"] = self.expires_in
            return httpx.Response(200, json=body)
        assert request.url.path == INVENTORY
        if not self.inventory:
            return httpx.Response(200, json=payload("jamf/computers_empty.json"))
        return self.inventory.pop(0)

    def bearer_of(self, request: httpx.Request) -> str:
        return request.headers["authorization"].removeprefix("Bearer ")

    def inventory_requests(self) -> list[httpx.Request]:
        return [r for r in self.vendor.requests if r.url.path == INVENTORY]


def make(vendor: FakeVendor, clock: Clock | None = None) -> JamfLookup:
    return JamfLookup(
        http=vendor.http,
        base_url=BASE,
        client_id=SecretStr(CLIENT_ID),
        client_secret=SecretStr(SECRET),
        clock=clock or Clock(),
    )


def test_registered_and_satisfies_the_protocol(vendor: FakeVendor) -> None:
    lookup = make(vendor)
    assert lookups.get("jamf") is JamfLookup
    assert isinstance(lookup, Lookup)
    assert (lookup.provider, lookup.external, lookup.kinds) == ("jamf", False, {"host", "ip"})


async def test_host_lookup_maps_inventory(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    jamf.inventory.append(httpx.Response(200, json=payload("jamf/computers.json")))
    facts = await make(vendor).lookup("host", "mac-alice.corp.example")
    assert facts == {
        "jamf_id": "117",
        "name": "MAC-ALICE",
        "serial": "C02ZK1ABMD6T",
        "model": "MacBook Pro (14-inch, 2023)",
        "os_name": "macOS",
        "os_version": "14.4.1",
        "assigned_user": "alice",
        "assigned_user_email": "alice@corp.example",
        "assigned_user_realname": "Alice Example",
        "last_check_in": "2024-04-30T08:12:45.120Z",
        "last_ip": "198.51.100.24",
        "last_reported_ip": "10.20.4.17",
        "managed": True,
        "supervised": True,
        "filevault": "ENCRYPTED",
        "encrypted": True,
        "permalink": f"{BASE}/computers.html?id=117&o=r",
        "matches": 1,
    }
    token_request, inventory = vendor.requests
    assert token_request.method == "POST"
    form = httpx.QueryParams(token_request.content.decode())
    assert dict(form) == {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "client_credentials",
    }
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert inventory.headers["authorization"] == "Bearer token-1"
    assert inventory.url.params.get_list("section") == [
        "GENERAL",
        "HARDWARE",
        "OPERATING_SYSTEM",
        "USER_AND_LOCATION",
        "DISK_ENCRYPTION",
    ]
    assert inventory.url.params["filter"] == (
        'general.name=="mac-alice.corp.example",general.name=="mac-alice",'
        'hardware.serialNumber=="mac-alice.corp.example"'
    )
    assert SECRET not in str(inventory.url) and SECRET not in inventory.headers.values()


async def test_ip_lookup_filters_on_last_ip(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    jamf.inventory.append(httpx.Response(200, json=payload("jamf/computers.json")))
    facts = await make(vendor).lookup("ip", "10.20.4.17")
    assert facts is not None and facts["assigned_user"] == "alice"
    (request,) = jamf.inventory_requests()
    assert request.url.params["filter"] == (
        'general.lastIpAddress=="10.20.4.17",general.lastReportedIp=="10.20.4.17"'
    )
    assert await make(vendor).lookup("ip", 'x",id=="1') is None  # not an IP: not sent
    assert len(jamf.inventory_requests()) == 1


def test_rsql_quoting() -> None:
    assert rsql_quote("mac-1") == '"mac-1"'
    assert rsql_quote('a"b') == '"a\\"b"'
    assert rsql_quote("a\\b") == '"a\\\\b"'
    assert rsql_quote('\\"') == '"\\\\\\""'


async def test_hostile_host_name_stays_one_literal(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    hostile = 'x" or general.name=="*\\'
    await make(vendor).lookup("host", hostile)
    (request,) = jamf.inventory_requests()
    quoted = '"x\\" or general.name==\\"*\\\\"'
    short = '"x\\" or general"'  # the part before the first dot, as for a FQDN
    assert request.url.params["filter"] == (
        f"general.name=={quoted},general.name=={short},hardware.serialNumber=={quoted}"
    )


async def test_wildcard_results_that_do_not_equal_the_host_are_dropped(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    everyone = payload("jamf/computers.json")
    other = dict(everyone["results"][0], id="118", general={"name": "MAC-BOB"})
    everyone["results"].append(other)
    jamf.inventory.append(httpx.Response(200, json=everyone))
    assert await make(vendor).lookup("host", "*") is None


async def test_serial_lookup_and_newest_of_several(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    answer = payload("jamf/computers.json")
    first = answer["results"][0]
    stale = {
        **first,
        "id": "42",
        "general": {**first["general"], "lastContactTime": "2023-01-01T00:00:00Z"},
    }
    answer["results"] = [stale, first]
    jamf.inventory.append(httpx.Response(200, json=answer))
    facts = await make(vendor).lookup("host", "c02zk1abmd6t")
    assert facts is not None and facts["jamf_id"] == "117" and facts["matches"] == 2


async def test_not_found(vendor: FakeVendor) -> None:
    Jamf(vendor)
    assert await make(vendor).lookup("host", "nobody") is None


async def test_token_is_cached_until_shortly_before_expiry(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor, expires_in=60)  # renewed 15 s early (a quarter of its life)
    clock = Clock()
    lookup = make(vendor, clock)
    await lookup.lookup("host", "a")
    clock.now += 44
    await lookup.lookup("host", "b")
    assert jamf.tokens == 1
    clock.now += 1  # 45 s after issue: inside the renewal margin
    await lookup.lookup("host", "c")
    assert jamf.tokens == 2
    bearers = [jamf.bearer_of(r) for r in jamf.inventory_requests()]
    assert bearers == ["token-1", "token-1", "token-2"]


async def test_long_lived_token_renews_at_most_30_seconds_early(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor, expires_in=1200)
    clock = Clock()
    lookup = make(vendor, clock)
    await lookup.lookup("host", "a")
    clock.now += 1169
    await lookup.lookup("host", "a")
    assert jamf.tokens == 1
    clock.now += 1
    await lookup.lookup("host", "a")
    assert jamf.tokens == 2


async def test_a_401_renews_the_token_once(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    jamf.inventory.append(httpx.Response(401, json=payload("jamf/unauthorized.json")))
    jamf.inventory.append(httpx.Response(200, json=payload("jamf/computers.json")))
    facts = await make(vendor).lookup("host", "mac-alice")
    assert facts is not None and facts["jamf_id"] == "117"
    assert [jamf.bearer_of(r) for r in jamf.inventory_requests()] == ["token-1", "token-2"]


async def test_a_second_401_is_an_error(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    jamf.inventory += [httpx.Response(401, json=payload("jamf/unauthorized.json"))] * 3
    with pytest.raises(IntegrationError, match="credentials refused \\(HTTP 401\\)") as caught:
        await make(vendor).lookup("host", "mac-alice")
    assert len(jamf.inventory_requests()) == 2 and jamf.tokens == 2
    assert "token-" not in str(caught.value)


async def test_concurrent_lookups_share_one_token(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    lookup = make(vendor)
    await asyncio.gather(*(lookup.lookup("host", f"mac-{n}") for n in range(5)))
    assert jamf.tokens == 1 and len(jamf.inventory_requests()) == 5


async def test_bad_client_credentials(vendor: FakeVendor) -> None:
    vendor.reply_payload("jamf/invalid_client.json", 401)
    with pytest.raises(IntegrationError, match="API client credentials refused") as caught:
        await make(vendor).lookup("host", "mac-alice")
    assert SECRET not in str(caught.value) and CLIENT_ID not in str(caught.value)


async def test_token_response_without_expiry_is_rejected(vendor: FakeVendor) -> None:
    vendor.reply(200, json_body={"access_token": "t", "token_type": "Bearer"})
    with pytest.raises(IntegrationError, match="expires_in"):
        await make(vendor).lookup("host", "mac-alice")


async def test_forbidden_rate_limited_server_error_and_malformed(vendor: FakeVendor) -> None:
    jamf = Jamf(vendor)
    jamf.inventory += [
        httpx.Response(
            403,
            json={
                "httpStatus": 403,
                "errors": [
                    {
                        "code": "INVALID_PRIVILEGE",
                        "description": "Forbidden",
                        "id": "0",
                        "field": None,
                    }
                ],
            },
        ),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(200, content=b"{", headers={"content-type": "application/json"}),
        httpx.Response(200, json={"totalCount": 1}),
    ]
    lookup = make(vendor)
    with pytest.raises(IntegrationError, match="HTTP 403.*INVALID_PRIVILEGE|HTTP 403.*Forbidden"):
        await lookup.lookup("host", "mac-alice")
    with pytest.raises(RateLimited) as caught:
        await lookup.lookup("host", "mac-alice")
    assert caught.value.retry_after == 7.0
    with pytest.raises(IntegrationError, match="server error \\(HTTP 503\\)"):
        await lookup.lookup("host", "mac-alice")
    with pytest.raises(IntegrationError, match="malformed JSON"):
        await lookup.lookup("host", "mac-alice")
    with pytest.raises(IntegrationError, match="results is not a list"):
        await lookup.lookup("host", "mac-alice")


async def test_timeout(vendor: FakeVendor) -> None:
    vendor.fail(httpx.ConnectTimeout("connect timed out"))
    with pytest.raises(IntegrationError, match="timed out"):
        await make(vendor).lookup("host", "mac-alice")


def test_from_options(vendor: FakeVendor) -> None:
    context = Context(
        http=vendor.http, environ={"JAMF_CLIENT_ID": CLIENT_ID, "JAMF_CLIENT_SECRET": SECRET}
    )
    options = {
        "base_url": BASE + "/",
        "client_id_env": "JAMF_CLIENT_ID",
        "client_secret_env": "JAMF_CLIENT_SECRET",
    }
    lookup = build(JamfLookup, options=options, context=context)
    assert lookup.base_url == BASE
    with pytest.raises(ConfigError, match="base_url"):
        build(JamfLookup, options={**options, "base_url": ""}, context=context)
    with pytest.raises(ConfigError, match="NOPE is not set"):
        build(JamfLookup, options={**options, "client_secret_env": "NOPE"}, context=context)
