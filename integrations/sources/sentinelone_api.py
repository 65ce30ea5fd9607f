"""The ``sentinelone_api`` source: poll a SentinelOne console's threats.

::

    sources:
      s1:
        type: sentinelone_api
        detector: sentinelone
        interval_seconds: 60
        options:
          base_url: https://usea1-acme.sentinelone.net   # the console URL
          api_token_env: S1_API_TOKEN                      # a service user's API token
          page_size: 100                                   # 1–1000
          initial_lookback_hours: 24                       # the very first poll only

Each fetch asks ``GET /web/api/v2.1/threats`` (``Authorization: ApiToken <token>``) for
threats with ``updatedAt__gte=<cursor time>``, ``sortBy=updatedAt&sortOrder=asc``, and
follows SentinelOne's own ``pagination.nextCursor`` from page to page. The payload is the
response body (``{"data": [threat, …], "pagination": {"nextCursor", "totalItems"}}``)
exactly as the console sent it, for the ``sentinelone`` detector; only when the page
repeats threats already delivered (at the cursor time) is it re-encoded without them.

The cursor is the newest ``threatInfo.updatedAt`` delivered and the threat ids delivered
at that instant (so asking "at or after" neither loses a threat sharing that time nor
repeats one), plus, while a query has more pages, SentinelOne's page token and the time the
query started from, so a restart in the middle continues the same query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from integrations.http import VendorHTTP
from integrations.sources.http_retry import (
    ApiBaseUrl,
    LookbackHours,
    PageSize,
    RetryPolicy,
    Watermark,
    iso_timestamp,
)
from pipeline.errors import IntegrationError
from pipeline.plugins import Batch, Context, EnvName, sources

log = logging.getLogger(__name__)

THREATS_PATH = "/web/api/v2.1/threats"


def updated_at(threat: dict[str, Any]) -> Any:
    """When a threat last changed: ``threatInfo.updatedAt`` in API 2.1 (2.0 had it on
    the top level)."""
    info = threat.get("threatInfo")
    if isinstance(info, dict) and info.get("updatedAt"):
        return info["updatedAt"]
    return threat.get("updatedAt")


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"base_url": "https://usea1-acme.sentinelone.net", "api_token_env": "S1_API_TOKEN"}
            ]
        },
    )

    base_url: ApiBaseUrl  # the console URL
    api_token_env: EnvName  # the variable holding a service user's API token
    page_size: PageSize = 100
    initial_lookback_hours: LookbackHours = 24.0  # the very first poll only


SentinelOneOptions = Options  # the name the methods are annotated with


@sources.register("sentinelone_api")
class SentinelOneThreatsSource:
    """Polls SentinelOne threats by update time; see the module docstring."""

    Options = Options

    def __init__(
        self,
        name: str,
        detector: str,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        api_token: SecretStr,
        page_size: int = 100,
        initial_lookback_hours: float = 24.0,
        retry: RetryPolicy | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.detector = detector
        policy = retry or RetryPolicy()
        self.api = VendorHTTP(
            f"sentinelone_api {name}", http, policy=policy, secrets=lambda: [api_token]
        )
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._token = api_token
        self.page_size = page_size
        self.lookback = timedelta(hours=max(0.0, float(initial_lookback_hours)))
        self._now = now

    @classmethod
    def build(cls, options: SentinelOneOptions, context: Context) -> SentinelOneThreatsSource:
        return cls(
            context.name,
            context.source_detector().name,
            http=context.http,
            base_url=options.base_url,
            api_token=SecretStr(context.secret(options.api_token_env)),
            page_size=options.page_size,
            initial_lookback_hours=options.initial_lookback_hours,
        )

    def __repr__(self) -> str:
        return f"SentinelOneThreatsSource({self.name!r}, {self.base_url!r})"

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        mark = Watermark.from_cursor(cursor)
        page = cursor.get("page") if isinstance(cursor.get("page"), str) else None
        since = str(cursor.get("since") or "") if page else ""
        since = since or mark.time or self._start()
        response = await self._threats(since, page)
        if response.status_code == 400 and page is not None:
            # the console no longer knows the page token: start the query again from
            # the watermark (nothing is lost; repeats at the watermark are skipped)
            log.warning("%s: page token refused, querying again from the cursor", self.name)
            since, page = mark.time or since, None
            response = await self._threats(since, None)
        body = self._body(response)
        threats = body.get("data") or []
        if not isinstance(threats, list):
            raise IntegrationError(f"sentinelone_api {self.name}: data is not a list")
        kept = [
            t
            for t in threats
            if isinstance(t, dict) and not mark.delivered(str(t.get("id")), updated_at(t))
        ]
        advanced = mark.advance((str(t.get("id")), updated_at(t)) for t in kept)
        pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
        next_page = pagination.get("nextCursor") if pagination else None
        new_cursor = advanced.to_cursor()
        if isinstance(next_page, str) and next_page:
            new_cursor.update(page=next_page, since=since)
        payloads: list[bytes] = []
        if kept and len(kept) == len(threats):
            payloads = [response.content]
        elif kept:
            payloads = [json.dumps({**body, "data": kept}, ensure_ascii=False).encode()]
        log.debug(
            "%s: %d threats (%d already delivered)", self.name, len(kept), len(threats) - len(kept)
        )
        return Batch(payloads, new_cursor, more="page" in new_cursor)

    def _start(self) -> str:
        start = self._now().astimezone(UTC) - self.lookback
        return start.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    async def _threats(self, since: str, page: str | None) -> httpx.Response:
        params: dict[str, Any] = {
            "updatedAt__gte": iso_timestamp(since),
            "sortBy": "updatedAt",
            "sortOrder": "asc",
            "limit": self.page_size,
        }
        if page is not None:
            params["cursor"] = page
        return await self.api.send(
            "GET",
            self.base_url + THREATS_PATH,
            params=params,
            headers={
                "Authorization": f"ApiToken {self._token.get_secret_value()}",
                "Accept": "application/json",
            },
        )

    def _body(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        message = self.api.words(response) or "no message"
        if status in (401, 403):
            raise IntegrationError(
                f"sentinelone_api {self.name}: SentinelOne refused the API token "
                f"(HTTP {status}: {message}); is it valid, unexpired, and allowed to view "
                "threats?"
            )
        self.api.check(response)
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise IntegrationError(f"sentinelone_api {self.name}: the answer is not JSON")
        return body
