"""Okta's Users API as the Okta responders call it (``okta_suspend_user``,
``okta_clear_sessions``).

Followed: Okta Users API reference (developer.okta.com/docs/reference/api/users/ — "Get
User with Login", "Suspend User", "Unsuspend User", "Clear User Sessions") and the error
reference (developer.okta.com/docs/reference/error-codes/):

- every call carries ``Authorization: SSWS <API token>`` and ``Accept: application/json``;
- a user is fetched with ``GET /api/v1/users/{login}`` (id, login or unambiguous login
  shortname); the login is URL-encoded, and Okta cannot fetch logins with ``/`` or ``?``
  by login at all, so those are refused;
- errors are ``{"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses":
  [{"errorSummary"}]}``: E0000007 (404) not found, E0000011 (401) invalid token, E0000006
  (403) no permission, E0000001 (400) validation failed, E0000047 (429) rate limited with
  ``X-Rate-Limit-Reset`` (epoch seconds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.responders.vendor_http import (
    BaseURL,
    Seconds,
    VendorAPI,
    account_parts,
    clean_target,
    json_body,
    path_segment,
)
from pipeline.errors import ResponderError
from pipeline.plugins import EnvName

VENDOR = "Okta"
USER_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
DOMAIN = r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$"


class OktaOptions(BaseModel):
    """Settings both Okta responders take."""

    model_config = ConfigDict(extra="forbid")

    base_url: BaseURL  # your org, e.g. https://acme.okta.com
    api_token_env: EnvName  # the variable holding the SSWS API token
    # appended to a bare account name: alice → alice@<domain> (else Okta's shortname lookup)
    domain: str | None = Field(default=None, pattern=DOMAIN, max_length=253)
    timeout: Seconds = 10.0


@dataclass(frozen=True)
class OktaUser:
    id: str
    login: str
    status: str
    display_name: str | None

    @classmethod
    def from_json(cls, body: Any) -> OktaUser | None:
        if not isinstance(body, Mapping):
            return None
        user_id, status = body.get("id"), body.get("status")
        profile = body.get("profile") if isinstance(body.get("profile"), Mapping) else {}
        assert isinstance(profile, Mapping)
        if not isinstance(user_id, str) or not USER_ID.match(user_id):
            return None
        if not isinstance(status, str):
            return None
        name = profile.get("displayName")
        if not isinstance(name, str) or not name.strip():
            parts = [profile.get("firstName"), profile.get("lastName")]
            name = " ".join(p for p in parts if isinstance(p, str) and p.strip()) or None
        login = profile.get("login")
        return cls(user_id, login if isinstance(login, str) else user_id, status, name)


def error_code(response: httpx.Response) -> str | None:
    body = json_body(response)
    code = body.get("errorCode") if isinstance(body, Mapping) else None
    return code if isinstance(code, str) else None


class OktaUsers:
    """Find and change Okta users with one API token."""

    def __init__(self, options: OktaOptions, *, http: httpx.AsyncClient, token: SecretStr):
        self.options = options
        self._token = token
        self.api = VendorAPI(
            VENDOR,
            http,
            timeout=options.timeout,
            secrets=lambda: [token.get_secret_value()],
            credentials=f"the Okta API token in {options.api_token_env}",
        )

    def __repr__(self) -> str:
        return f"OktaUsers({self.options.base_url!r})"

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"SSWS {self._token.get_secret_value()}",
            "Accept": "application/json",
        }

    def login_for(self, target: str, *, refusing: str) -> str:
        """The Okta login to look ``target`` up by; ResponderError when it cannot be."""
        value = clean_target(target, refusing=refusing)
        account, domain = account_parts(value)
        if "\\" in value:  # CORP\alice: a Windows domain means nothing to Okta
            value, domain = account, None
        if domain is None and self.options.domain:
            value = f"{account}@{self.options.domain}"
        if not account.strip(".") or any(c in value for c in "/?\\"):
            raise ResponderError(
                f"Refused to {refusing} {target!r}: Okta cannot look up a login with "
                "'/', '?' or '\\' in it"
            )
        return value

    def url(self, *segments: str) -> str:
        return f"{self.options.base_url}/api/v1/users/" + "/".join(segments)

    async def find(self, login: str, *, doing: str) -> OktaUser:
        """The user with ``login`` (from :meth:`login_for`); ResponderError "no such user
        in Okta" when there is none."""
        response = await self.api.send(
            "GET", self.url(path_segment(login)), doing=doing, headers=self.headers
        )
        if response.status_code == 404:
            raise ResponderError(f"Could not {doing}: no such user in Okta ({login})")
        return self._user(response, doing=doing)

    async def get(self, user_id: str, *, doing: str) -> OktaUser | None:
        """The user with ``user_id`` now, or None when Okta no longer has it."""
        response = await self.api.send(
            "GET", self.url(path_segment(user_id)), doing=doing, headers=self.headers
        )
        if response.status_code == 404:
            return None
        return self._user(response, doing=doing)

    def _user(self, response: httpx.Response, *, doing: str) -> OktaUser:
        if not response.is_success:
            raise self.api.error(response, doing=doing)
        user = OktaUser.from_json(self.api.json(response, doing=doing))
        if user is None:
            raise ResponderError(f"Could not {doing}: Okta answered without a user id or status")
        return user

    async def call(self, method: str, *segments: str, doing: str, **kwargs: Any) -> httpx.Response:
        """``method`` on ``/api/v1/users/<segments>``; the response, whatever its status."""
        url = self.url(*(path_segment(s) for s in segments))
        return await self.api.send(method, url, doing=doing, headers=self.headers, **kwargs)


def user_id_from(undo_data: Mapping[str, Any], target: str, *, undoing: str) -> str:
    """The Okta user id Undo needs; ResponderError when the undo data lacks it."""
    user_id = undo_data.get("user_id") if isinstance(undo_data, Mapping) else None
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise ResponderError(
            f"Cannot undo {undoing} {target}: the undo data has no valid Okta user id"
        )
    return user_id
