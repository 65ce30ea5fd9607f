"""``abuseipdb``: how often, how recently and how confidently an IP was reported for abuse.

``GET /api/v2/check?ipAddress=…&maxAgeInDays=90&verbose`` with the key in the ``Key``
header. AbuseIPDB answers for any valid public address (a clean one has score 0 and no
reports), so this lookup returns facts whenever the address is valid, and None only for a
value that is not an IP at all (nothing is sent then).

The verdict is ours, from ``abuseConfidenceScore``: ``malicious`` at 75 or more,
``suspicious`` at 25 or more, ``clean`` below, and ``clean`` for an address AbuseIPDB
whitelists. The thresholds are options.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from integrations.enrichers.httpbase import (
    decode_json,
    expect_mapping,
    http_client,
)
from integrations.http import ONCE, VendorHTTP
from pipeline.errors import IntegrationError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, lookups

VENDOR = "abuseipdb"
DEFAULT_BASE_URL = "https://api.abuseipdb.com"
PERMALINK = "https://www.abuseipdb.com/check/{ip}"

# https://www.abuseipdb.com/categories — reports carry these ids
CATEGORIES = {
    1: "DNS Compromise",
    2: "DNS Poisoning",
    3: "Fraud Orders",
    4: "DDoS Attack",
    5: "FTP Brute-Force",
    6: "Ping of Death",
    7: "Phishing",
    8: "Fraud VoIP",
    9: "Open Proxy",
    10: "Web Spam",
    11: "Email Spam",
    12: "Blog Spam",
    13: "VPN IP",
    14: "Port Scan",
    15: "Hacking",
    16: "SQL Injection",
    17: "Spoofing",
    18: "Brute-Force",
    19: "Bad Web Bot",
    20: "Exploited Host",
    21: "Web App Attack",
    22: "SSH",
    23: "IoT Targeted",
}


def verdict(
    confidence: int, *, whitelisted: bool = False, malicious_at: int = 75, suspicious_at: int = 25
) -> str:
    """``malicious`` / ``suspicious`` / ``clean`` from the abuse confidence score."""
    if whitelisted:
        return "clean"
    if confidence >= malicious_at:
        return "malicious"
    if confidence >= suspicious_at:
        return "suspicious"
    return "clean"


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"api_key_env": "ABUSEIPDB_API_KEY", "max_age_days": 90}]},
    )

    api_key_env: EnvName  # the variable holding the API key
    base_url: str = Field(default=DEFAULT_BASE_URL, min_length=1)
    max_age_days: int = Field(default=90, ge=1, le=365)  # reports older than this ignored
    malicious_at: int = Field(default=75, ge=0, le=100)  # confidence score → malicious
    suspicious_at: int = Field(default=25, ge=0, le=100)  # confidence score → suspicious

    @model_validator(mode="after")
    def _ordered(self) -> Options:
        if self.suspicious_at > self.malicious_at:
            raise ValueError("suspicious_at must not be above malicious_at")
        return self


AbuseIPDBOptions = Options  # the name the methods are annotated with


@lookups.register(VENDOR)
class AbuseIPDBLookup:
    name = VENDOR
    kinds: frozenset[Kind] = frozenset({"ip"})
    provider = VENDOR
    external = True
    Options = Options

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        max_age_days: int = 90,
        malicious_at: int = 75,
        suspicious_at: int = 25,
    ) -> None:
        self.http = http
        self._api_key = api_key
        self.api = VendorHTTP(VENDOR, http, policy=ONCE, secrets=lambda: [api_key])
        self.base_url = base_url.rstrip("/")
        self.max_age_days = max_age_days
        self.malicious_at = malicious_at
        self.suspicious_at = suspicious_at

    @classmethod
    def build(cls, options: AbuseIPDBOptions, context: Context) -> AbuseIPDBLookup:
        return cls(
            api_key=SecretStr(context.secret(options.api_key_env)),
            http=http_client(context),
            base_url=options.base_url,
            max_age_days=options.max_age_days,
            malicious_at=options.malicious_at,
            suspicious_at=options.suspicious_at,
        )

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        if kind != "ip":
            return None
        try:
            ip = str(ipaddress.ip_address(value.strip()))
        except ValueError:
            return None
        response = await self.api.send(
            "GET",
            f"{self.base_url}/api/v2/check",
            params={"ipAddress": ip, "maxAgeInDays": str(self.max_age_days), "verbose": ""},
            headers={"Key": self._api_key.get_secret_value(), "Accept": "application/json"},
        )
        self.api.check(response)
        body = expect_mapping(decode_json(response, vendor=VENDOR), vendor=VENDOR, what="body")
        data = expect_mapping(body.get("data"), vendor=VENDOR, what="data")
        return self._facts(ip, data)

    def _facts(self, ip: str, data: Mapping[str, Any]) -> dict[str, Any]:
        score = data.get("abuseConfidenceScore")
        if isinstance(score, bool) or not isinstance(score, int):
            raise IntegrationError(f"{VENDOR}: unexpected response: no abuseConfidenceScore")
        whitelisted = data.get("isWhitelisted") is True
        return {
            "abuse_confidence": score,
            "total_reports": _int(data.get("totalReports")),
            "distinct_reporters": _int(data.get("numDistinctUsers")),
            "usage_type": data.get("usageType"),
            "isp": data.get("isp"),
            "domain": data.get("domain"),
            "country": data.get("countryCode"),
            "country_name": data.get("countryName"),
            "is_tor": data.get("isTor") is True,
            "is_whitelisted": whitelisted,
            "is_public": data.get("isPublic"),
            "last_reported_at": data.get("lastReportedAt"),
            "categories": _categories(data.get("reports")),
            "permalink": PERMALINK.format(ip=ip),
            "verdict": verdict(
                score,
                whitelisted=whitelisted,
                malicious_at=self.malicious_at,
                suspicious_at=self.suspicious_at,
            ),
        }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _categories(reports: Any) -> list[str]:
    """Category names across the reports (verbose mode), most frequent first (ties by id)."""
    if not isinstance(reports, list):
        return []
    counts: dict[int, int] = {}
    for report in reports:
        ids = report.get("categories") if isinstance(report, Mapping) else None
        for cat in ids if isinstance(ids, list) else []:
            if isinstance(cat, int) and cat in CATEGORIES:
                counts[cat] = counts.get(cat, 0) + 1
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    return [CATEGORIES[c] for c in ranked]
