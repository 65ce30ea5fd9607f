"""``misp``: has our own threat-intelligence platform seen this hash, IP, domain or URL?

``POST /attributes/restSearch`` with ``{"returnFormat": "json", "value": …, "type": […],
"includeContext": true}``, the key in ``Authorization``. MISP answers
``{"response": {"Attribute": [...]}}``; with ``includeContext`` each attribute's ``Event``
carries ``threat_level_id`` and the event's tags.

MISP's ``value`` filter is not literal: ``%`` makes it a LIKE pattern and a leading ``!``
negates it. Values starting with ``!`` are never indicators and are not sent; for the rest
(URLs legitimately contain ``%``) every returned attribute is compared with the value
exactly, component by component for composite types such as ``filename|sha256``, so a
pattern can only ever narrow, never widen, what we report.

Facts: ``attribute_count``, ``events`` (id, info, threat_level, date, org, url), ``tags``,
``categories``, ``threat_level`` (the worst: high > medium > low > undefined), ``to_ids``
(whether any match is flagged for detection), and ``verdict``: ``malicious`` when a match
is flagged ``to_ids``, else ``suspicious``. No match → None.

MISP is usually self-hosted, so ``external`` is False unless the options say otherwise;
``verify_tls`` may be false or a CA bundle path, in which case this lookup owns a client of
its own (closed by :meth:`aclose`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from integrations.enrichers.httpbase import (
    decode_json,
    expect_mapping,
    http_client,
)
from integrations.http import ONCE, VendorHTTP
from pipeline.errors import IntegrationError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, lookups

VENDOR = "misp"
TYPES: dict[str, list[str]] = {
    "hash": [
        "md5",
        "sha1",
        "sha256",
        "sha512",
        "filename|md5",
        "filename|sha1",
        "filename|sha256",
        "filename|sha512",
        "malware-sample",
    ],
    "ip": ["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"],
    "domain": ["domain", "hostname", "domain|ip"],
    "url": ["url", "uri", "link"],
}
THREAT_LEVELS = {"1": "high", "2": "medium", "3": "low", "4": "undefined"}
_SEVERITY = {"high": 3, "medium": 2, "low": 1, "undefined": 0}
_CASELESS = {"hash", "domain"}


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"base_url": "https://misp.corp.example", "api_key_env": "MISP_API_KEY"}]
        },
    )

    base_url: str = Field(min_length=1)  # e.g. https://misp.corp.example
    api_key_env: EnvName  # the variable holding the API key
    # true, false (labs only), or the path of a PEM bundle of the CA that signed MISP's cert
    verify_tls: bool | str = True
    external: bool = False  # true when MISP is run by someone else (privacy rules apply)
    limit: int = Field(default=200, ge=1)  # attributes asked for per lookup
    enforce_warninglist: bool = True  # MISP leaves out values on its warning lists

    @field_validator("verify_tls", mode="before")
    @classmethod
    def _ca_bundle(cls, value: object) -> object:
        if isinstance(value, bool):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError("must be true, false or the path of a CA bundle")
        _tls_context(value)
        return value


MispOptions = Options  # the name the methods are annotated with


def _tls_context(ca_file: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot read CA bundle {ca_file!r}: {exc}") from None


@lookups.register(VENDOR)
class MispLookup:
    name = VENDOR
    kinds: frozenset[Kind] = frozenset({"hash", "ip", "domain", "url"})
    provider = VENDOR
    Options = Options

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        api_key: SecretStr,
        base_url: str,
        external: bool = False,
        limit: int = 200,
        enforce_warninglist: bool = True,
        owns_client: bool = False,
    ) -> None:
        self.http = http
        self._api_key = api_key
        self.api = VendorHTTP(VENDOR, http, policy=ONCE, secrets=lambda: [api_key])
        self.base_url = base_url.rstrip("/")
        self.external = external
        self.limit = limit
        self.enforce_warninglist = enforce_warninglist
        self._owns_client = owns_client

    @classmethod
    def build(cls, options: MispOptions, context: Context) -> MispLookup:
        """With ``verify_tls`` other than true, the lookup gets a client of its own."""
        key = SecretStr(context.secret(options.api_key_env))
        verify = options.verify_tls
        if verify is True:
            http, owns = http_client(context), False
        elif verify is False:
            http, owns = httpx.AsyncClient(verify=False, timeout=10.0), True
        else:
            http, owns = httpx.AsyncClient(verify=_tls_context(verify), timeout=10.0), True
        return cls(
            http=http,
            api_key=key,
            base_url=options.base_url,
            external=options.external,
            limit=options.limit,
            enforce_warninglist=options.enforce_warninglist,
            owns_client=owns,
        )

    async def aclose(self) -> None:
        """Close the client this lookup made for itself (custom TLS); a shared one is left."""
        if self._owns_client:
            await self.http.aclose()

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        value = value.strip()
        if kind not in TYPES or not value or value.startswith("!"):
            return None
        query = {
            "returnFormat": "json",
            "value": value,
            "type": TYPES[kind],
            "includeContext": True,
            "enforceWarninglist": self.enforce_warninglist,
            "limit": self.limit,
            "page": 1,
        }
        response = await self.api.send(
            "POST",
            f"{self.base_url}/attributes/restSearch",
            json=query,
            headers={
                "Authorization": self._api_key.get_secret_value(),
                "Accept": "application/json",
            },
        )
        self.api.check(response)
        body = expect_mapping(decode_json(response, vendor=VENDOR), vendor=VENDOR, what="body")
        inner = expect_mapping(body.get("response"), vendor=VENDOR, what="response")
        attributes = inner.get("Attribute", [])
        if not isinstance(attributes, list):
            raise IntegrationError(f"{VENDOR}: unexpected response: Attribute is not a list")
        matches = [a for a in attributes if _matches(a, kind, value)]
        return self._facts(matches, truncated=len(attributes) >= self.limit) if matches else None

    def _facts(self, attributes: list[Mapping[str, Any]], *, truncated: bool) -> dict[str, Any]:
        events: dict[str, dict[str, Any]] = {}
        tags: dict[str, None] = {}
        categories: dict[str, None] = {}
        for attribute in attributes:
            tags.update(dict.fromkeys(_tag_names(attribute.get("Tag"))))
            if isinstance(attribute.get("category"), str):
                categories[attribute["category"]] = None
            event = attribute.get("Event")
            if not isinstance(event, Mapping) or event.get("id") is None:
                continue
            tags.update(dict.fromkeys(_tag_names(event.get("Tag"))))
            event_id = str(event["id"])
            org = event.get("Orgc")
            events.setdefault(
                event_id,
                {
                    "id": event_id,
                    "info": event.get("info"),
                    "threat_level": THREAT_LEVELS.get(
                        str(event.get("threat_level_id")), "undefined"
                    ),
                    "date": event.get("date"),
                    "org": org.get("name") if isinstance(org, Mapping) else None,
                    "url": f"{self.base_url}/events/view/{event_id}",
                },
            )
        levels = [e["threat_level"] for e in events.values()] or ["undefined"]
        to_ids = any(a.get("to_ids") is True for a in attributes)
        return {
            "attribute_count": len(attributes),
            "truncated": truncated,
            "events": list(events.values()),
            "tags": list(tags),
            "categories": list(categories),
            "threat_level": max(levels, key=_SEVERITY.__getitem__),
            "to_ids": to_ids,
            "verdict": "malicious" if to_ids else "suspicious",
        }


def _matches(attribute: Any, kind: Kind, value: str) -> bool:
    """Whether the attribute's value (or a component of a composite one) is ``value``."""
    if not isinstance(attribute, Mapping) or not isinstance(attribute.get("value"), str):
        return False
    parts = attribute["value"].split("|") if "|" in str(attribute.get("type")) else []
    candidates = [attribute["value"], *parts]
    if kind in _CASELESS:
        folded = value.casefold().rstrip(".")
        return any(c.casefold().rstrip(".") == folded for c in candidates)
    return value in candidates


def _tag_names(tags: Any) -> list[str]:
    if not isinstance(tags, list):
        return []
    return [t["name"] for t in tags if isinstance(t, Mapping) and isinstance(t.get("name"), str)]
