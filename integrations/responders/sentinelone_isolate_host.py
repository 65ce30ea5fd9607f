"""``sentinelone_isolate_host``: disconnect a host from the network with SentinelOne; Undo
reconnects it.

Followed: SentinelOne Management API 2.1 reference (in the console at ``/api-doc``;
"Agents → Get Agents", "Agent Actions → Disconnect from Network" and "Connect to
Network"), as the published API schema (``AgentsSchemasAgentsDangerousActionSchema``,
``AffectedResultsSchema200``, ``NetworkStatusEnum``) describes them:

- every call carries ``Authorization: ApiToken <token>``;
- ``GET /web/api/v2.1/agents?computerName=NAME`` → ``{"data": [agent, …], "pagination":
  {…}}``, each agent with ``id``, ``computerName``, ``networkStatus`` (``connected``,
  ``connecting``, ``disconnected``, ``disconnecting``) and ``lastActiveDate``; only agents
  whose ``computerName`` equals the target are used (the most recently active one when
  several share it); an FQDN falls back to its short name;
- ``POST /web/api/v2.1/agents/actions/disconnect`` (Undo: ``/agents/actions/connect``)
  with ``{"filter": {"ids": [agent id]}}`` → ``{"data": {"affected": 1}}``. Fido filters
  by the id it resolved rather than by ``computerName``, so exactly that agent is acted on.

Errors are ``{"errors": [{"code", "detail", "title"}]}`` (401 "Authentication Failed").
Idempotent: an agent already ``disconnected`` (or ``disconnecting``) is reported "already
disconnected; nothing changed", and Undo then leaves it disconnected.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from integrations.responders.vendor_http import (
    BaseURL,
    Seconds,
    VendorAPI,
    clean_target,
    http_client,
    short_host,
)
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, Impact, ResponderResult, responders

log = logging.getLogger(__name__)

VENDOR = "SentinelOne"
AGENT_ID = re.compile(r"^[0-9]{1,30}$")
ISOLATED = ("disconnected", "disconnecting")
API = "/web/api/v2.1"


class SentinelOneIsolateOptions(BaseModel):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_url": "https://usea1-acme.sentinelone.net",
                    "api_token_env": "FIDO_S1_TOKEN",
                }
            ]
        },
    )

    base_url: BaseURL  # the management console, e.g. https://usea1-acme.sentinelone.net
    api_token_env: EnvName  # the variable holding the API token
    timeout: Seconds = 10.0


@responders.register("sentinelone_isolate_host")
class SentinelOneIsolateHost:
    """Disconnect a host from the network until Undo."""

    name = "sentinelone_isolate_host"
    target_kind: Kind = "host"
    label = "isolate"
    reversible = True
    impact = Impact.high
    Options = SentinelOneIsolateOptions

    def __init__(
        self, options: SentinelOneIsolateOptions, *, http: httpx.AsyncClient, token: SecretStr
    ) -> None:
        self.options = options
        self._token = token
        self.api = VendorAPI(
            VENDOR,
            http,
            timeout=options.timeout,
            secrets=lambda: [token.get_secret_value()],
            credentials=f"the API token in {options.api_token_env}",
        )

    @classmethod
    def build(cls, options: SentinelOneIsolateOptions, context: Context) -> SentinelOneIsolateHost:
        """The responder for ``options``, its API token read from the named variable."""
        token = SecretStr(context.secret(options.api_token_env))
        return cls(options, http=http_client(context), token=token)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            clean_target(target, refusing="isolate")
        except ResponderError as exc:
            return str(exc)
        return (
            f"Disconnect {target} from the network with SentinelOne — it can only reach the "
            "SentinelOne console until Undo"
        )

    async def execute(self, target: str) -> ResponderResult:
        doing = f"isolate {target} with SentinelOne"
        name = clean_target(target, refusing="isolate")
        agent = await self._find({"computerName": name}, name, doing=doing)
        if agent is None and (short := short_host(name)) is not None:
            agent = await self._find({"computerName": short}, short, doing=doing)
        if agent is None:
            raise ResponderError(f"Could not {doing}: no such host in SentinelOne")
        agent_id, computer = agent["id"], agent["computerName"]
        undo_data = {"agent_id": agent_id, "computer_name": computer}
        if agent.get("networkStatus") in ISOLATED:
            return ResponderResult(
                summary=f"{computer} (agent {agent_id}) was already disconnected from the "
                "network in SentinelOne; nothing changed",
                undo_data=undo_data | {"changed": False},
            )
        await self._act("disconnect", agent_id, doing=doing)
        log.info("sentinelone_isolate_host: disconnected %s (%s)", computer, agent_id)
        return ResponderResult(
            summary=f"Disconnected {computer} (agent {agent_id}) from the network with "
            "SentinelOne; it can only reach the console until Undo",
            undo_data=undo_data | {"changed": True},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        agent_id = undo_data.get("agent_id") if isinstance(undo_data, Mapping) else None
        changed = undo_data.get("changed") if isinstance(undo_data, Mapping) else None
        if not isinstance(agent_id, str) or not AGENT_ID.match(agent_id):
            raise ResponderError(
                f"Cannot undo isolating {target}: the undo data has no valid SentinelOne agent id"
            )
        if not isinstance(changed, bool):
            raise ResponderError(
                f"Cannot undo isolating {target}: the undo data does not say whether Fido "
                "isolated it"
            )
        computer = str(undo_data.get("computer_name") or target)
        if not changed:
            return ResponderResult(
                summary=f"Left {computer} disconnected: it was disconnected before Fido acted"
            )
        doing = f"reconnect {computer} with SentinelOne"
        agent = await self._find({"ids": agent_id}, None, doing=doing)
        if agent is None:
            raise ResponderError(f"Could not {doing}: agent {agent_id} is no longer in SentinelOne")
        if agent.get("networkStatus") not in ISOLATED:
            return ResponderResult(
                summary=f"{computer} was already connected to the network; nothing to undo"
            )
        await self._act("connect", agent_id, doing=doing)
        log.info("sentinelone_isolate_host: reconnected %s (%s)", computer, agent_id)
        return ResponderResult(
            summary=f"Reconnected {computer} (agent {agent_id}) to the network with SentinelOne"
        )

    async def _send(self, method: str, path: str, *, doing: str, **kwargs: Any) -> Any:
        response = await self.api.send(
            method,
            f"{self.options.base_url}{API}{path}",
            doing=doing,
            headers={"Authorization": f"ApiToken {self._token.get_secret_value()}"},
            **kwargs,
        )
        if not response.is_success:
            raise self.api.error(response, doing=doing)
        body = self.api.json(response, doing=doing)
        if not isinstance(body, Mapping) or "data" not in body:
            raise ResponderError(f"Could not {doing}: SentinelOne answered without data")
        return body["data"]

    async def _find(
        self, params: dict[str, str], computer: str | None, *, doing: str
    ) -> dict[str, Any] | None:
        """The most recently active agent matching ``params`` (and named ``computer``)."""
        data = await self._send("GET", "/agents", doing=doing, params=params | {"limit": "20"})
        agents = [
            a
            for a in (data if isinstance(data, list) else [])
            if isinstance(a, dict)
            and isinstance(a.get("id"), str)
            and AGENT_ID.match(a["id"])
            and isinstance(a.get("computerName"), str)
            and (computer is None or a["computerName"].casefold() == computer.casefold())
        ]
        if not agents:
            return None
        return max(agents, key=lambda a: str(a.get("lastActiveDate") or ""))

    async def _act(self, action: str, agent_id: str, *, doing: str) -> None:
        data = await self._send(
            "POST", f"/agents/actions/{action}", doing=doing, json={"filter": {"ids": [agent_id]}}
        )
        affected = data.get("affected") if isinstance(data, Mapping) else None
        if affected != 1:
            raise ResponderError(
                f"Could not {doing}: SentinelOne affected {affected!r} agents, not 1"
            )
