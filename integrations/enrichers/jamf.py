"""``jamf``: who a Mac belongs to and how healthy it is, from our own Jamf Pro inventory.

Authentication is an API client (OAuth client credentials): ``POST /api/oauth/token``
returns ``access_token`` and ``expires_in``. The token is kept until shortly before it
expires (a quarter of its life, at most 30 s early) and renewed then; a 401 from the
inventory also renews it, once, in case Jamf revoked it early. One lock keeps concurrent
lookups from fetching several tokens at once.

Inventory: ``GET /api/v1/computers-inventory`` with the GENERAL, HARDWARE,
OPERATING_SYSTEM, USER_AND_LOCATION and DISK_ENCRYPTION sections and an RSQL filter:

- host: ``general.name=="<host>"`` or ``hardware.serialNumber=="<host>"`` (and the short
  name of a FQDN, since Jamf stores ``mac-alice`` while alerts say ``mac-alice.corp``);
- ip: ``general.lastIpAddress`` or ``general.lastReportedIp`` (the address Jamf saw, or the
  one the Mac reported on its own network).

Values are double-quoted with ``"`` and ``\\`` backslash-escaped, so a hostile host name
stays one literal; and since RSQL still treats ``*`` as a wildcard, a host lookup keeps
only records whose name or serial equal the value. Several matches (an IP shared behind
NAT) → the most recently seen Mac, with ``matches`` saying how many there were.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.enrichers.httpbase import (
    decode_json,
    expect_mapping,
    http_client,
)
from integrations.http import ONCE, TokenCache, VendorHTTP, with_bearer
from pipeline.errors import IntegrationError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, lookups

VENDOR = "jamf"
SECTIONS = ("GENERAL", "HARDWARE", "OPERATING_SYSTEM", "USER_AND_LOCATION", "DISK_ENCRYPTION")
_ENCRYPTED = {"ENCRYPTED", "ALL_ENCRYPTED", "BOOT_ENCRYPTED"}


def rsql_quote(value: str) -> str:
    """``value`` as an RSQL double-quoted literal: backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_url": "https://corp.jamfcloud.com",
                    "client_id_env": "JAMF_CLIENT_ID",
                    "client_secret_env": "JAMF_CLIENT_SECRET",
                }
            ]
        },
    )

    base_url: str = Field(min_length=1)  # e.g. https://corp.jamfcloud.com
    client_id_env: EnvName  # the variables holding the API client's id and secret
    client_secret_env: EnvName
    page_size: int = Field(default=20, ge=1)  # computers asked for per lookup


JamfOptions = Options  # the name the methods are annotated with


@lookups.register(VENDOR)
class JamfLookup:
    name = VENDOR
    kinds: frozenset[Kind] = frozenset({"host", "ip"})
    provider = VENDOR
    external = False
    Options = Options

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        client_id: SecretStr,
        client_secret: SecretStr,
        clock: Callable[[], float] = time.monotonic,
        page_size: int = 20,
    ) -> None:
        self.http = http
        self.api = VendorHTTP(VENDOR, http, policy=ONCE, secrets=self._secrets)
        self.base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self.page_size = page_size
        # renewed a quarter of its life early, at most 30 s
        self.tokens = TokenCache(self._fetch_token, clock=clock, most_early=30.0)

    @classmethod
    def build(cls, options: JamfOptions, context: Context) -> JamfLookup:
        return cls(
            client_id=SecretStr(context.secret(options.client_id_env)),
            client_secret=SecretStr(context.secret(options.client_secret_env)),
            http=http_client(context),
            base_url=options.base_url,
            page_size=options.page_size,
        )

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        value = value.strip()
        if kind not in self.kinds or not value:
            return None
        if kind == "ip":
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                return None
        results = await self._search(_filter(kind, value))
        if kind == "host":
            results = [r for r in results if _names_host(r, value)]
        if not results:
            return None
        best = max(results, key=lambda r: str(_dig(r, "general", "lastContactTime") or ""))
        facts = self._facts(best)
        facts["matches"] = len(results)
        return facts

    async def _search(self, rsql: str) -> list[Mapping[str, Any]]:
        params: list[tuple[str, str]] = [("section", s) for s in SECTIONS]
        params += [("page", "0"), ("page-size", str(self.page_size)), ("filter", rsql)]
        url = f"{self.base_url}/api/v1/computers-inventory"
        accept = {"Accept": "application/json"}
        response = await with_bearer(
            self.api.send, self.tokens, "GET", url, params=params, headers=accept
        )
        self.api.check(response)
        body = expect_mapping(decode_json(response, vendor=VENDOR), vendor=VENDOR, what="body")
        results = body.get("results")
        if not isinstance(results, list):
            raise IntegrationError(f"{VENDOR}: unexpected response: results is not a list")
        return [r for r in results if isinstance(r, Mapping)]

    async def _fetch_token(self, doing: str = "") -> tuple[str, float]:
        response = await self.api.send(
            "POST",
            f"{self.base_url}/api/oauth/token",
            data={
                "client_id": self._client_id.get_secret_value(),
                "client_secret": self._client_secret.get_secret_value(),
                "grant_type": "client_credentials",
            },
            headers={"Accept": "application/json"},
        )
        if response.status_code in (400, 401):  # OAuth says invalid_client with 400 or 401
            raise IntegrationError(f"{VENDOR}: API client credentials refused (token endpoint)")
        self.api.check(response)
        body = expect_mapping(decode_json(response, vendor=VENDOR), vendor=VENDOR, what="token")
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token:
            raise IntegrationError(f"{VENDOR}: unexpected token response: no access_token")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            raise IntegrationError(f"{VENDOR}: unexpected token response: no expires_in")
        return token, float(lifetime)

    def _secrets(self) -> list[SecretStr | str]:
        return [self._client_secret, self._client_id, self.tokens.current]

    def _facts(self, computer: Mapping[str, Any]) -> dict[str, Any]:
        jamf_id = str(computer.get("id", ""))
        state = _dig(computer, "diskEncryption", "bootPartitionEncryptionDetails")
        filevault = _dig(state, "partitionFileVault2State") or _dig(
            computer, "operatingSystem", "fileVault2Status"
        )
        return {
            "jamf_id": jamf_id,
            "name": _dig(computer, "general", "name"),
            "serial": _dig(computer, "hardware", "serialNumber"),
            "model": _dig(computer, "hardware", "model"),
            "os_name": _dig(computer, "operatingSystem", "name"),
            "os_version": _dig(computer, "operatingSystem", "version"),
            "assigned_user": _dig(computer, "userAndLocation", "username"),
            "assigned_user_email": _dig(computer, "userAndLocation", "email"),
            "assigned_user_realname": _dig(computer, "userAndLocation", "realname"),
            "last_check_in": _dig(computer, "general", "lastContactTime"),
            "last_ip": _dig(computer, "general", "lastIpAddress"),
            "last_reported_ip": _dig(computer, "general", "lastReportedIp"),
            "managed": _dig(computer, "general", "remoteManagement", "managed"),
            "supervised": _dig(computer, "general", "supervised"),
            "filevault": filevault,
            "encrypted": None if filevault is None else filevault in _ENCRYPTED,
            "permalink": f"{self.base_url}/computers.html?id={jamf_id}&o=r",
        }


def _filter(kind: Kind, value: str) -> str:
    if kind == "ip":
        fields = ("general.lastIpAddress", "general.lastReportedIp")
        return ",".join(f"{field}=={rsql_quote(value)}" for field in fields)
    names = [value]
    short = value.split(".", 1)[0]
    if short and short != value:
        names.append(short)
    clauses = [f"general.name=={rsql_quote(n)}" for n in names]
    clauses.append(f"hardware.serialNumber=={rsql_quote(value)}")
    return ",".join(clauses)


def _names_host(computer: Mapping[str, Any], host: str) -> bool:
    """Whether the record's name, or serial, is the host we asked about (ignoring case)."""
    wanted = {host.casefold(), host.split(".", 1)[0].casefold()}
    name = _dig(computer, "general", "name")
    serial = _dig(computer, "hardware", "serialNumber")
    return (isinstance(name, str) and name.casefold() in wanted) or (
        isinstance(serial, str) and serial.casefold() == host.casefold()
    )


def _dig(record: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(step)
    return record
