"""``crowdstrike_contain_host``: network-contain a host in CrowdStrike Falcon; Undo lifts it.

Followed: CrowdStrike Falcon API reference, Hosts collection ("QueryDevicesByFilter",
"GetDeviceDetailsV2", "PerformActionV2", developer.crowdstrike.com/api-reference/
collections/hosts/) and "OAuth2 Auth Token APIs" (``oauth2AccessToken``), as FalconPy and
PSFalcon (``Invoke-FalconHostAction``, "Requires Hosts: Write") document them:

- ``POST /oauth2/token`` with the form ``client_id``, ``client_secret`` → 201
  ``{"access_token", "token_type": "bearer", "expires_in": 1799}``; kept until shortly
  before it expires, renewed once when a call answers 401;
- ``GET /devices/queries/devices/v1?filter=hostname:'NAME'`` → ``{"meta", "resources":
  [device id, …], "errors": []}``; the hostname is an FQL string: single-quoted, with
  ``\\`` and ``'`` backslash-escaped, and ``*`` (FQL's wildcard) refused, so a hostile name
  stays one literal. Only devices whose ``hostname`` then equals the target are used (the
  most recently seen one when several share it); an FQDN falls back to its short name;
- ``GET /devices/entities/devices/v2?ids=…`` → ``resources`` with ``device_id``,
  ``hostname``, ``status`` (``normal``, ``containment_pending``, ``contained``,
  ``lift_containment_pending``), ``last_seen``;
- ``POST /devices/entities/devices-actions/v2?action_name=contain`` (Undo:
  ``lift_containment``) with ``{"ids": [device id]}`` → 202 ``{"resources": [{"id",
  "path"}], "errors": []}``.

Every error body is ``{"meta", "resources", "errors": [{"code", "message"}]}``; rate
limiting is 429 with ``X-RateLimit-RetryAfter`` (epoch seconds). Idempotent: a host
already ``contained`` (or ``containment_pending``) is reported "already contained;
nothing changed" and Undo leaves it contained.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.responders.vendor_http import (
    BaseURL,
    Seconds,
    TokenCache,
    VendorAPI,
    clean_target,
    http_client,
    send_with_bearer,
    short_host,
)
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, Impact, ResponderResult, responders

log = logging.getLogger(__name__)

VENDOR = "CrowdStrike Falcon"
DEVICE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
CONTAINED = ("contained", "containment_pending")


class CrowdStrikeContainOptions(BaseModel):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_url": "https://api.crowdstrike.com",
                    "client_id": "0123456789abcdef0123456789abcdef",
                    "client_secret_env": "FIDO_FALCON_SECRET",
                }
            ]
        },
    )

    base_url: BaseURL = "https://api.crowdstrike.com"  # or api.us-2 / api.eu-1 / …
    client_id: str = Field(pattern=r"^[0-9a-fA-F]{32}$")  # the API client's id
    client_secret_env: EnvName  # the variable holding the API client's secret
    timeout: Seconds = 10.0


def fql_string(value: str) -> str:
    """``value`` as an FQL single-quoted string: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@responders.register("crowdstrike_contain_host")
class CrowdStrikeContainHost:
    """Network-contain a host in Falcon until Undo."""

    name = "crowdstrike_contain_host"
    target_kind: Kind = "host"
    label = "contain"
    reversible = True
    impact = Impact.high
    Options = CrowdStrikeContainOptions

    def __init__(
        self,
        options: CrowdStrikeContainOptions,
        *,
        http: httpx.AsyncClient,
        client_secret: SecretStr,
    ) -> None:
        self.options = options
        self._secret = client_secret
        self.tokens = TokenCache(self._fetch_token)
        self.api = VendorAPI(
            VENDOR,
            http,
            timeout=options.timeout,
            secrets=lambda: [client_secret.get_secret_value(), self.tokens.current],
            credentials=f"the API client {options.client_id} (secret in "
            f"{options.client_secret_env}; scope Hosts: Read and Write)",
            client="API client",
        )

    @classmethod
    def build(cls, options: CrowdStrikeContainOptions, context: Context) -> CrowdStrikeContainHost:
        """The responder for ``options``, its client secret read from the named variable."""
        secret = SecretStr(context.secret(options.client_secret_env))
        return cls(options, http=http_client(context), client_secret=secret)

    def hostname_for(self, target: str) -> str:
        value = clean_target(target, refusing="contain")
        if "*" in value:
            raise ResponderError(f"Refused to contain {target!r}: '*' is a wildcard in Falcon")
        return value

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            self.hostname_for(target)
        except ResponderError as exc:
            return str(exc)
        return (
            f"Network-contain {target} in CrowdStrike Falcon — it can only reach the Falcon "
            "cloud until Undo"
        )

    async def execute(self, target: str) -> ResponderResult:
        doing = f"contain {target} in CrowdStrike Falcon"
        hostname = self.hostname_for(target)
        device = await self._find(hostname, doing=doing)
        if device is None and (short := short_host(hostname)) is not None:
            device = await self._find(short, doing=doing)
        if device is None:
            raise ResponderError(f"Could not {doing}: no such host in CrowdStrike Falcon")
        device_id, name, status = device["device_id"], device["hostname"], device.get("status")
        undo_data = {"device_id": device_id, "hostname": name}
        if status in CONTAINED:
            return ResponderResult(
                summary=f"{name} (device {device_id}) was already contained in CrowdStrike "
                f"Falcon ({status}); nothing changed",
                undo_data=undo_data | {"changed": False},
            )
        await self._act("contain", device_id, doing=doing)
        log.info("crowdstrike_contain_host: contained %s (%s)", name, device_id)
        return ResponderResult(
            summary=f"Network-contained {name} (device {device_id}) in CrowdStrike Falcon; "
            "it can only reach the Falcon cloud until Undo",
            undo_data=undo_data | {"changed": True},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        device_id = undo_data.get("device_id") if isinstance(undo_data, Mapping) else None
        changed = undo_data.get("changed") if isinstance(undo_data, Mapping) else None
        if not isinstance(device_id, str) or not DEVICE_ID.match(device_id):
            raise ResponderError(
                f"Cannot undo containing {target}: the undo data has no valid Falcon device id"
            )
        if not isinstance(changed, bool):
            raise ResponderError(
                f"Cannot undo containing {target}: the undo data does not say whether Fido "
                "contained it"
            )
        name = str(undo_data.get("hostname") or target)
        if not changed:
            return ResponderResult(
                summary=f"Left {name} contained: it was contained before Fido acted"
            )
        doing = f"lift the containment of {name} in CrowdStrike Falcon"
        devices = await self._details([device_id], doing=doing)
        if not devices:
            raise ResponderError(f"Could not {doing}: device {device_id} is no longer in Falcon")
        if devices[0].get("status") in ("normal", "lift_containment_pending"):
            return ResponderResult(summary=f"{name} was no longer contained; nothing to undo")
        await self._act("lift_containment", device_id, doing=doing)
        log.info("crowdstrike_contain_host: lifted the containment of %s (%s)", name, device_id)
        return ResponderResult(
            summary=f"Lifted the network containment of {name} (device {device_id}) in "
            "CrowdStrike Falcon"
        )

    # -- the API -------------------------------------------------------------------------

    async def _fetch_token(self, doing: str) -> tuple[str, float]:
        form = {
            "client_id": self.options.client_id,
            "client_secret": self._secret.get_secret_value(),
        }
        url = f"{self.options.base_url}/oauth2/token"
        fix = f"client_id and the secret in {self.options.client_secret_env}"
        return await self.api.client_token(url, form, doing=doing, refused=(400, 401, 403), fix=fix)

    async def _call(
        self, method: str, path: str, *, doing: str, missing: Any = None, **kwargs: Any
    ) -> Any:
        """The ``resources`` of a Falcon answer; ``missing`` (when given) for a 404."""
        url = f"{self.options.base_url}{path}"
        response = await send_with_bearer(self.api, self.tokens, method, url, doing=doing, **kwargs)
        if response.status_code == 404 and missing is not None:
            return missing
        if not response.is_success:
            raise self.api.error(response, doing=doing)
        body = self.api.json(response, doing=doing)
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if not isinstance(body, Mapping) or not isinstance(body.get("resources"), list):
            raise ResponderError(f"Could not {doing}: Falcon answered without resources")
        if errors:
            raise ResponderError(f"Could not {doing}: Falcon said {self.api.words(response)}")
        return body["resources"]

    async def _find(self, hostname: str, *, doing: str) -> dict[str, Any] | None:
        """The most recently seen device named exactly ``hostname``, or None."""
        params = {"filter": f"hostname:{fql_string(hostname)}", "limit": "20"}
        found = await self._call("GET", "/devices/queries/devices/v1", doing=doing, params=params)
        ids = [i for i in found if isinstance(i, str) and DEVICE_ID.match(i)]
        if not ids:
            return None
        devices = [
            d
            for d in await self._details(ids, doing=doing)
            if str(d.get("hostname", "")).casefold() == hostname.casefold()
        ]
        if not devices:
            return None
        return max(devices, key=lambda d: str(d.get("last_seen") or ""))

    async def _details(self, ids: list[str], *, doing: str) -> list[dict[str, Any]]:
        params = [("ids", i) for i in ids]
        found = await self._call(
            "GET", "/devices/entities/devices/v2", doing=doing, params=params, missing=[]
        )
        return [
            d
            for d in found
            if isinstance(d, dict)
            and isinstance(d.get("device_id"), str)
            and DEVICE_ID.match(d["device_id"])
            and d["device_id"] in ids
        ]

    async def _act(self, action: str, device_id: str, *, doing: str) -> None:
        done = await self._call(
            "POST",
            "/devices/entities/devices-actions/v2",
            doing=doing,
            params={"action_name": action},
            json={"ids": [device_id]},
        )
        if not any(isinstance(r, Mapping) and r.get("id") == device_id for r in done):
            raise ResponderError(f"Could not {doing}: Falcon did not confirm the {action}")
