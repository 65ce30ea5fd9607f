"""The ``defender_xdr_api`` source: poll Microsoft Defender XDR alerts through Microsoft
Graph (security API v2), and what it shares with the ``sentinel_api`` source.

::

    sources:
      defender:
        type: defender_xdr_api
        detector: m365_defender
        interval_seconds: 60
        options:
          tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47   # or contoso.onmicrosoft.com
          client_id: 6731de76-14a6-49ae-97bc-6eba6914391e   # the app registration
          client_secret_env: DEFENDER_CLIENT_SECRET
          page_size: 100                                     # 1–1000 ($top)
          initial_lookback_hours: 24                         # the very first poll only
          # login_url / graph_url: other clouds (login.microsoftonline.us, graph.microsoft.us)

The app registration needs the Graph application permission ``SecurityAlert.Read.All``.
Each fetch:

1. gets a token with the OAuth2 client-credentials flow ("Microsoft identity platform and
   the OAuth 2.0 client credentials flow"): ``POST {login_url}/{tenant}/oauth2/v2.0/token``
   with the form ``client_id``, ``client_secret``, ``scope=https://graph.microsoft.com/
   .default``, ``grant_type=client_credentials`` → ``{"token_type": "Bearer",
   "expires_in": 3599, "access_token"}``; kept until shortly before it expires and renewed
   once when Graph answers 401;
2. lists alerts ("List alerts_v2": ``GET {graph_url}/v1.0/security/alerts_v2?$filter=
   lastUpdateDateTime ge <cursor time>&$top=<page_size>``) and follows
   ``@odata.nextLink`` from page to page. That API filters on ``lastUpdateDateTime`` but
   does not sort (``$orderby`` is not among its documented parameters; the newest alerts
   come first), so nothing here relies on the order. An alert arriving during a query
   moves the others down a place: at worst one comes twice (a duplicate by its id), none
   is lost, and the newcomer is read from the watermark the next time.

The payload is the response body (``{"@odata.context", "value": [alert, …],
"@odata.nextLink"?}``) exactly as Graph sent it, for the ``m365_defender`` detector; only
when a page repeats alerts already delivered (at the cursor time) is it re-encoded without
them.

The cursor is the newest ``lastUpdateDateTime`` delivered and the alert ids delivered at
that instant (see ``Watermark``: the query asks "at or after", so an alert sharing that
time is neither lost nor repeated), plus, while a query has more pages, the next link and
the time the query started from, so a restart in the middle continues the same query. A
next link the service no longer accepts (400/404/410) starts the query again from that
start time: nothing is lost, and what comes again is recognised as a duplicate by its id.
A next link pointing anywhere but the configured API URL is refused (the token is never
sent elsewhere).
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

from integrations.http import BaseURL, TokenCache, VendorHTTP, token_lifetime, with_bearer
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

GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DOMAIN = r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$"
LOGIN_URL = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com"
ALERTS_PATH = "/v1.0/security/alerts_v2"
TOKEN_MARGIN = 60.0  # renew at most this many seconds before the token expires
GONE_PAGE = (400, 404, 410)  # a next link the service no longer knows


class EntraAppOptions(BaseModel):
    """The app registration both Microsoft pollers sign in with, and their paging."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=f"{GUID}|{DOMAIN}", max_length=253)  # GUID or domain
    client_id: str = Field(pattern=GUID)  # the app registration's application (client) id
    client_secret_env: EnvName  # the variable holding the client secret
    login_url: BaseURL = LOGIN_URL
    page_size: PageSize = 100
    initial_lookback_hours: LookbackHours = 24.0  # the very first poll only


class Options(EntraAppOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
                    "client_secret_env": "DEFENDER_CLIENT_SECRET",
                }
            ]
        },
    )

    graph_url: ApiBaseUrl = GRAPH_URL


DefenderOptions = Options  # the name the methods are annotated with


class EntraPoller:
    """A list of a Microsoft API read with an Entra ID app's token: filtered by last-update
    time, paged by next links (see the module docstring). Subclasses name the kind, the
    list's URL and parameters, and an item's id and update time."""

    kind = ""
    vendor = ""
    next_key = "@odata.nextLink"
    permission = ""

    def __init__(
        self,
        name: str,
        detector: str,
        *,
        http: httpx.AsyncClient,
        api_url: str,
        tenant_id: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str,
        login_url: str = LOGIN_URL,
        client_secret_env: str = "",
        page_size: int = 100,
        initial_lookback_hours: float = 24.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.detector = detector
        self.api = VendorHTTP(
            f"{self.kind} {name}", http, policy=retry or RetryPolicy(), secrets=self._secrets
        )
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.login_url = login_url.rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.scope = scope
        self._secret = client_secret
        self._secret_env = client_secret_env
        self.page_size = page_size
        self.lookback = timedelta(hours=max(0.0, float(initial_lookback_hours)))
        self._now = now
        self.tokens = TokenCache(self._fetch_token, clock=clock, most_early=TOKEN_MARGIN)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.api_url!r})"

    # -- what a subclass states ------------------------------------------------------------

    @staticmethod
    def app_arguments(
        options: EntraAppOptions, context: Context, *, api_url: str
    ) -> dict[str, Any]:
        """What every Entra-authenticated poller is built with, from its options."""
        return {
            "name": context.name,
            "detector": context.source_detector().name,
            "http": context.http,
            "api_url": api_url,
            "tenant_id": options.tenant_id,
            "client_id": options.client_id,
            "client_secret": SecretStr(context.secret(options.client_secret_env)),
            "client_secret_env": options.client_secret_env,
            "scope": f"{api_url.rstrip('/')}/.default",
            "login_url": options.login_url,
            "page_size": options.page_size,
            "initial_lookback_hours": options.initial_lookback_hours,
        }

    def first_url(self) -> str:
        raise NotImplementedError

    def first_params(self, since: str) -> dict[str, Any]:
        raise NotImplementedError

    def item_id(self, item: dict[str, Any]) -> str:
        return str(item.get("id"))

    def item_time(self, item: dict[str, Any]) -> Any:
        raise NotImplementedError

    # -- fetching ------------------------------------------------------------------------

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        mark = Watermark.from_cursor(cursor)
        page = cursor.get("page") if isinstance(cursor.get("page"), str) else None
        since = str(cursor.get("since") or "") if page else ""
        since = since or mark.time or self._start()
        response = await self._list(since, page)
        if response.status_code in GONE_PAGE and page is not None:
            # the service no longer knows the next link: ask the same question again
            log.warning("%s: next link refused, querying again from its start", self.name)
            page = None
            response = await self._list(since, None)
        body = self._body(response)
        items = body.get("value")
        if not isinstance(items, list):
            raise IntegrationError(f"{self.kind} {self.name}: the answer has no value list")
        kept = [
            i
            for i in items
            if isinstance(i, dict) and not mark.delivered(self.item_id(i), self.item_time(i))
        ]
        advanced = mark.advance((self.item_id(i), self.item_time(i)) for i in kept)
        new_cursor = advanced.to_cursor()
        next_page = body.get(self.next_key)
        if isinstance(next_page, str) and next_page:
            new_cursor.update(page=self._own(next_page), since=since)
        payloads: list[bytes] = []
        if kept and len(kept) == len(items):
            payloads = [response.content]
        elif kept:
            payloads = [json.dumps({**body, "value": kept}, ensure_ascii=False).encode()]
        log.debug(
            "%s: %d items (%d already delivered)", self.name, len(kept), len(items) - len(kept)
        )
        return Batch(payloads, new_cursor, more="page" in new_cursor)

    def _start(self) -> str:
        start = self._now().astimezone(UTC) - self.lookback
        return start.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _own(self, link: str) -> str:
        """``link`` when it points at the configured API; IntegrationError otherwise."""
        try:
            url, base = httpx.URL(link), httpx.URL(self.api_url)
            same = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        except (httpx.InvalidURL, TypeError, ValueError):
            same = False
        if not same:
            raise IntegrationError(
                f"{self.kind} {self.name}: refused to follow a next link outside {self.api_url}"
            )
        return link

    # -- HTTP ----------------------------------------------------------------------------

    async def _list(self, since: str, page: str | None) -> httpx.Response:
        if page is not None:
            url, params = self._own(page), None
        else:
            url, params = self.first_url(), self.first_params(iso_timestamp(since))
        return await with_bearer(
            self.api.send,
            self.tokens,
            "GET",
            url,
            doing="list",
            params=params,
            headers={"Accept": "application/json"},
        )

    def _body(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            hint = (
                "a fresh token was refused too"
                if status == 401
                else f"does the app registration have {self.permission}?"
            )
            raise IntegrationError(
                f"{self.kind} {self.name}: {self.vendor} refused the request "
                f"(HTTP {status}: {self._message(response)}); {hint}"
            )
        self.api.check(response)
        return self._json(response)

    async def _fetch_token(self, doing: str = "") -> tuple[str, float]:
        response = await self.api.send(
            "POST",
            f"{self.login_url}/{self.tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": self.client_id,
                "client_secret": self._secret.get_secret_value(),
                "scope": self.scope,
                "grant_type": "client_credentials",
            },
            headers={"Accept": "application/json"},
        )
        if response.status_code in (400, 401, 403):
            where = f" (secret in {self._secret_env})" if self._secret_env else ""
            raise IntegrationError(
                f"{self.kind} {self.name}: Entra ID refused the credentials of the app "
                f"registration {self.client_id}{where} in tenant {self.tenant_id} "
                f"(HTTP {response.status_code}: {self._message(response)})"
            )
        self.api.check(response)
        body = self._json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise IntegrationError(f"{self.kind} {self.name}: no access_token in the answer")
        lifetime = token_lifetime(body.get("expires_in")) or 3599.0
        log.debug("%s: new access token, valid %ss", self.name, lifetime)
        return token, lifetime

    def _secrets(self) -> list[SecretStr | str]:
        return [self._secret, self.tokens.current]

    def _message(self, response: httpx.Response) -> str:
        return self.api.words(response) or "no error message"

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise IntegrationError(f"{self.kind} {self.name}: the answer is not a JSON object")
        return body


@sources.register("defender_xdr_api")
class DefenderXDRAlertsSource(EntraPoller):
    """Polls Defender XDR alerts (Graph security alerts v2); see the module docstring."""

    Options = Options
    kind = "defender_xdr_api"
    vendor = "Microsoft Graph"
    permission = "the SecurityAlert.Read.All application permission"

    @classmethod
    def build(cls, options: DefenderOptions, context: Context) -> DefenderXDRAlertsSource:
        return cls(**cls.app_arguments(options, context, api_url=options.graph_url))

    def first_url(self) -> str:
        return self.api_url + ALERTS_PATH

    def first_params(self, since: str) -> dict[str, Any]:
        return {"$filter": f"lastUpdateDateTime ge {since}", "$top": self.page_size}

    def item_time(self, item: dict[str, Any]) -> Any:
        return item.get("lastUpdateDateTime")
