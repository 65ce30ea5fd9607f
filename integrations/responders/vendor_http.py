"""What the SaaS responders share: calling a vendor's HTTP API within a deadline, and
turning every way that can fail into one clear :class:`ResponderError`.

- **Transport**: every request runs under ``asyncio.timeout`` as well as httpx's own
  timeouts, so a vendor that accepts the connection and never answers fails within the
  configured ``timeout``. A hang says "did not answer within N s"; a refused or unreachable
  connection says so. httpx's exceptions are not chained: their messages carry URLs.
- **Statuses**: 429 → :class:`VendorRateLimited`, whose message says when to retry (the
  vendor's ``Retry-After``, or its own header) and which carries ``retry_after`` for the
  outbox; 401 → credentials refused; 403 → permission missing; 5xx → the vendor failed;
  3xx → misconfigured ``base_url`` (redirects are never followed); any other 4xx → the
  vendor's own words.
- **Vendor words** are whitespace-collapsed, cut to 200 characters, and every secret
  (token, client secret, access token) is replaced by ``***`` before they reach a message.
- **Targets** are checked before they go into a URL, a filter or an XML command: control
  and format characters, whitespace and over-long values are refused; path segments are
  percent-encoded and dot segments refused.
- **Base URLs** must be https, or http to a loopback address (tests, local proxies).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, Field

from integrations.retry_after import parse_retry_after
from pipeline.errors import ResponderError
from pipeline.plugins import Context

DETAIL_LIMIT = 200
TARGET_LIMIT = 256

Seconds = Annotated[float, Field(gt=0, le=120)]


def _check_base_url(value: str) -> str:
    try:
        url = httpx.URL(value.strip().rstrip("/"))
    except httpx.InvalidURL:
        raise ValueError("is not a URL") from None
    host = url.host
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if not host or not (url.scheme == "https" or (url.scheme == "http" and loopback)):
        raise ValueError("must be an https:// URL (plain http only to a loopback address)")
    if url.query or url.fragment or url.userinfo:
        raise ValueError("must not carry a query, a fragment or credentials")
    return str(url).rstrip("/")


BaseURL = Annotated[str, AfterValidator(_check_base_url)]


class VendorRateLimited(ResponderError):
    """The vendor said "too many requests"; ``retry_after`` seconds if it said when."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def http_client(context: Context) -> httpx.AsyncClient:
    """The shared client from the start-up context, or a client of our own without one."""
    if isinstance(context.http, httpx.AsyncClient):
        return context.http
    return httpx.AsyncClient(follow_redirects=False)


# -- targets ---------------------------------------------------------------------------


def clean_target(target: str, *, refusing: str) -> str:
    """``target`` without surrounding spaces, or ResponderError("Refused to <refusing> …")
    when it holds a control or format character (anywhere: a trailing newline too), other
    whitespace, or is empty or over-long."""
    value = target.strip(" ")
    problem = ""
    if not value:
        problem = "it is empty"
    elif len(value) > TARGET_LIMIT:
        problem = f"it is longer than {TARGET_LIMIT} characters"
    else:
        for char in value:
            category = unicodedata.category(char)
            if category[0] == "C":
                problem = f"it holds the control character U+{ord(char):04X}"
                break
            if category[0] == "Z":
                problem = "it holds whitespace"
                break
    if problem:
        shown = target if len(target) <= 80 else target[:79] + "…"
        raise ResponderError(f"Refused to {refusing} {shown!r}: {problem}")
    return value


def path_segment(value: str) -> str:
    """``value`` as one percent-encoded URL path segment ("/" included); dot segments,
    which a URL library may resolve to the parent path, are refused."""
    if value in (".", ".."):
        raise ResponderError(f"Refused {value!r}: not a name")
    return quote(value, safe="@")


def account_parts(value: str) -> tuple[str, str | None]:
    """(account, domain) of ``DOMAIN\\account``, ``account@domain`` or ``account``."""
    if "\\" in value:
        domain, _, account = value.rpartition("\\")
        return account, domain or None
    account, at, domain = value.partition("@")
    return account, (domain if at else None)


def short_host(value: str) -> str | None:
    """``laptop-1`` for ``laptop-1.corp.example``; None when ``value`` is no FQDN."""
    if "." not in value.strip(".") or value.replace(".", "").isdigit():
        return None
    return value.split(".", 1)[0]


# -- calling the vendor ----------------------------------------------------------------


def standard_retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def epoch_header_retry_after(header: str) -> Callable[[httpx.Response], float | None]:
    """``Retry-After`` when present, else ``header`` holding the epoch second to come back
    at (Okta's ``X-Rate-Limit-Reset``, CrowdStrike's ``X-RateLimit-RetryAfter``)."""

    def retry_after(response: httpx.Response) -> float | None:
        standard = standard_retry_after(response)
        if standard is not None:
            return standard
        try:
            at = float(response.headers.get(header, ""))
        except ValueError:
            return None
        return max(0.0, at - time.time()) if math.isfinite(at) else None

    return retry_after


def json_body(response: httpx.Response) -> Any:
    """The JSON body, or None when there is none or it is not JSON."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def excerpt(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` on one line, redacted, without control characters, at most 200 chars."""
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    text = redact(" ".join(text.split()), secrets)
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


class VendorAPI:
    """One vendor's HTTP API as the responders call it: deadlines, and failures mapped to
    ResponderError with the vendor's own words (``detail``) and no secrets in them."""

    def __init__(
        self,
        vendor: str,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        secrets: Callable[[], Iterable[str]] = lambda: (),
        detail: Callable[[httpx.Response], str] = lambda response: "",
        retry_after: Callable[[httpx.Response], float | None] = standard_retry_after,
        credentials: str = "the API credentials",
    ) -> None:
        self.vendor = vendor
        self.http = http
        self.timeout = timeout
        self.secrets = secrets
        self.detail = detail
        self.retry_after = retry_after
        self.credentials = credentials

    async def send(self, method: str, url: str, *, doing: str, **kwargs: Any) -> httpx.Response:
        """The vendor's response (any status); ResponderError when none came in time.
        ``doing`` completes "Could not …", e.g. "suspend alice in Okta"."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self.http.request(method, url, timeout=self.timeout, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            raise ResponderError(
                f"Could not {doing}: {self.vendor} did not answer within {self.timeout:g} s"
            ) from None
        except httpx.ConnectError:
            host = httpx.URL(url).host
            where = self.vendor if host in self.vendor else f"{self.vendor} at {host}"
            raise ResponderError(
                f"Could not {doing}: could not connect to {where} "
                "(connection refused or unreachable)"
            ) from None
        except httpx.HTTPError as exc:
            raise ResponderError(
                f"Could not {doing}: the request to {self.vendor} failed ({type(exc).__name__})"
            ) from None

    def words(self, response: httpx.Response) -> str:
        """The vendor's short explanation of ``response``, safe to show."""
        try:
            text = self.detail(response)
        except Exception:  # a malformed error body must not hide the status
            text = ""
        return excerpt(text, self.secrets())

    def error(self, response: httpx.Response, *, doing: str) -> ResponderError:
        """The ResponderError a non-2xx ``response`` means."""
        status = response.status_code
        words = self.words(response)
        said = f"HTTP {status}: {words}" if words else f"HTTP {status}"
        failed = f"Could not {doing}"
        if status == 429:
            wait = self.retry_after(response)
            when = f"retry after {math.ceil(wait)} s" if wait is not None else "retry in a minute"
            return VendorRateLimited(
                f"{failed}: {self.vendor} is rate limiting Fido ({said}); {when}",
                retry_after=wait,
            )
        if status == 401:
            return ResponderError(
                f"{failed}: {self.vendor} refused Fido's credentials ({said}); "
                f"check {self.credentials}"
            )
        if status == 403:
            return ResponderError(
                f"{failed}: {self.vendor} denied it ({said}); check that {self.credentials} "
                "may do this (docs/responders/README.md lists the permissions)"
            )
        if status >= 500:
            return ResponderError(f"{failed}: {self.vendor} failed ({said}); try again later")
        if status < 400:
            return ResponderError(
                f"{failed}: {self.vendor} answered with a redirect (HTTP {status}); check base_url"
            )
        return ResponderError(f"{failed}: {self.vendor} rejected the request ({said})")

    def json(self, response: httpx.Response, *, doing: str) -> Any:
        """The JSON body of a 2xx response; ResponderError when it is not JSON."""
        body = json_body(response)
        if body is None:
            raise ResponderError(
                f"Could not {doing}: {self.vendor} answered HTTP {response.status_code} "
                "without the JSON it documents"
            )
        return body


class TokenCache:
    """An OAuth2 access token, kept until shortly before it expires (a quarter of its life,
    at most 60 s early); one fetch at a time however many actions run at once."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[tuple[str, float]]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def current(self) -> str:
        return self._token or ""

    async def get(self, *, doing: str) -> str:
        """The token; ``fetch(doing)`` gets a new one (and raises ResponderError saying
        "Could not <doing>: …" when the vendor refuses)."""
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                token, lifetime = await self._fetch(doing)
                self._token = token
                self._renew_at = self._clock() + lifetime - min(60.0, lifetime / 4)
            return self._token

    def forget(self, token: str) -> None:
        """Drop ``token`` (the vendor refused it); the next ``get`` fetches another."""
        if self._token == token:
            self._token = None


async def send_with_bearer(
    api: VendorAPI,
    tokens: TokenCache,
    method: str,
    url: str,
    *,
    doing: str,
    **kwargs: Any,
) -> httpx.Response:
    """``api.send`` with ``Authorization: Bearer``; a 401 renews the token once (revoked
    or expired early) and tries again."""
    headers = dict(kwargs.pop("headers", None) or {})
    response: httpx.Response | None = None
    for _ in range(2):
        token = await tokens.get(doing=doing)
        headers["Authorization"] = f"Bearer {token}"
        response = await api.send(method, url, doing=doing, headers=headers, **kwargs)
        if response.status_code != 401:
            return response
        tokens.forget(token)
    assert response is not None
    return response


def token_lifetime(value: Any) -> float | None:
    """``expires_in`` as seconds, or None when it is missing or odd."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
