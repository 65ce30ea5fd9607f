"""What the API pollers share: sending with retries, and the time watermark they resume
from.

Sending one HTTP request to a vendor API, retrying what is worth retrying.

The API pollers run on a schedule, so a poll that gives up is simply tried again at the
next interval; retrying here only smooths over the blips that would otherwise turn into
an error in the log every few minutes:

- **429** (rate limited): wait what the vendor asked (``Retry-After`` in seconds or as an
  HTTP date, or a vendor-specific header), then try again. When the vendor asks for a
  longer wait than ``max_retry_after``, waiting inside a poll would only hold the
  scheduler, so it gives up at once with :class:`RateLimited` carrying the wait.
- **5xx and transport errors** (connection refused, reset, timeout): exponential backoff
  with jitter, so many pollers recovering at once do not hit the vendor in lock-step.

Every other answer (2xx, 3xx, 4xx) is returned: what a 401 or 404 means is the caller's
business. After ``attempts`` tries it raises :class:`RateLimited` (429) or
:class:`IntegrationError`; messages name the method and path, never the query string or
headers (where tokens live). The sleep function and the jitter are injectable so tests
neither wait nor flake.

Resuming: the vendors list alerts ordered by their last-update time, and several alerts
can share one timestamp. A poller that resumed from "after the last time" would lose the
ones at that time it had not reached yet; one that resumed from "at or after" would deliver
some twice. :class:`Watermark` keeps the last time *and* the ids already delivered at it,
so the poller asks for "at or after" and skips exactly those.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, Field

from integrations.retry_after import parse_retry_after  # noqa: F401  (re-exported)
from pipeline.errors import ConfigError, IntegrationError, RateLimited

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
RetryAfter = Callable[[httpx.Response], float | None]


def _api_url(value: str) -> str:
    try:
        url = httpx.URL(value.rstrip("/"))
    except httpx.InvalidURL:
        raise ValueError("is not a URL") from None
    loopback = url.host in ("localhost", "::1") or url.host.startswith("127.")
    if not url.host or (url.scheme != "https" and not (url.scheme == "http" and loopback)):
        raise ValueError("must be an https:// URL")
    return str(url)


# A vendor API's base URL option: https (plain http only to loopback, for local proxies),
# without a trailing slash.
ApiBaseUrl = Annotated[str, AfterValidator(_api_url)]
# How many items one request asks for: 1 to the vendors' maximum, 1000.
PageSize = Annotated[int, Field(ge=1, le=1000, strict=True)]
# How far back the very first poll looks, in hours.
LookbackHours = Annotated[float, Field(ge=0, strict=True)]


def vendor_message(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """The vendor's own short words about a failure, for an error message: the first of
    ``errors[].message`` (CrowdStrike), ``errors[].title``/``detail`` (SentinelOne),
    ``error_description``/``message`` (OAuth and others); redacted and truncated."""
    try:
        body = response.json()
    except ValueError:
        return ""
    text = ""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        text = next((str(first[k]) for k in ("message", "title", "detail") if first.get(k)), "")
    elif isinstance(body, Mapping):
        text = next(
            (str(body[k]) for k in ("error_description", "message", "error") if body.get(k)), ""
        )
    text = " ".join(text.split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= 200 else text[:199] + "…"


def retry_after_header(response: httpx.Response) -> float | None:
    """The standard ``Retry-After`` header of a response, in seconds."""
    return parse_retry_after(response.headers.get("Retry-After"))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults suit a poller that runs every minute or so."""

    attempts: int = 4  # tries in all, the first included
    base_delay: float = 1.0  # backoff before the 2nd try; doubles each time
    max_delay: float = 30.0  # no single backoff is longer
    max_retry_after: float = 120.0  # a longer Retry-After gives up at once
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


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    policy: RetryPolicy | None = None,
    what: str = "HTTP API",
    retry_after: RetryAfter = retry_after_header,
) -> httpx.Response:
    """Send ``request`` (again, when worth it) and return the first response that is
    neither 429 nor 5xx; ``what`` names the vendor in messages and logs."""
    policy = policy or RetryPolicy()
    label = f"{what}: {request.method} {request.url.path}"
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            response = await client.send(request)
        except httpx.TransportError as exc:
            if last:
                raise IntegrationError(
                    f"{label} failed after {attempt} tries ({type(exc).__name__})"
                ) from None
            delay = policy.backoff(attempt)
            log.info("%s: %s, retrying in %.1fs", label, type(exc).__name__, delay)
            await policy.sleep(delay)
            continue
        status = response.status_code
        if status == 429:
            wait = retry_after(response)
            if last or (wait is not None and wait > policy.max_retry_after):
                raise RateLimited(
                    f"{label}: rate limited (HTTP 429) after {attempt} tries",
                    retry_after=wait,
                )
            delay = policy.backoff(attempt) if wait is None else wait
            log.info("%s: rate limited, retrying in %.1fs", label, delay)
            await policy.sleep(delay)
            continue
        if status >= 500:
            if last:
                raise IntegrationError(f"{label}: HTTP {status} after {attempt} tries")
            delay = policy.backoff(attempt)
            log.info("%s: HTTP %d, retrying in %.1fs", label, status, delay)
            await policy.sleep(delay)
            continue
        return response
    raise AssertionError("unreachable")  # the last attempt always returns or raises


_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def timestamp_key(value: object) -> tuple[int, int] | None:
    """A sortable (epoch seconds, nanoseconds) for an ISO 8601 time, or None.

    The vendors write up to nanoseconds (``2024-05-01T12:00:00.123456789Z``), more than
    ``datetime`` keeps, and not always with the same number of digits, so neither
    ``fromisoformat`` nor comparing the strings is right. A time without an offset is UTC.
    """
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone is None or zone.upper() == "Z" else zone
    try:
        moment = datetime.fromisoformat(whole.replace(" ", "T") + zone)
    except ValueError:
        return None
    return int(moment.timestamp()), int((fraction or "0").ljust(9, "0"))


def iso_timestamp(value: str) -> str:
    """``value`` if it is an ISO 8601 time; ConfigError otherwise. Used before a cursor
    time goes into a vendor's query language, so nothing else can."""
    if timestamp_key(value) is None:
        raise ConfigError(f"not an ISO 8601 time: {value[:40]!r}")
    return value.strip()


@dataclass(frozen=True)
class Watermark:
    """The newest update time delivered so far and the ids delivered at exactly it."""

    time: str | None = None
    ids: frozenset[str] = frozenset()

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> Watermark:
        time = cursor.get("updated_at")
        ids = cursor.get("ids_at_time") or []
        if not isinstance(time, str) or timestamp_key(time) is None:
            return cls()
        return cls(time, frozenset(str(i) for i in ids))

    def to_cursor(self) -> dict[str, Any]:
        if self.time is None:
            return {}
        return {"updated_at": self.time, "ids_at_time": sorted(self.ids)}

    def delivered(self, item_id: str, item_time: object) -> bool:
        """Whether this version of the item (its id at its update time) went out already."""
        key = timestamp_key(item_time)
        return key is not None and key == timestamp_key(self.time) and item_id in self.ids

    def advance(self, items: Iterable[tuple[str, object]]) -> Watermark:
        """The watermark after delivering ``items`` (id, update time); items whose time
        cannot be read are delivered but do not move it."""
        time, ids = self.time, set(self.ids)
        best = timestamp_key(time)
        for item_id, item_time in items:
            key = timestamp_key(item_time)
            if key is None:
                log.warning("item %s has no readable update time %r", item_id, item_time)
                continue
            if best is None or key > best:
                time, best, ids = str(item_time).strip(), key, {item_id}
            elif key == best:
                ids.add(item_id)
        return Watermark(time, frozenset(ids))
