"""A stand-in for the SentinelOne Management API 2.1 agents endpoints, answering as its
API reference (``/api-doc``; the published schema: ``AgentsSchemasAgentViewSchemaMany200``,
``AgentsSchemasAgentsDangerousActionSchema``, ``AffectedResultsSchema200``) documents them.

- ``Authorization: ApiToken <token>``, else 401 ``{"errors": [{"code": 4010010, "detail":
  null, "title": "Authentication Failed"}]}``;
- ``GET /web/api/v2.1/agents?computerName=…|ids=…`` → ``{"data": [agent], "pagination":
  {"nextCursor", "totalItems"}}``;
- ``POST /web/api/v2.1/agents/actions/disconnect|connect`` with ``{"filter": {…}}`` →
  ``{"data": {"affected": n}}``; a filter key the schema does not know, or none, → 400.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integrations.responders.saas import Recorder, json_response

TOKEN = "eyJraWQiOiJ1cy1lYXN0LTEtcHJvZC0wIiwiYWxnIjoiRVMyNTYifQ.s1-token-never-shown"
BASE = "https://usea1-acme.s1.test"
FILTERS = {"ids", "computerName", "computerName__contains", "uuids", "groupIds", "siteIds"}


def s1_error(status: int, code: int, title: str, detail: str | None = None) -> httpx.Response:
    return json_response(status, {"errors": [{"code": code, "detail": detail, "title": title}]})


@dataclass
class FakeS1:
    agents: list[dict[str, Any]] = field(default_factory=list)
    forbidden: bool = False

    def __post_init__(self) -> None:
        self.recorder = Recorder(self._handle)
        self.http = self.recorder.http

    def add(
        self, name: str, status: str = "connected", last: str = "2024-05-01T12:00:00.000000Z"
    ) -> dict[str, Any]:
        agent = {
            "id": str(1_300_000_000_000_000_000 + len(self.agents)),
            "uuid": uuid.uuid4().hex,
            "computerName": name,
            "networkStatus": status,
            "isActive": True,
            "lastActiveDate": last,
            "osName": "Windows 11 Pro",
            "agentVersion": "23.4.2.14",
            "siteName": "Default site",
        }
        self.agents.append(agent)
        return agent

    def by_name(self, name: str) -> dict[str, Any]:
        return next(a for a in self.agents if a["computerName"] == name)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"ApiToken {TOKEN}":
            return s1_error(401, 4010010, "Authentication Failed")
        if self.forbidden:
            return s1_error(403, 4030010, "Forbidden", "Insufficient permissions")
        path = request.url.path
        if request.method == "GET" and path == "/web/api/v2.1/agents":
            params = request.url.params
            found = self.agents
            if "computerName" in params:
                found = [
                    a
                    for a in found
                    if a["computerName"].casefold() == params["computerName"].casefold()
                ]
            if "ids" in params:
                wanted = params["ids"].split(",")
                found = [a for a in found if a["id"] in wanted]
            found = found[: int(params.get("limit", "10"))]
            return json_response(
                200, {"data": found, "pagination": {"nextCursor": None, "totalItems": len(found)}}
            )
        action = path.removeprefix("/web/api/v2.1/agents/actions/")
        if request.method == "POST" and action in ("disconnect", "connect"):
            filters = json.loads(request.content).get("filter")
            if not isinstance(filters, dict) or not filters or set(filters) - FILTERS:
                return s1_error(400, 4000010, "Validation Error", "filter: invalid or missing")
            hit = [a for a in self.agents if a["id"] in filters.get("ids", [a["id"]])]
            if "computerName" in filters:
                hit = [a for a in hit if a["computerName"] == filters["computerName"]]
            for agent in hit:
                agent["networkStatus"] = "disconnecting" if action == "disconnect" else "connecting"
            return json_response(200, {"data": {"affected": len(hit)}})
        return s1_error(404, 4040010, "Not Found")
