"""The ``sentinel_api`` source: poll Microsoft Sentinel incidents through Azure Resource
Manager.

::

    sources:
      sentinel:
        type: sentinel_api
        detector: microsoft_sentinel
        interval_seconds: 60
        options:
          tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
          client_id: 6731de76-14a6-49ae-97bc-6eba6914391e   # the app registration
          client_secret_env: SENTINEL_CLIENT_SECRET
          subscription_id: d0cfe6b2-9ac0-4464-9919-dccaee2e48c0
          resource_group: soc-rg
          workspace: soc-workspace                           # the Log Analytics workspace
          page_size: 100                                     # 1–1000 ($top)
          initial_lookback_hours: 24                         # the very first poll only
          # login_url / management_url: other clouds (management.usgovcloudapi.net)

The app registration needs the "Microsoft Sentinel Reader" role on the workspace. Each
fetch gets a token exactly as ``defender_xdr_api`` does (client credentials, scope
``https://management.azure.com/.default``) and lists incidents ("Incidents - List"):
``GET {management_url}/subscriptions/{subscription}/resourceGroups/{group}/providers/
Microsoft.OperationalInsights/workspaces/{workspace}/providers/Microsoft.SecurityInsights/
incidents?api-version=2023-02-01&$filter=properties/lastModifiedTimeUtc ge <cursor time>
&$orderby=properties/lastModifiedTimeUtc asc&$top=<page_size>``, following ``nextLink``
(which carries a ``$skipToken``). The payload is the response body (``{"value":
[incident, …], "nextLink"?}``) as Azure sent it, for the ``microsoft_sentinel`` detector.
Cursor, restarts, ties and next-link checks are ``defender_xdr``'s (``EntraPoller``); an
incident's id is its ARM ``name`` (the incident's GUID), its time
``properties.lastModifiedTimeUtc``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from integrations.sources.defender_xdr import GUID, EntraAppOptions, EntraPoller
from integrations.sources.http_retry import ApiBaseUrl
from pipeline.plugins import Context, sources

MANAGEMENT_URL = "https://management.azure.com"
API_VERSION = "2023-02-01"
MODIFIED = "properties/lastModifiedTimeUtc"


class Options(EntraAppOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
                    "client_secret_env": "SENTINEL_CLIENT_SECRET",
                    "subscription_id": "d0cfe6b2-9ac0-4464-9919-dccaee2e48c0",
                    "resource_group": "soc-rg",
                    "workspace": "soc-workspace",
                }
            ]
        },
    )

    subscription_id: str = Field(pattern=GUID)
    # Azure's rules for the names: letters, digits and -._() (no trailing dot); the
    # workspace letters, digits and inner hyphens
    resource_group: str = Field(pattern=r"^[-\w._()]*[-\w_()]$", max_length=90)
    workspace: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]+[A-Za-z0-9]$", max_length=90)
    management_url: ApiBaseUrl = MANAGEMENT_URL
    api_version: str = Field(default=API_VERSION, pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")


SentinelOptions = Options  # the name the methods are annotated with


@sources.register("sentinel_api")
class SentinelIncidentsSource(EntraPoller):
    """Polls Sentinel incidents by last modification; see the module docstring."""

    Options = Options
    kind = "sentinel_api"
    vendor = "Azure Resource Manager"
    next_key = "nextLink"
    permission = "the Microsoft Sentinel Reader role on the workspace"

    def __init__(
        self, *args: Any, workspace_path: str, api_version: str = API_VERSION, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.workspace_path = workspace_path
        self.api_version = api_version

    @classmethod
    def build(cls, options: SentinelOptions, context: Context) -> SentinelIncidentsSource:
        return cls(
            **cls.app_arguments(options, context, api_url=options.management_url),
            workspace_path=(
                f"/subscriptions/{options.subscription_id}/resourceGroups/"
                f"{options.resource_group}/providers/Microsoft.OperationalInsights/"
                f"workspaces/{options.workspace}"
            ),
            api_version=options.api_version,
        )

    def first_url(self) -> str:
        return f"{self.api_url}{self.workspace_path}/providers/Microsoft.SecurityInsights/incidents"

    def first_params(self, since: str) -> dict[str, Any]:
        return {
            "api-version": self.api_version,
            "$filter": f"{MODIFIED} ge {since}",
            "$orderby": f"{MODIFIED} asc",
            "$top": self.page_size,
        }

    def item_id(self, item: dict[str, Any]) -> str:
        return str(item.get("name") or item.get("id"))

    def item_time(self, item: dict[str, Any]) -> Any:
        properties = item.get("properties")
        return properties.get("lastModifiedTimeUtc") if isinstance(properties, dict) else None
