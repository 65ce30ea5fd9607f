"""A stand-in for Okta's Users API, answering as developer.okta.com documents it.

- ``GET /api/v1/users/{id|login|login shortname}`` → 200 the user, 404 E0000007;
- ``POST /api/v1/users/{id}/lifecycle/suspend`` → 200 ``{}`` for an ACTIVE user, else 400
  E0000001 "Api validation failed: suspendUser" / "Cannot suspend a user that is not
  active"; ``…/unsuspend`` → 200 ``{}`` for a SUSPENDED user, else 400 E0000001;
- ``DELETE /api/v1/users/{id}/sessions[?oauthTokens=true]`` → 204;
- a wrong ``Authorization: SSWS`` token → 401 E0000011; ``forbidden`` → 403 E0000006.
Error bodies carry errorCode, errorSummary, errorLink, errorId and errorCauses.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integrations.responders.saas import Recorder, json_response

TOKEN = "00aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_xyzTOKEN"
BASE = "https://acme.okta.test"


def okta_error(status: int, code: str, summary: str, *causes: str) -> httpx.Response:
    return json_response(
        status,
        {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae" + uuid.uuid4().hex[:22],
            "errorCauses": [{"errorSummary": c} for c in causes],
        },
    )


def rate_limited(**headers: str) -> httpx.Response:
    response = okta_error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
    response.headers.update(
        {
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": str(int(time.time()) + 30),
            **headers,
        }
    )
    return response


def server_error() -> httpx.Response:
    return okta_error(500, "E0000009", "Internal Server Error")


@dataclass
class FakeOkta:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    forbidden: bool = False

    def __post_init__(self) -> None:
        self.recorder = Recorder(self._handle)
        self.http = self.recorder.http

    def add(
        self,
        user_id: str,
        login: str,
        status: str = "ACTIVE",
        first: str = "John",
        last: str = "Doe",
    ) -> dict[str, Any]:
        user = {
            "id": user_id,
            "status": status,
            "created": "2013-06-24T16:39:18.000Z",
            "statusChanged": "2013-06-24T16:39:19.000Z",
            "lastLogin": "2013-06-24T17:39:19.000Z",
            "profile": {"firstName": first, "lastName": last, "email": login, "login": login},
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": f"{BASE}/api/v1/users/{user_id}"}},
        }
        self.users[user_id] = user
        return user

    def _find(self, key: str) -> dict[str, Any] | None:
        if key in self.users:
            return self.users[key]
        folded = key.casefold()
        for user in self.users.values():
            if user["profile"]["login"].casefold() == folded:
                return user
        short = [
            u
            for u in self.users.values()
            if u["profile"]["login"].split("@")[0].casefold() == folded
        ]
        return short[0] if len(short) == 1 else None

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"SSWS {TOKEN}":
            return okta_error(401, "E0000011", "Invalid token provided")
        if self.forbidden:
            return okta_error(
                403, "E0000006", "You do not have permission to perform the requested action"
            )
        path = request.url.path  # decoded
        match = re.fullmatch(r"/api/v1/users/([^/]+)(/.*)?", path)
        if match is None:
            return okta_error(
                404, "E0000022", "The endpoint does not support the provided HTTP method"
            )
        key, rest = match.group(1), match.group(2) or ""
        user = self._find(key)
        if user is None:
            return okta_error(404, "E0000007", f"Not found: Resource not found: {key} (User)")
        if request.method == "GET" and rest == "":
            return json_response(200, user)
        if request.method == "POST" and rest == "/lifecycle/suspend":
            if user["status"] != "ACTIVE":
                return okta_error(
                    400,
                    "E0000001",
                    "Api validation failed: suspendUser",
                    "Cannot suspend a user that is not active",
                )
            user["status"] = "SUSPENDED"
            return json_response(200, {})
        if request.method == "POST" and rest == "/lifecycle/unsuspend":
            if user["status"] != "SUSPENDED":
                return okta_error(
                    400,
                    "E0000001",
                    "Api validation failed: unsuspendUser",
                    "Cannot unsuspend a user that is not suspended",
                )
            user["status"] = "ACTIVE"
            return json_response(200, {})
        if request.method == "DELETE" and rest == "/sessions":
            return httpx.Response(204)
        return okta_error(405, "E0000022", "The endpoint does not support the provided HTTP method")
