"""``virustotal``: what VirusTotal's engines say about a file hash, IP, domain or URL (API v3).

One GET per indicator: ``/api/v3/files/{hash}``, ``/ip_addresses/{ip}``, ``/domains/{d}``,
``/urls/{id}`` where the id is the URL in unpadded URL-safe base64 (VirusTotal canonicalises
it server-side). The key travels only in the ``x-apikey`` header.

The verdict is ours, from ``last_analysis_stats``, so every card reads the same way:

- ``malicious`` when at least ``malicious_threshold`` engines (default 3) say malicious;
- ``suspicious`` when one or two engines say malicious, or any says suspicious;
- ``clean`` otherwise (including "no engine has an opinion").

``detection_ratio`` is malicious engines over the engines that gave a verdict (malicious,
suspicious, undetected, harmless); timeouts, failures and unsupported types do not count.

A 404 whose body is VirusTotal's ``NotFoundError`` means "never seen" and yields None; any
other 404 (a wrong base URL, say) is an error, so a misconfiguration never reads as clean.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.enrichers.httpbase import (
    decode_json,
    epoch_to_iso,
    expect_mapping,
    http_client,
    json_body,
)
from integrations.http import ONCE, VendorHTTP
from pipeline.errors import IntegrationError
from pipeline.observables import Kind, hash_type
from pipeline.plugins import Context, EnvName, lookups

VENDOR = "virustotal"
DEFAULT_BASE_URL = "https://www.virustotal.com"
GUI_URL = "https://www.virustotal.com/gui"
# kind → (API collection, GUI collection)
_COLLECTIONS: dict[str, tuple[str, str]] = {
    "hash": ("files", "file"),
    "ip": ("ip_addresses", "ip-address"),
    "domain": ("domains", "domain"),
    "url": ("urls", "url"),
}
_VERDICT_CATEGORIES = ("malicious", "suspicious", "undetected", "harmless")


def url_id(url: str) -> str:
    """VirusTotal's identifier for a URL: unpadded URL-safe base64 of the URL itself."""
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def verdict(malicious: int, suspicious: int, *, threshold: int = 3) -> str:
    """``malicious`` / ``suspicious`` / ``clean`` from engine counts (see module doc)."""
    if malicious >= threshold:
        return "malicious"
    if malicious >= 1 or suspicious >= 1:
        return "suspicious"
    return "clean"


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"api_key_env": "VIRUSTOTAL_API_KEY"}]}
    )

    api_key_env: EnvName  # the variable holding the API key
    base_url: str = Field(default=DEFAULT_BASE_URL, min_length=1)
    malicious_threshold: int = Field(default=3, ge=1)  # engines saying malicious → malicious


VirusTotalOptions = Options  # the name the methods are annotated with


@lookups.register(VENDOR)
class VirusTotalLookup:
    name = VENDOR
    kinds: frozenset[Kind] = frozenset({"hash", "ip", "domain", "url"})
    provider = VENDOR
    external = True
    Options = Options

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        malicious_threshold: int = 3,
    ) -> None:
        self.http = http
        self._api_key = api_key
        self.api = VendorHTTP(VENDOR, http, policy=ONCE, secrets=lambda: [api_key])
        self.base_url = base_url.rstrip("/")
        self.malicious_threshold = malicious_threshold

    @classmethod
    def build(cls, options: VirusTotalOptions, context: Context) -> VirusTotalLookup:
        return cls(
            api_key=SecretStr(context.secret(options.api_key_env)),
            http=http_client(context),
            base_url=options.base_url,
            malicious_threshold=options.malicious_threshold,
        )

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        ident = self._identifier(kind, value)
        if ident is None:
            return None  # not something VirusTotal could know (e.g. a non-hex "hash")
        collection, gui = _COLLECTIONS[kind]
        response = await self.api.send(
            "GET",
            f"{self.base_url}/api/v3/{collection}/{quote(ident, safe='')}",
            headers={"x-apikey": self._api_key.get_secret_value(), "accept": "application/json"},
        )
        if response.status_code == 404 and _is_not_found(response):
            return None
        self.api.check(response)
        body = expect_mapping(decode_json(response, vendor=VENDOR), vendor=VENDOR, what="body")
        data = expect_mapping(body.get("data"), vendor=VENDOR, what="data")
        attrs = expect_mapping(data.get("attributes"), vendor=VENDOR, what="data.attributes")
        facts = self._facts(attrs)
        object_id = data.get("id")
        if not isinstance(object_id, str) or not object_id:
            object_id = ident
        facts["permalink"] = f"{GUI_URL}/{gui}/{quote(object_id, safe='')}"
        return facts

    @staticmethod
    def _identifier(kind: Kind, value: str) -> str | None:
        value = value.strip()
        if kind == "hash":
            return value.lower() if hash_type(value) else None
        if kind == "ip":
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                return None
        if kind == "domain":
            domain = value.rstrip(".").lower()
            return domain if domain and "/" not in domain else None
        if kind == "url":
            return url_id(value) if value else None
        return None

    def _facts(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        stats = attrs.get("last_analysis_stats")
        if not isinstance(stats, Mapping):
            raise IntegrationError(f"{VENDOR}: unexpected response: no last_analysis_stats")
        counts = {name: _count(stats.get(name)) for name in _VERDICT_CATEGORIES}
        engines = sum(counts.values())
        threat = attrs.get("popular_threat_classification")
        label = threat.get("suggested_threat_label") if isinstance(threat, Mapping) else None
        return {
            **counts,
            "detection_ratio": f"{counts['malicious']}/{engines}",
            "reputation": attrs.get("reputation") if _is_int(attrs.get("reputation")) else None,
            "popular_threat_label": label if isinstance(label, str) else None,
            "first_seen": epoch_to_iso(
                attrs.get("first_submission_date") or attrs.get("creation_date")
            ),
            "last_seen": epoch_to_iso(
                attrs.get("last_submission_date") or attrs.get("last_analysis_date")
            ),
            "verdict": verdict(
                counts["malicious"], counts["suspicious"], threshold=self.malicious_threshold
            ),
        }


def _is_not_found(response: httpx.Response) -> bool:
    body = json_body(response)
    error = body.get("error") if isinstance(body, Mapping) else None
    return isinstance(error, Mapping) and error.get("code") == "NotFoundError"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int:
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        raise IntegrationError(f"{VENDOR}: unexpected response: a non-count in last_analysis_stats")
    return int(value)
