"""A stand-in for the Microsoft identity platform token endpoint and Microsoft Graph's
users, answering as learn.microsoft.com documents them.

- ``POST /{tenant}/oauth2/v2.0/token`` (client credentials) → 200 ``{"token_type":
  "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token"}``; a wrong secret
  → 401 ``invalid_client`` AADSTS7000215, a wrong scope → 400 ``invalid_scope``;
- ``GET /v1.0/users/{id|upn}`` (and ``/v1.0/users('$upn')``) with ``$select`` → 200 the
  selected properties, 404 ``Request_ResourceNotFound``;
- ``POST /v1.0/users/{id}/revokeSignInSessions`` → 200 ``{"@odata.context": …, "value":
  true}``; ``PATCH /v1.0/users/{id}`` ``{"accountEnabled": …}`` → 204;
- an unknown bearer token → 401 ``InvalidAuthenticationToken``; ``forbidden`` → 403
  ``Authorization_RequestDenied``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from tests.integrations.responders.saas import Recorder, form, json_response

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
SECRET = "sEcReT~8Q~abcdefghijklmnopqrstuvwxyz0123"
LOGIN = "https://login.entra.test"
GRAPH = "https://graph.entra.test"
SCOPE = "https://graph.microsoft.com/.default"


def graph_error(status: int, code: str, message: str) -> httpx.Response:
    inner = {
        "date": "2024-05-01T12:00:00",
        "request-id": str(uuid.uuid4()),
        "client-request-id": str(uuid.uuid4()),
    }
    return json_response(status, {"error": {"code": code, "message": message, "innerError": inner}})


def token_error(status: int, error: str, code: int, text: str) -> httpx.Response:
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    return json_response(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
            f"Correlation ID: {correlation}\r\nTimestamp: 2024-05-01 12:00:00Z",
            "error_codes": [code],
            "timestamp": "2024-05-01 12:00:00Z",
            "trace_id": str(trace),
            "correlation_id": str(correlation),
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
    )


def throttled(retry_after: str = "7") -> httpx.Response:
    response = graph_error(429, "TooManyRequests", "Please retry again later.")
    response.headers["Retry-After"] = retry_after
    return response


@dataclass
class FakeGraph:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    forbidden: bool = False
    refuse_tokens: bool = False  # answer every Graph call 401, as for a revoked app

    def __post_init__(self) -> None:
        self.recorder = Recorder(self._handle)
        self.http = self.recorder.http

    def add(self, upn: str, name: str, enabled: bool = True) -> str:
        user_id = str(uuid.uuid4())
        self.users[user_id] = {
            "id": user_id,
            "userPrincipalName": upn,
            "displayName": name,
            "accountEnabled": enabled,
            "mail": upn,
            "jobTitle": "Accountant",
        }
        return user_id

    def graph_calls(self) -> list[httpx.Request]:
        return [r for r in self.recorder.requests if r.url.host == httpx.URL(GRAPH).host]

    def _find(self, key: str) -> dict[str, Any] | None:
        if key in self.users:
            return self.users[key]
        return next(
            (u for u in self.users.values() if u["userPrincipalName"].casefold() == key.casefold()),
            None,
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == httpx.URL(LOGIN).host:
            return self._token(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens or self.refuse_tokens:
            return graph_error(
                401, "InvalidAuthenticationToken", "Access token validation failure."
            )
        if self.forbidden:
            return graph_error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        raw = request.url.raw_path.decode().split("?")[0]
        match = re.fullmatch(
            r"/v1\.0/users(?:/([^/(]+)|\('([^/]+)'\))(/revokeSignInSessions)?", raw
        )
        if match is None:
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{raw}'.")
        key = unquote(match.group(1) or match.group(2).replace("''", "'"))
        if match.group(1) and key.startswith("$"):
            return graph_error(400, "BadRequest", "Invalid object identifier.")
        user = self._find(key)
        if user is None:
            return graph_error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        if match.group(3) and request.method == "POST":
            return json_response(
                200,
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
                    "value": True,
                },
            )
        if request.method == "GET":
            select = request.url.params.get("$select", "")
            fields = select.split(",") if select else ["id", "displayName", "userPrincipalName"]
            context = f"https://graph.microsoft.com/v1.0/$metadata#users({select})/$entity"
            return json_response(
                200, {"@odata.context": context} | {f: user.get(f) for f in fields}
            )
        if request.method == "PATCH":
            change = json.loads(request.content)
            if set(change) != {"accountEnabled"} or not isinstance(change["accountEnabled"], bool):
                return graph_error(400, "Request_BadRequest", "Invalid property.")
            user["accountEnabled"] = change["accountEnabled"]
            return httpx.Response(204)
        return graph_error(405, "Request_BadRequest", "Specified HTTP method is not allowed.")

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != f"/{TENANT}/oauth2/v2.0/token" or request.method != "POST":
            return token_error(
                400, "invalid_request", 90002, f"Tenant '{request.url.path}' not found."
            )
        fields = form(request)
        if fields.get("grant_type") != "client_credentials":
            return token_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if fields.get("scope") != SCOPE:
            return token_error(
                400, "invalid_scope", 1002012, "The provided value for scope is not valid."
            )
        if fields.get("client_id") != CLIENT_ID or fields.get("client_secret") != SECRET:
            return token_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{CLIENT_ID}'.",
            )
        token = "eyJ0eXAiOiJKV1Qi." + uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens.add(token)
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            },
        )
