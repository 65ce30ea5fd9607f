"""A stand-in for CrowdStrike Falcon's OAuth2 and Hosts APIs, answering as the Falcon API
reference (and FalconPy / PSFalcon, which follow it) documents them.

- ``POST /oauth2/token`` (form ``client_id``, ``client_secret``) → 201 ``{"access_token",
  "token_type": "bearer", "expires_in": 1799}``; refused credentials → 403;
- ``GET /devices/queries/devices/v1?filter=hostname:'NAME'`` → ``{"meta", "resources":
  [ids], "errors": []}``. The filter is parsed for real: a single-quoted FQL string with
  backslash escapes; anything else is 400 "Invalid filter", so a hostname that breaks out
  of its quotes is caught;
- ``GET /devices/entities/devices/v2?ids=…`` → the devices (404 when none exists);
- ``POST /devices/entities/devices-actions/v2?action_name=contain|lift_containment`` with
  ``{"ids": [...]}`` → 202 ``{"resources": [{"id", "path"}], "errors": []}``;
- an unknown bearer token → 401 "access denied, invalid bearer token"; ``forbidden`` →
  403 "access denied, authorization failed".
Every body is ``{"meta": {query_time, powered_by, trace_id}, "resources", "errors":
[{code, message}]}``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integrations.responders.saas import Recorder, form, json_response

CLIENT_ID = "0123456789abcdef0123456789abcdef"
SECRET = "Fal-con-S3cret-never-shown-0123456789"
BASE = "https://api.falcon.test"
FQL_HOSTNAME = re.compile(r"hostname:'((?:[^'\\]|\\.)*)'")


def falcon(
    status: int,
    resources: list[Any] | None = None,
    *errors: tuple[int, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    meta = {"query_time": 0.004, "powered_by": "device-api", "trace_id": str(uuid.uuid4())}
    body = {
        "meta": meta,
        "resources": resources if resources is not None else [],
        "errors": [{"code": code, "message": message} for code, message in errors],
    }
    return json_response(status, body, headers)


def rate_limited(**headers: str) -> httpx.Response:
    return falcon(
        429,
        [],
        (429, "API rate limit exceeded."),
        headers={
            "X-RateLimit-Limit": "6000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-RetryAfter": str(int(time.time()) + 15),
            **headers,
        },
    )


@dataclass
class FakeFalcon:
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    forbidden: bool = False

    def __post_init__(self) -> None:
        self.recorder = Recorder(self._handle)
        self.http = self.recorder.http

    def add(
        self, hostname: str, status: str = "normal", last_seen: str = "2024-05-01T12:00:00Z"
    ) -> str:
        device_id = uuid.uuid4().hex
        self.devices[device_id] = {
            "device_id": device_id,
            "cid": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
            "hostname": hostname,
            "platform_name": "Windows",
            "os_version": "Windows 11",
            "status": status,
            "first_seen": "2023-01-01T00:00:00Z",
            "last_seen": last_seen,
            "local_ip": "10.0.0.5",
            "external_ip": "203.0.113.9",
        }
        return device_id

    def api_calls(self) -> list[httpx.Request]:
        return [r for r in self.recorder.requests if r.url.path != "/oauth2/token"]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth2/token" and request.method == "POST":
            fields = form(request)
            if (fields.get("client_id"), fields.get("client_secret")) != (CLIENT_ID, SECRET):
                return falcon(403, [], (403, "Failed to issue access token - Not Authorized"))
            token = uuid.uuid4().hex * 2
            self.tokens.add(token)
            return json_response(
                201, {"access_token": token, "token_type": "bearer", "expires_in": 1799}
            )
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return falcon(401, [], (401, "access denied, invalid bearer token"))
        if self.forbidden:
            return falcon(403, [], (403, "access denied, authorization failed"))
        if request.method == "GET" and path == "/devices/queries/devices/v1":
            match = FQL_HOSTNAME.fullmatch(request.url.params.get("filter", ""))
            if match is None:
                return falcon(400, [], (400, "Invalid filter"))
            name = re.sub(r"\\(.)", r"\1", match.group(1)).casefold()
            ids = [
                d["device_id"] for d in self.devices.values() if d["hostname"].casefold() == name
            ]
            return falcon(200, ids)
        if request.method == "GET" and path == "/devices/entities/devices/v2":
            found = [
                self.devices[i] for i in request.url.params.get_list("ids") if i in self.devices
            ]
            return falcon(200, found) if found else falcon(404, [], (404, "Device not found"))
        if request.method == "POST" and path == "/devices/entities/devices-actions/v2":
            action = request.url.params.get("action_name")
            ids = json.loads(request.content).get("ids", [])
            if action not in ("contain", "lift_containment") or not ids:
                return falcon(400, [], (400, "Invalid action_name or ids"))
            unknown = [i for i in ids if i not in self.devices]
            if unknown:
                return falcon(404, [], (404, f"Device not found: {unknown[0]}"))
            for device_id in ids:
                pending = (
                    "containment_pending" if action == "contain" else "lift_containment_pending"
                )
                self.devices[device_id]["status"] = pending
            return falcon(202, [{"id": i, "path": ""} for i in ids])
        return falcon(404, [], (404, "Not Found"))
