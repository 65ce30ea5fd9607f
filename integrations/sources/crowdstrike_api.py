"""The ``crowdstrike_api`` source: poll CrowdStrike Falcon's Alerts API.

::

    sources:
      falcon:
        type: crowdstrike_api
        detector: crowdstrike
        interval_seconds: 60
        options:
          base_url: https://api.crowdstrike.com   # or api.us-2 / api.eu-1 / …
          client_id: 0123456789abcdef0123456789abcdef
          client_secret_env: FALCON_CLIENT_SECRET
          page_size: 100                          # 1–1000
          initial_lookback_hours: 24              # the very first poll only

The API client needs the "Alerts: Read" scope. Each fetch:

1. gets an OAuth2 token (``POST /oauth2/token``, form ``client_id``/``client_secret``),
   cached until a minute before ``expires_in`` and renewed once when a call answers 401;
2. lists alert composite ids (``GET /alerts/queries/alerts/v2``) with the FQL filter
   ``updated_timestamp:>='<cursor time>'`` sorted ``updated_timestamp.asc``;
3. drops the ids already delivered at the cursor time (see ``Watermark``) and fetches the
   rest (``POST /alerts/entities/alerts/v2`` with ``{"composite_ids": [...]}``).

The payload is that entities response body exactly as CrowdStrike sent it
(``{"meta": …, "resources": [alert, …], "errors": []}``), for the ``crowdstrike``
detector. The cursor is the newest ``updated_timestamp`` delivered and the composite ids
delivered at it, so a restart neither loses nor repeats an alert; paging is by that
cursor rather than by ``offset`` (an alert updated between two pages would move and shift
every offset), except inside a run of more alerts than a page sharing one timestamp. The
first poll starts ``initial_lookback_hours`` back: older alerts are history, not news.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.http import TokenCache, VendorHTTP, token_lifetime, with_bearer
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

DEFAULT_BASE_URL = "https://api.crowdstrike.com"
QUERY_PATH = "/alerts/queries/alerts/v2"
ENTITIES_PATH = "/alerts/entities/alerts/v2"
TOKEN_PATH = "/oauth2/token"
TOKEN_MARGIN = 60.0  # renew at most this many seconds before the token expires


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_url": "https://api.crowdstrike.com",
                    "client_id": "0123456789abcdef0123456789abcdef",
                    "client_secret_env": "FALCON_CLIENT_SECRET",
                }
            ]
        },
    )

    base_url: ApiBaseUrl = DEFAULT_BASE_URL  # or api.us-2 / api.eu-1 / …
    client_id: str = Field(min_length=1, pattern=r"\S")  # the API client's id (not secret)
    client_secret_env: EnvName  # the variable holding the API client's secret
    page_size: PageSize = 100
    initial_lookback_hours: LookbackHours = 24.0  # the very first poll only


CrowdStrikeOptions = Options  # the name the methods are annotated with


@sources.register("crowdstrike_api")
class CrowdStrikeAlertsSource:
    """Polls Falcon alerts by update time; see the module docstring."""

    Options = Options

    def __init__(
        self,
        name: str,
        detector: str,
        *,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        page_size: int = 100,
        initial_lookback_hours: float = 24.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.detector = detector
        self.api = VendorHTTP(
            f"crowdstrike_api {name}", http, policy=retry or RetryPolicy(), secrets=self._secrets
        )
        self.http = http
        self.client_id = client_id.strip()
        self._secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.lookback = timedelta(hours=max(0.0, float(initial_lookback_hours)))
        self._now = now
        self.tokens = TokenCache(self._fetch_token, clock=clock, most_early=TOKEN_MARGIN)

    @classmethod
    def build(cls, options: CrowdStrikeOptions, context: Context) -> CrowdStrikeAlertsSource:
        return cls(
            context.name,
            context.source_detector().name,
            http=context.http,
            client_id=options.client_id,
            client_secret=SecretStr(context.secret(options.client_secret_env)),
            base_url=options.base_url,
            page_size=options.page_size,
            initial_lookback_hours=options.initial_lookback_hours,
        )

    def __repr__(self) -> str:
        return f"CrowdStrikeAlertsSource({self.name!r}, {self.base_url!r})"

    # -- fetching ------------------------------------------------------------------------

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        mark = Watermark.from_cursor(cursor)
        offset = int(cursor.get("offset") or 0) if mark.time else 0
        since = mark.time or self._start()
        query = await self._call(
            "GET",
            QUERY_PATH,
            params={
                "filter": f"updated_timestamp:>='{iso_timestamp(since)}'",
                "sort": "updated_timestamp.asc",
                "limit": self.page_size,
                "offset": offset,
            },
        )
        ids = [i for i in self._resources(query, "alert query") if isinstance(i, str)]
        meta = query.get("meta")
        pagination = meta.get("pagination") if isinstance(meta, dict) else None
        total = pagination.get("total") if isinstance(pagination, dict) else None
        more = offset + len(ids) < total if isinstance(total, int) else len(ids) >= self.page_size
        fresh = [i for i in ids if i not in mark.ids]
        payloads: list[bytes] = []
        advanced = mark
        if fresh:
            response = await self._call_raw("POST", ENTITIES_PATH, json={"composite_ids": fresh})
            body = self._json(response, "alert entities")
            alerts = [a for a in self._resources(body, "alert entities") if isinstance(a, dict)]
            advanced = mark.advance(
                (str(a.get("composite_id") or a.get("id")), a.get("updated_timestamp"))
                for a in alerts
            )
            payloads = [response.content] if alerts else []
            log.debug("%s: %d alerts (%d listed)", self.name, len(alerts), len(ids))
        next_offset = self._next_offset(mark, advanced, ids, offset)
        cursor = advanced.to_cursor() | ({"offset": next_offset} if next_offset else {})
        # without progress (nothing new, no offset moved) stop rather than ask again at once
        progress = advanced != mark or next_offset != offset
        return Batch(payloads, cursor, more=more and progress)

    @staticmethod
    def _next_offset(before: Watermark, after: Watermark, ids: list[str], offset: int) -> int:
        """Where to list from next time at the same watermark.

        Normally 0: the next query starts at the watermark time and the ids already
        delivered there are skipped. Only when the watermark did not move although the
        whole page is delivered (more alerts than a page share one timestamp) does the
        offset step over that page, so the poll always makes progress.
        """
        if before.time is None or after.time != before.time:
            return 0
        return offset + len(ids) if set(ids) <= after.ids else offset

    def _start(self) -> str:
        start = self._now().astimezone(UTC) - self.lookback
        return start.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- HTTP ----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._call_raw(method, path, **kwargs)
        return self._json(response, path)

    async def _call_raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One authorised API call; on 401 the token is renewed and the call made again."""
        url, accept = self.base_url + path, {"Accept": "application/json"}
        response = await with_bearer(
            self.api.send, self.tokens, method, url, headers=accept, **kwargs
        )
        if response.status_code in (401, 403):
            hint = (
                "a fresh token was refused too"
                if response.status_code == 401
                else ("does the API client have the Alerts: Read scope?")
            )
            raise IntegrationError(
                f"crowdstrike_api {self.name}: CrowdStrike refused {path} "
                f"(HTTP {response.status_code}: {self._message(response)}); {hint}"
            )
        self.api.check(response)
        return response

    async def _fetch_token(self, doing: str = "") -> tuple[str, float]:
        response = await self.api.send(
            "POST",
            self.base_url + TOKEN_PATH,
            data={"client_id": self.client_id, "client_secret": self._secret.get_secret_value()},
            headers={"Accept": "application/json"},
        )
        if response.status_code in (400, 401, 403):
            raise IntegrationError(
                f"crowdstrike_api {self.name}: CrowdStrike refused the API client "
                f"credentials for client_id {self.client_id} "
                f"(HTTP {response.status_code}: {self._message(response)})"
            )
        self.api.check(response)
        body = self._json(response, TOKEN_PATH)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise IntegrationError(f"crowdstrike_api {self.name}: no access_token in the answer")
        lifetime = token_lifetime(body.get("expires_in")) or 1799.0
        log.debug("%s: new access token, valid %ss", self.name, lifetime)
        return token, lifetime

    def _secrets(self) -> list[SecretStr | str]:
        return [self._secret, self.tokens.current]

    def _message(self, response: httpx.Response) -> str:
        return self.api.words(response) or "no error message"

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise IntegrationError(f"crowdstrike_api {self.name}: {what}: not a JSON object")
        for error in body.get("errors") or []:
            log.warning("%s: %s reported an error: %s", self.name, what, error)
        return body

    def _resources(self, body: dict[str, Any], what: str) -> list[Any]:
        resources = body.get("resources")
        if resources is None:
            return []
        if not isinstance(resources, list):
            raise IntegrationError(f"crowdstrike_api {self.name}: {what}: resources not a list")
        return resources
