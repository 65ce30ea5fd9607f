"""``greynoise``: is this IP Internet background noise, or a known benign service? (Community API)

``GET /v3/community/{ip}`` with the key in the ``key`` header. GreyNoise answers "never
seen it" with HTTP 404 and a body such as ``{"ip": …, "noise": false, "riot": false,
"message": "IP not observed scanning the internet or contained in RIOT data set."}``; that,
and a 400 saying the address is not routable IPv4, yield None. A 404 without that body (a
wrong base URL) is an error. The Community API knows IPv4 only, so IPv6 is not sent.

Verdict: ``malicious`` when GreyNoise classifies it so; ``benign`` for RIOT (a known
business service) or a ``benign`` classification (a known research scanner) — which lowers
the threat score; ``suspicious`` for noise of unknown intent; ``unknown`` otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.enrichers.httpbase import (
    decode_json,
    expect_mapping,
    http_client,
    json_body,
)
from integrations.http import ONCE, VendorHTTP
from pipeline.errors import IntegrationError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, lookups

VENDOR = "greynoise"
DEFAULT_BASE_URL = "https://api.greynoise.io"
VIZ_URL = "https://viz.greynoise.io/ip/{ip}"


def verdict(*, noise: bool, riot: bool, classification: str | None) -> str:
    """Our verdict from GreyNoise's flags (see module doc)."""
    if classification == "malicious":
        return "malicious"
    if riot or classification == "benign":
        return "benign"
    if noise:
        return "suspicious"
    return "unknown"


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"api_key_env": "GREYNOISE_API_KEY"}]}
    )

    api_key_env: EnvName  # the variable holding the Community API key
    base_url: str = Field(default=DEFAULT_BASE_URL, min_length=1)


GreyNoiseOptions = Options  # the name the methods are annotated with


@lookups.register(VENDOR)
class GreyNoiseLookup:
    name = VENDOR
    kinds: frozenset[Kind] = frozenset({"ip"})
    provider = VENDOR
    external = True
    Options = Options

    def __init__(
        self, *, http: httpx.AsyncClient, api_key: SecretStr, base_url: str = DEFAULT_BASE_URL
    ) -> None:
        self.http = http
        self._api_key = api_key
        self.api = VendorHTTP(VENDOR, http, policy=ONCE, secrets=lambda: [api_key])
        self.base_url = base_url.rstrip("/")

    @classmethod
    def build(cls, options: GreyNoiseOptions, context: Context) -> GreyNoiseLookup:
        return cls(
            api_key=SecretStr(context.secret(options.api_key_env)),
            http=http_client(context),
            base_url=options.base_url,
        )

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        if kind != "ip":
            return None
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return None
        if address.version != 4:
            return None
        ip = str(address)
        response = await self.api.send(
            "GET",
            f"{self.base_url}/v3/community/{ip}",
            headers={"key": self._api_key.get_secret_value(), "Accept": "application/json"},
        )
        if response.status_code in (400, 404) and _not_known(response):
            return None
        self.api.check(response)
        body = expect_mapping(decode_json(response, vendor=VENDOR), vendor=VENDOR, what="body")
        facts = _facts(ip, body)
        if not (facts["noise"] or facts["riot"] or facts["classification"]):
            return None  # older deployments say "not observed" with a 200
        return facts


def _not_known(response: httpx.Response) -> bool:
    """A 404 "not observed" body, or a 400 "not a valid routable IPv4 address"."""
    body = json_body(response)
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, str):
        return False
    if response.status_code == 404:
        return "not observed" in message.lower()
    return "routable" in message.lower()


def _facts(ip: str, body: Mapping[str, Any]) -> dict[str, Any]:
    noise, riot = body.get("noise"), body.get("riot")
    if not isinstance(noise, bool) or not isinstance(riot, bool):
        raise IntegrationError(f"{VENDOR}: unexpected response: no noise/riot flags")
    classification = body.get("classification")
    classification = classification if isinstance(classification, str) else None
    link = body.get("link")
    return {
        "noise": noise,
        "riot": riot,
        "classification": classification,
        "name": body.get("name") if isinstance(body.get("name"), str) else None,
        "last_seen": body.get("last_seen") if isinstance(body.get("last_seen"), str) else None,
        "link": link if isinstance(link, str) and link else VIZ_URL.format(ip=ip),
        "verdict": verdict(noise=noise, riot=riot, classification=classification),
    }
