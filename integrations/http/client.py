"""``VendorHTTP``: one vendor's API with the one retry policy (see ``integrations.http``)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, SecretStr

from integrations.http.errors import (
    Failure,
    Reason,
    VendorError,
    decode_json,
    describe,
    raise_for_status,
    read_failure,
    retry_after_of,
    safe_words,
    vendor_words,
)
from pipeline.errors import ConfigError

log = logging.getLogger("integrations.http")

Sleep = Callable[[float], Awaitable[None]]
Secrets = Callable[[], Iterable[SecretStr | str]]


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


# A vendor API's base URL option: https (plain http only to loopback, for tests and local
# proxies), no query, fragment or credentials, no trailing slash.
BaseURL = Annotated[str, AfterValidator(_check_base_url)]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard ``send`` tries. The defaults suit a poller that runs every minute or so."""

    attempts: int = 4  # tries in all, the first included
    base_delay: float = 1.0  # backoff before the 2nd try; doubles each time
    max_delay: float = 30.0  # no single backoff is longer
    max_retry_after: float = 120.0  # a longer Retry-After returns the 429 at once
    sleep: Sleep = field(default=asyncio.sleep, compare=False)
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("retry attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after) < 0:
            raise ConfigError("retry delays must not be negative")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based): exponential, capped, and
        jittered to between half and all of it."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return ceiling * (0.5 + self.jitter() / 2)


ONCE = RetryPolicy(attempts=1)  # one try: lookups (retried by the lookup layer), responders


class VendorHTTP:
    """One vendor's HTTP API: ``send`` with the retry policy, one error parser, and no
    secret in any message or log line. ``timeout`` (seconds) bounds each try as a whole,
    so a vendor that accepts the connection and never answers cannot hold a caller."""

    def __init__(
        self,
        vendor: str,
        http: httpx.AsyncClient,
        *,
        policy: RetryPolicy | None = None,
        timeout: float | None = None,
        secrets: Secrets = lambda: (),
        words: Callable[[httpx.Response], str] = vendor_words,
    ) -> None:
        if not isinstance(http, httpx.AsyncClient):
            raise ConfigError("no HTTP client in the start-up context")
        self.vendor = vendor
        self.http = http
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.secrets = secrets
        self._words = words

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The vendor's response, retried per the policy; VendorError when none came."""
        policy = self.policy
        try:
            sent = httpx.Request(method, url, headers=kwargs.get("headers"))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, TypeError, ValueError):
            raise VendorError(
                Failure(self.vendor, Reason.invalid, error="InvalidURL", request=method)
            ) from None
        request = describe(sent, self.secrets())
        label = f"{self.vendor}: {request}"
        for attempt in range(1, policy.attempts + 1):
            last = attempt == policy.attempts
            try:
                response = await self._try(method, url, **kwargs)
            except httpx.UnsupportedProtocol:  # no http(s) URL: asking again cannot help
                failure = Failure(
                    self.vendor, Reason.invalid, error="UnsupportedProtocol", request=request
                )
                raise VendorError(failure) from None
            except (TimeoutError, httpx.TransportError) as exc:
                failure = self._lost(exc, url, attempt, request)
                if last:
                    raise VendorError(failure) from None
                delay = policy.backoff(attempt)
                log.info("%s: %s, retrying in %.1f s", label, failure.error, delay)
                await policy.sleep(delay)
                continue
            except httpx.HTTPError as exc:  # a malformed request: asking again cannot help
                raise VendorError(
                    Failure(self.vendor, Reason.invalid, error=type(exc).__name__, request=request)
                ) from None
            response.extensions["fido_tries"] = attempt
            status = response.status_code
            if status == 429:
                wait = retry_after_of(response)
                if last or (wait is not None and wait > policy.max_retry_after):
                    return response
                delay = policy.backoff(attempt) if wait is None else wait
            elif status >= 500 and not last:
                delay = policy.backoff(attempt)
            else:
                return response
            log.info("%s: HTTP %d, retrying in %.1f s", label, status, delay)
            await response.aclose()
            await policy.sleep(delay)
        raise AssertionError("unreachable")  # the last try always returns or raises

    async def _try(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.timeout is None:
            return await self.http.request(method, url, **kwargs)
        async with asyncio.timeout(self.timeout):
            return await self.http.request(method, url, timeout=self.timeout, **kwargs)

    def _lost(self, exc: Exception, url: str, tries: int, request: str) -> Failure:
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            reason = Reason.timeout
        elif isinstance(exc, httpx.ConnectError):
            reason = Reason.unreachable
        else:
            reason = Reason.transport
        name = "Timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        host = httpx.URL(url).host
        return Failure(self.vendor, reason, tries=tries, error=name, host=host, request=request)

    def words(self, response: httpx.Response) -> str:
        """The vendor's short explanation of ``response``, safe to show."""
        return safe_words(response, self.secrets(), words=self._words)

    def failure(self, response: httpx.Response) -> Failure | None:
        """What ``response`` means; None for a success."""
        return read_failure(response, vendor=self.vendor, secrets=self.secrets(), words=self._words)

    def check(self, response: httpx.Response) -> httpx.Response:
        """``response`` when it is a success; else RateLimited (429) or VendorError."""
        raise_for_status(response, vendor=self.vendor, secrets=self.secrets(), words=self._words)
        return response

    def json(self, response: httpx.Response) -> Any:
        """The body as JSON, or IntegrationError naming the vendor and status."""
        return decode_json(response, vendor=self.vendor)


def http_client(context: Any) -> httpx.AsyncClient:
    """The shared client from the start-up context; ConfigError when there is none."""
    http = getattr(context, "http", None)
    if not isinstance(http, httpx.AsyncClient):
        raise ConfigError("no HTTP client in the start-up context")
    return http
