"""Microsoft Entra ID through Microsoft Graph, as the Entra responders call it
(``entra_revoke_sessions``, ``entra_disable_user``).

Followed:

- "Microsoft identity platform and the OAuth 2.0 client credentials flow"
  (learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
  ``POST {login_url}/{tenant}/oauth2/v2.0/token`` with the form ``client_id``, ``scope=
  https://graph.microsoft.com/.default``, ``client_secret``, ``grant_type=
  client_credentials`` → 200 ``{"token_type": "Bearer", "expires_in": 3599,
  "access_token"}``; refusals are ``{"error": "invalid_client", "error_description":
  "AADSTS7000215: …\\r\\nTrace ID: …", "error_codes": [...]}`` with 400 or 401. The token
  is kept until shortly before it expires and renewed once when Graph answers 401.
- "Get user" (learn.microsoft.com/graph/api/user-get): ``GET /v1.0/users/{id |
  userPrincipalName}``; a UPN starting with ``$`` is addressed as ``/users('$x@y.com')``,
  and ``#`` (B2B guests) percent-encoded; 404 when there is no such user.
- Graph errors are ``{"error": {"code", "message", "innerError": {…}}}``; throttling is 429
  with ``Retry-After`` ("Microsoft Graph throttling guidance").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.config import JsonDict

from integrations.responders.vendor_http import (
    BaseURL,
    Seconds,
    TokenCache,
    VendorAPI,
    account_parts,
    clean_target,
    path_segment,
    send_with_bearer,
)
from pipeline.errors import ResponderError
from pipeline.plugins import EnvName

VENDOR = "Entra ID"
GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DOMAIN = r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$"
SELECT = "$select=id,displayName,userPrincipalName,accountEnabled"
ENTRA_EXAMPLE: JsonDict = {  # the documented example options of both
    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "client_secret_env": "FIDO_ENTRA_SECRET",
    "domain": "corp.example",
}


class EntraOptions(BaseModel):
    """Settings both Entra responders take."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=f"{GUID}|{DOMAIN}", max_length=253)  # GUID or domain
    client_id: str = Field(pattern=GUID)  # the app registration's application (client) id
    client_secret_env: EnvName  # the variable holding the client secret
    login_url: BaseURL = "https://login.microsoftonline.com"
    graph_url: BaseURL = "https://graph.microsoft.com"
    scope: str = Field(
        default="https://graph.microsoft.com/.default", pattern=r"^https://\S+/\.default$"
    )
    # appended to a bare account name: alice → alice@<domain>
    domain: str | None = Field(default=None, pattern=DOMAIN, max_length=253)
    timeout: Seconds = 10.0


@dataclass(frozen=True)
class GraphUser:
    id: str
    upn: str
    display_name: str | None
    account_enabled: bool | None

    @property
    def named(self) -> str:
        return f"{self.upn} ({self.display_name})" if self.display_name else self.upn


class GraphUsers:
    """Find and change Entra ID users with one app registration (client credentials)."""

    def __init__(
        self, options: EntraOptions, *, http: httpx.AsyncClient, client_secret: SecretStr
    ) -> None:
        self.options = options
        self._secret = client_secret
        self.tokens = TokenCache(self._fetch_token)
        self.api = VendorAPI(
            VENDOR,
            http,
            timeout=options.timeout,
            secrets=lambda: [client_secret.get_secret_value(), self.tokens.current],
            credentials=f"the app registration {options.client_id} (secret in "
            f"{options.client_secret_env})",
        )

    def __repr__(self) -> str:
        return f"GraphUsers({self.options.tenant_id!r}, {self.options.graph_url!r})"

    async def _fetch_token(self, doing: str) -> tuple[str, float]:
        url = f"{self.options.login_url}/{path_segment(self.options.tenant_id)}/oauth2/v2.0/token"
        form = {
            "client_id": self.options.client_id,
            "scope": self.options.scope,
            "client_secret": self._secret.get_secret_value(),
            "grant_type": "client_credentials",
        }
        fix = f"tenant_id, client_id and the secret in {self.options.client_secret_env}"
        return await self.api.client_token(url, form, doing=doing, refused=(400, 401), fix=fix)

    def upn_for(self, target: str, *, refusing: str) -> str:
        """The object id or user principal name ``target`` names; ResponderError when it
        names none Graph can look up."""
        value = clean_target(target, refusing=refusing)
        if re.match(GUID, value):
            return value.lower()
        account, domain = account_parts(value)
        if domain is None or "\\" in value:
            if not self.options.domain:
                raise ResponderError(
                    f"Refused to {refusing} {target!r}: Entra ID needs a user principal name "
                    "(alice@example.com); set the responder's domain option to act on bare "
                    "account names"
                )
            value = f"{account}@{self.options.domain}"
        if not account.strip(".") or any(c in value for c in "/?\\"):
            raise ResponderError(
                f"Refused to {refusing} {target!r}: not a user principal name Graph can look up"
            )
        return value

    def user_url(self, key: str) -> str:
        """``/v1.0/users/{key}``, or ``/v1.0/users('{key}')`` for a UPN starting with $."""
        if key.startswith("$"):
            inner = quote(key.replace("'", "''"), safe="@$'")
            return f"{self.options.graph_url}/v1.0/users('{inner}')"
        return f"{self.options.graph_url}/v1.0/users/{path_segment(key)}"

    async def call(self, method: str, url: str, *, doing: str, **kwargs: Any) -> httpx.Response:
        return await send_with_bearer(self.api, self.tokens, method, url, doing=doing, **kwargs)

    async def find(self, key: str, *, doing: str) -> GraphUser | None:
        """The user with object id or UPN ``key``, or None when Graph has none."""
        response = await self.call("GET", f"{self.user_url(key)}?{SELECT}", doing=doing)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self.api.error(response, doing=doing)
        body = self.api.json(response, doing=doing)
        if not isinstance(body, Mapping) or not isinstance(body.get("id"), str):
            raise ResponderError(f"Could not {doing}: Graph answered without the user's id")
        if not re.match(GUID, body["id"]):
            raise ResponderError(f"Could not {doing}: Graph answered with an odd user id")
        upn, name, enabled = (
            body.get("userPrincipalName"),
            body.get("displayName"),
            body.get("accountEnabled"),
        )
        return GraphUser(
            id=body["id"],
            upn=upn if isinstance(upn, str) else key,
            display_name=name if isinstance(name, str) and name.strip() else None,
            account_enabled=enabled if isinstance(enabled, bool) else None,
        )

    async def require(self, key: str, *, doing: str) -> GraphUser:
        user = await self.find(key, doing=doing)
        if user is None:
            raise ResponderError(f"Could not {doing}: no such user in Entra ID ({key})")
        return user


def object_id_from(undo_data: Mapping[str, Any], target: str, *, undoing: str) -> str:
    """The Entra object id Undo needs; ResponderError when the undo data lacks it."""
    user_id = undo_data.get("user_id") if isinstance(undo_data, Mapping) else None
    if not isinstance(user_id, str) or not re.match(GUID, user_id):
        raise ResponderError(
            f"Cannot undo {undoing} {target}: the undo data has no valid Entra object id"
        )
    return user_id
