"""What the SaaS responders share: calling a vendor's API through the one HTTP layer
(``integrations/http/``) and saying every way that can fail as one clear
:class:`ResponderError` that begins "Could not <what was being done>: …".

- **Transport**: each call is one try (the action's caller decides whether to act again),
  bounded by the responder's ``timeout`` as a whole, so a vendor that accepts the
  connection and never answers fails within it: "did not answer within N s". A refused or
  unreachable connection says so.
- **Statuses** (read by the one error parser): 429 → :class:`VendorRateLimited`, whose
  message says when to retry and which carries ``retry_after``; 401 → credentials
  refused; 403 → permission missing; 5xx → the vendor failed; 3xx → misconfigured
  ``base_url`` (redirects are never followed); any other 4xx → the vendor's own words,
  whitespace-collapsed, cut to 200 characters, every secret replaced by ``***``.
- **Targets** are checked before they go into a URL, a filter or an XML command: control
  and format characters, whitespace and over-long values are refused; path segments are
  percent-encoded and dot segments refused.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import Field

from integrations.http import (
    ONCE,
    BaseURL,
    Reason,
    Secrets,
    TokenCache,
    VendorError,
    VendorHTTP,
    excerpt,
    json_body,
    token_lifetime,
    vendor_words,
    with_bearer,
)
from pipeline.errors import ResponderError
from pipeline.plugins import Context

__all__ = [
    "BaseURL",
    "Seconds",
    "TokenCache",
    "VendorAPI",
    "VendorRateLimited",
    "account_parts",
    "clean_target",
    "excerpt",
    "http_client",
    "json_body",
    "path_segment",
    "send_with_bearer",
    "short_host",
    "token_lifetime",
]

TARGET_LIMIT = 256

Seconds = Annotated[float, Field(gt=0, le=120)]


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


class VendorAPI:
    """One vendor's HTTP API as the responders call it: one try within ``timeout``, and
    failures as ResponderError with the vendor's own words and no secrets in them."""

    def __init__(
        self,
        vendor: str,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        secrets: Secrets = lambda: (),
        words: Callable[[httpx.Response], str] = vendor_words,
        credentials: str = "the API credentials",
        client: str = "client credentials",
    ) -> None:
        self.vendor = vendor
        self.timeout = timeout
        self.credentials = credentials
        self.client = client  # what the token endpoint calls Fido: "API client", …
        self.calls = VendorHTTP(
            vendor, http, policy=ONCE, timeout=timeout, secrets=secrets, words=words
        )

    @property
    def http(self) -> httpx.AsyncClient:
        return self.calls.http

    async def send(self, method: str, url: str, *, doing: str, **kwargs: Any) -> httpx.Response:
        """The vendor's response (any status); ResponderError when none came in time.
        ``doing`` completes "Could not …", e.g. "suspend alice in Okta"."""
        try:
            return await self.calls.send(method, url, **kwargs)
        except VendorError as exc:
            failure = exc.failure
            if failure.reason is Reason.timeout:
                said = f"{self.vendor} did not answer within {self.timeout:g} s"
            elif failure.reason is Reason.unreachable:
                where = (
                    self.vendor
                    if failure.host in self.vendor
                    else f"{self.vendor} at {failure.host}"
                )
                said = f"could not connect to {where} (connection refused or unreachable)"
            else:
                said = f"the request to {self.vendor} failed ({failure.error})"
            raise ResponderError(f"Could not {doing}: {said}") from None

    def words(self, response: httpx.Response) -> str:
        """The vendor's short explanation of ``response``, safe to show."""
        return self.calls.words(response)

    def error(self, response: httpx.Response, *, doing: str) -> ResponderError:
        """The ResponderError a non-2xx ``response`` means."""
        failure = self.calls.failure(response)
        failed = f"Could not {doing}"
        if failure is None:
            return ResponderError(f"{failed}: {self.vendor} answered HTTP {response.status_code}")
        status, reason = response.status_code, failure.reason
        said = f"HTTP {status}: {failure.words}" if failure.words else f"HTTP {status}"
        if reason is Reason.rate_limited:
            wait = failure.retry_after
            when = f"retry after {math.ceil(wait)} s" if wait is not None else "retry in a minute"
            return VendorRateLimited(
                f"{failed}: {self.vendor} is rate limiting Fido ({said}); {when}",
                retry_after=wait,
            )
        if reason is Reason.credentials:
            return ResponderError(
                f"{failed}: {self.vendor} refused Fido's credentials ({said}); "
                f"check {self.credentials}"
            )
        if reason is Reason.denied:
            return ResponderError(
                f"{failed}: {self.vendor} denied it ({said}); check that {self.credentials} "
                "may do this (docs/responders/README.md lists the permissions)"
            )
        if reason is Reason.server:
            return ResponderError(f"{failed}: {self.vendor} failed ({said}); try again later")
        if reason is Reason.redirect:
            return ResponderError(
                f"{failed}: {self.vendor} answered with a redirect (HTTP {status}); check base_url"
            )
        return ResponderError(f"{failed}: {self.vendor} rejected the request ({said})")

    async def client_token(
        self, url: str, form: dict[str, str], *, doing: str, refused: tuple[int, ...], fix: str
    ) -> tuple[str, float]:
        """An OAuth2 client-credentials token: (access_token, its lifetime in seconds).
        A status in ``refused`` means the client was refused: the message says to check
        ``fix``."""
        response = await self.send("POST", url, doing=doing, data=form)
        if response.status_code in refused:
            raise ResponderError(
                f"Could not {doing}: {self.vendor} refused Fido's {self.client} (HTTP "
                f"{response.status_code}: {self.words(response)}); check {fix}"
            )
        if not response.is_success:
            raise self.error(response, doing=doing)
        body = self.json(response, doing=doing)
        token = body.get("access_token") if isinstance(body, Mapping) else None
        lifetime = token_lifetime(body.get("expires_in")) if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token or lifetime is None:
            raise ResponderError(
                f"Could not {doing}: {self.vendor}'s token answer has no access_token or expires_in"
            )
        return token, lifetime

    def json(self, response: httpx.Response, *, doing: str) -> Any:
        """The JSON body of a 2xx response; ResponderError when it is not JSON."""
        body = json_body(response)
        if body is None:
            raise ResponderError(
                f"Could not {doing}: {self.vendor} answered HTTP {response.status_code} "
                "without the JSON it documents"
            )
        return body


async def send_with_bearer(
    api: VendorAPI,
    tokens: TokenCache,
    method: str,
    url: str,
    *,
    doing: str,
    **kwargs: Any,
) -> httpx.Response:
    """``api.send`` with ``Authorization: Bearer``; a 401 renews the token once."""
    send = functools.partial(api.send, doing=doing)
    return await with_bearer(send, tokens, method, url, doing=doing, **kwargs)
