"""One way to call a vendor's HTTP API, for every poller, lookup and responder.

:class:`VendorHTTP` wraps the shared ``httpx.AsyncClient`` for one vendor. Its ``send``
makes the request under one :class:`RetryPolicy`:

- **429** (rate limited): wait what the vendor asked — ``Retry-After`` in seconds or as an
  HTTP date, or the vendors' epoch headers (Okta ``X-Rate-Limit-Reset``, CrowdStrike
  ``X-RateLimit-RetryAfter``) — then try again; a wait longer than ``max_retry_after``, or
  no try left, returns the 429 at once so the caller can defer instead of blocking.
- **5xx, timeouts and transport errors**: exponential backoff, capped at ``max_delay`` and
  jittered, so many callers recovering at once do not hit the vendor in lock-step.
- **everything else** (2xx, 3xx, 4xx) is returned at once: a 4xx is the vendor refusing
  the request itself, and asking again cannot help.

``send`` returns the last response whatever its status: what a 404 means is the caller's
business. It raises :class:`VendorError` only when no response came at all. The one error
parser, :meth:`VendorHTTP.failure`, reads the vendor's own words from every documented
error shape (:func:`vendor_words`) into a :class:`Failure`; :meth:`VendorHTTP.check` turns
a failed response into IntegrationError (RateLimited for a 429).

Who retries: a poller runs unattended on a schedule, so it retries here (the default
policy). A lookup is retried by the lookup layer (``pipeline/lookups/enricher.py``), where
every try passes the provider's circuit breaker and quota, so it sends with :data:`ONCE`.
A responder sends once too, within its ``timeout``: a containment is never repeated behind
the analyst's back; its failure (with any ``retry_after``) is recorded on the action.

Secrets: messages and logs name the vendor, the method and the URL path, never the query
string, the headers or the body. The vendor's words are cut to one line of 200 characters
and every secret is replaced by ``***``: those the caller names, and the value of every
credential header the request carried (``Authorization``, ``x-apikey``, …). httpx's
exceptions are never chained: their messages carry URLs.
"""

from integrations.http.client import (
    ONCE,
    BaseURL,
    RetryPolicy,
    Secrets,
    Sleep,
    VendorHTTP,
    http_client,
)
from integrations.http.errors import (
    CREDENTIAL_HEADERS,
    DETAIL_LIMIT,
    Failure,
    Reason,
    VendorError,
    decode_json,
    describe,
    excerpt,
    json_body,
    raise_for_status,
    read_failure,
    reason_of,
    redact,
    request_secrets,
    retry_after_of,
    safe_words,
    vendor_words,
    xml_words,
)
from integrations.http.tokens import TokenCache, token_lifetime, with_bearer

__all__ = [
    "CREDENTIAL_HEADERS",
    "DETAIL_LIMIT",
    "ONCE",
    "BaseURL",
    "Failure",
    "Reason",
    "RetryPolicy",
    "Secrets",
    "Sleep",
    "TokenCache",
    "VendorError",
    "VendorHTTP",
    "decode_json",
    "describe",
    "excerpt",
    "http_client",
    "json_body",
    "raise_for_status",
    "read_failure",
    "reason_of",
    "redact",
    "request_secrets",
    "retry_after_of",
    "safe_words",
    "token_lifetime",
    "vendor_words",
    "with_bearer",
    "xml_words",
]
