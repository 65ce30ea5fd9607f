"""Stand-ins for the CrowdStrike Falcon and SentinelOne APIs, behind httpx.MockTransport.

Only what cannot run here is faked, and only as far as the pollers use it. Bodies,
status codes and headers follow the vendors' public documentation:

- CrowdStrike (Falcon API reference, ``oauth2AccessToken``, ``GetQueriesAlertsV2``,
  ``PostEntitiesAlertsV2``): every body is ``{"meta": {query_time, powered_by, trace_id,
  pagination?}, "resources": [...], "errors": [{code, message}]}``; the token endpoint
  answers 201 ``{"access_token", "token_type": "bearer", "expires_in": 1799}``; a bad or
  expired token is 401 "access denied, invalid bearer token"; refused client credentials
  are 403; rate limiting is 429 with ``X-RateLimit-RetryAfter``.
- SentinelOne (Management API 2.1, ``GET /web/api/v2.1/threats``): ``{"data": [...],
  "pagination": {"nextCursor", "totalItems"}}``; errors ``{"errors": [{code, detail,
  title}]}``, a bad token 401 "Authentication Failed".

The filtering and ordering the pollers rely on (``updated_timestamp:>='…'``,
``updatedAt__gte``, ascending sort, offset and cursor paging) are implemented for real, so
a poller that asks the wrong question gets the wrong answer.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from integrations.sources.http_retry import timestamp_key

CID = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
AGENT = "0f6b5c3e2d1a4b9c8e7f6a5b4c3d2e1f"


def _meta(**extra: Any) -> dict[str, Any]:
    return {
        "query_time": 0.012345678,
        "powered_by": "csam" if "pagination" not in extra else "detectsapi",
        "trace_id": str(uuid.uuid4()),
        **extra,
    }


def falcon_alert(n: int, updated: str, *, user: str = "alice") -> dict[str, Any]:
    """One alert as ``PostEntitiesAlertsV2`` returns it (an endpoint detection)."""
    detection = f"{n:011d}-5702-{n:07d}"
    return {
        "agent_id": AGENT,
        "aggregate_id": f"aggind:{AGENT}:{8590000000 + n}",
        "cid": CID,
        "composite_id": f"{CID}:ind:{AGENT}:{detection}",
        "confidence": 80,
        "created_timestamp": updated,
        "updated_timestamp": updated,
        "timestamp": updated,
        "id": f"ind:{AGENT}:{detection}",
        "name": "CredentialDumping",
        "display_name": "Credential dumping via procdump",
        "description": "A process attempted to dump LSASS memory.",
        "severity": 70,
        "severity_name": "High",
        "status": "new",
        "product": "epp",
        "type": "ldt",
        "platform": "Windows",
        "tactic": "Credential Access",
        "tactic_id": "TA0006",
        "technique": "OS Credential Dumping",
        "technique_id": "T1003",
        "filename": "procdump64.exe",
        "cmdline": "procdump64.exe -ma lsass.exe out.dmp",
        "sha256": f"{n:064x}",
        "user_name": user,
        "device": {
            "device_id": AGENT,
            "hostname": "LAPTOP-042",
            "local_ip": "10.0.0.5",
            "external_ip": "203.0.113.9",
            "platform_name": "Windows",
        },
    }


Answer = Callable[[httpx.Request], httpx.Response]


def _record(
    fake: Any, request: httpx.Request, handle: Callable[[httpx.Request], httpx.Response]
) -> httpx.Response:
    """Log the request, give a planned failure if one is due for its path, else answer."""
    fake.requests.append(request)
    for index, (path, answer) in enumerate(fake.failures):
        if path == request.url.path:
            del fake.failures[index]
            response = answer(request)
            break
    else:
        response = handle(request)
    fake.responses.append(response)
    return response


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class FakeFalcon:
    """The Falcon API for one CID: an OAuth2 client, and the alerts it can see."""

    client_id: str = "0123456789abcdef0123456789abcdef"
    client_secret: str = "Fal-con-S3cret-never-shown"
    alerts: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)  # tokens currently accepted
    requests: list[httpx.Request] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)
    failures: list[tuple[str, Answer]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: _record(self, request, self._handle))

    def fail(self, path: str, *answers: Answer) -> None:
        """Answer the next requests for ``path`` with ``answers``, one each, in order."""
        self.failures.extend((path, answer) for answer in answers)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return self._token(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            errors = [{"code": 401, "message": "access denied, invalid bearer token"}]
            return _json(401, {"meta": _meta(), "errors": errors})
        if request.method == "GET" and request.url.path == "/alerts/queries/alerts/v2":
            return self._query(request)
        if request.method == "POST" and request.url.path == "/alerts/entities/alerts/v2":
            return self._entities(request)
        return _json(404, {"meta": _meta(), "errors": [{"code": 404, "message": "Not Found"}]})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            message = "Failed to issue access token - Not Authorized"
            return _json(403, {"meta": _meta(), "errors": [{"code": 403, "message": message}]})
        token = base64.urlsafe_b64encode(uuid.uuid4().bytes * 4).decode().rstrip("=")
        self.tokens.add(token)
        return _json(201, {"access_token": token, "token_type": "bearer", "expires_in": 1799})

    def _query(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        found = self.alerts
        fql = params.get("filter", "")
        if fql:
            match = re.fullmatch(r"updated_timestamp:>='([^']+)'", fql)
            if match is None:
                errors = [{"code": 400, "message": f"Invalid filter: {fql}"}]
                return _json(400, {"meta": _meta(), "resources": [], "errors": errors})
            since = timestamp_key(match.group(1))
            found = [a for a in found if (timestamp_key(a["updated_timestamp"]) or (0, 0)) >= since]
        if params.get("sort") == "updated_timestamp.asc":
            found = sorted(found, key=lambda a: timestamp_key(a["updated_timestamp"]) or (0, 0))
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        page = [a["composite_id"] for a in found[offset : offset + limit]]
        pagination = {"offset": offset, "limit": limit, "total": len(found)}
        return _json(200, {"meta": _meta(pagination=pagination), "resources": page, "errors": []})

    def _entities(self, request: httpx.Request) -> httpx.Response:
        wanted = json.loads(request.content)["composite_ids"]
        found = [a for a in self.alerts if a["composite_id"] in wanted]
        found.reverse()  # the entities endpoint promises no order
        return _json(200, {"meta": _meta(), "resources": found, "errors": []})


def s1_threat(n: int, updated: str, *, user: str = "CORP\\alice") -> dict[str, Any]:
    """One threat as ``GET /web/api/v2.1/threats`` returns it (abridged to what matters)."""
    threat_id = str(1_800_000_000_000_000_000 + n)
    return {
        "id": threat_id,
        "agentDetectionInfo": {
            "accountName": "ACME",
            "agentDomain": "CORP",
            "agentIpV4": "10.0.0.5",
            "agentLastLoggedInUserName": user,
            "agentOsName": "Windows 11 Pro",
            "agentVersion": "23.4.2.14",
            "siteName": "Default site",
        },
        "agentRealtimeInfo": {
            "agentComputerName": "LAPTOP-042",
            "agentId": "1700000000000000042",
            "agentNetworkStatus": "connected",
            "agentOsType": "windows",
        },
        "threatInfo": {
            "threatId": threat_id,
            "threatName": f"invoice-{n}.exe",
            "classification": "Trojan",
            "confidenceLevel": "malicious",
            "analystVerdict": "undefined",
            "incidentStatus": "unresolved",
            "mitigationStatus": "mitigated",
            "filePath": f"\\Device\\HarddiskVolume3\\Users\\alice\\Downloads\\invoice-{n}.exe",
            "sha1": f"{n:040x}",
            "createdAt": updated,
            "updatedAt": updated,
            "identifiedAt": updated,
        },
        "indicators": [],
        "mitigationStatus": [],
        "whiteningOptions": ["hash", "path"],
    }


@dataclass
class FakeSentinelOne:
    """A SentinelOne console: one API token, the threats it can see, cursor paging."""

    api_token: str = "eyJraWQiOiJ1cy1lYXN0LTEtcHJvZC0wIiwiYWxnIjoiRVMyNTYifQ.s1-secret"
    threats: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)
    failures: list[tuple[str, Answer]] = field(default_factory=list)
    cursors: dict[str, tuple[str, int]] = field(default_factory=dict)  # token → (query, skip)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: _record(self, request, self._handle))

    def fail(self, path: str, *answers: Answer) -> None:
        """Answer the next requests for ``path`` with ``answers``, one each, in order."""
        self.failures.extend((path, answer) for answer in answers)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"ApiToken {self.api_token}":
            errors = [{"code": 4010010, "detail": None, "title": "Authentication Failed"}]
            return _json(401, {"errors": errors})
        if request.method != "GET" or request.url.path != "/web/api/v2.1/threats":
            return _json(404, {"errors": [{"code": 4040010, "detail": None, "title": "Not Found"}]})
        return self._threats(request)

    def _threats(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        query = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "cursor")
        skip = 0
        if "cursor" in params:
            if params["cursor"] not in self.cursors or self.cursors[params["cursor"]][0] != query:
                error = {"code": 4000010, "detail": "Invalid cursor", "title": "Validation Error"}
                return _json(400, {"errors": [error]})
            skip = self.cursors[params["cursor"]][1]
        since = timestamp_key(params.get("updatedAt__gte", "1970-01-01T00:00:00Z"))
        found = [t for t in self.threats if timestamp_key(t["threatInfo"]["updatedAt"]) >= since]
        if params.get("sortBy") == "updatedAt":
            found.sort(
                key=lambda t: timestamp_key(t["threatInfo"]["updatedAt"]),
                reverse=params.get("sortOrder") == "desc",
            )
        limit = int(params.get("limit", 10))
        page = found[skip : skip + limit]
        next_cursor = None
        if skip + limit < len(found):
            next_cursor = base64.b64encode(f"id:{page[-1]['id']}:{uuid.uuid4().hex}".encode())
            self.cursors[next_cursor.decode()] = (query, skip + limit)
        pagination = {
            "nextCursor": next_cursor.decode() if next_cursor else None,
            "totalItems": len(found),
        }
        return _json(200, {"data": page, "pagination": pagination})


def status(code: int, headers: dict[str, str] | None = None) -> Answer:
    """A canned failure: ``code`` with a body in the vendors' error shape."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"errors": [{"code": code, "message": f"HTTP {code}", "title": f"HTTP {code}"}]}
        return _json(code, body, headers)

    return answer


def transport_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)
