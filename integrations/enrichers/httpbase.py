"""Shared plumbing for the HTTP lookups: one way to send, to map failures, to read JSON.

Every vendor fails in its own words, but the pipeline only needs three answers: "not
known" (the lookup returns None), "slow down" (:class:`RateLimited`, with the wait the
vendor asked for) and "broken" (:class:`IntegrationError`). Keeping that mapping here means
each enricher only describes its vendor's happy path and its own "not found" shape.

Messages name the vendor and the HTTP status and may quote the vendor's short error text,
but never the request URL or headers, and any credential echoed back is scrubbed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from integrations.retry_after import parse_retry_after  # noqa: F401  (re-exported)
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from pipeline.plugins import Context

_DETAIL_LIMIT = 200


async def send(
    http: httpx.AsyncClient, method: str, url: str, *, vendor: str, **kwargs: Any
) -> httpx.Response:
    """``http.request`` with transport failures turned into IntegrationError.

    The exception is not chained: httpx's messages carry the URL, and a vendor's URL may
    one day carry something private; the type name is enough to tell a timeout from DNS.
    """
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise IntegrationError(f"{vendor}: request timed out") from None
    except httpx.HTTPError as exc:
        raise IntegrationError(f"{vendor}: request failed ({type(exc).__name__})") from None


def raise_for_status(
    response: httpx.Response, *, vendor: str, secrets: Iterable[SecretStr | str] = ()
) -> None:
    """Raise the error an HTTP status means; return quietly for 1xx/2xx.

    429 → RateLimited(retry_after from Retry-After); 401/403 → IntegrationError saying the
    credentials were refused; 5xx → IntegrationError; any other 4xx → IntegrationError with
    the vendor's own short message. A 3xx is an error too: the clients do not follow
    redirects, and an API that redirects (to a login page, say) is misconfigured.
    """
    status = response.status_code
    if status < 300:
        return
    if status < 400:
        raise IntegrationError(f"{vendor}: unexpected redirect (HTTP {status})")
    detail = error_detail(response, secrets=secrets)
    suffix = f": {detail}" if detail else ""
    if status == 429:
        raise RateLimited(
            f"{vendor}: rate limited (HTTP 429){suffix}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status in (401, 403):
        raise IntegrationError(f"{vendor}: credentials refused (HTTP {status}){suffix}")
    if status >= 500:
        raise IntegrationError(f"{vendor}: server error (HTTP {status}){suffix}")
    raise IntegrationError(f"{vendor}: request rejected (HTTP {status}){suffix}")


def decode_json(response: httpx.Response, *, vendor: str) -> Any:
    """The response body as JSON, or IntegrationError naming the vendor and status."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IntegrationError(
            f"{vendor}: malformed JSON in HTTP {response.status_code} response"
        ) from None


def expect_mapping(value: Any, *, vendor: str, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object; else IntegrationError (never partial garbage)."""
    if not isinstance(value, Mapping):
        raise IntegrationError(f"{vendor}: unexpected response: {what} is not an object")
    return value


def json_body(response: httpx.Response) -> Any:
    """The JSON body, or None when there is none or it is not JSON (for error bodies)."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def error_detail(response: httpx.Response, *, secrets: Iterable[SecretStr | str] = ()) -> str:
    """The vendor's short explanation of a failure, redacted and truncated, or ""."""
    body = json_body(response)
    text = _message_in(body) if body is not None else ""
    if not text and "text/plain" in response.headers.get("content-type", ""):
        text = response.text
    text = " ".join(text.split())
    text = redact(text, secrets)
    if len(text) > _DETAIL_LIMIT:
        text = text[: _DETAIL_LIMIT - 1] + "…"
    return text


def _message_in(body: Any) -> str:
    """The message in the error shapes our vendors use:
    ``{"error": {"code", "message"}}`` (VirusTotal), ``{"errors": [{"detail"}]}``
    (AbuseIPDB), ``{"errors": [{"description"}]}`` (Jamf), ``{"message"}`` (GreyNoise,
    MISP), ``{"error": "invalid_client"}`` (OAuth)."""
    if not isinstance(body, Mapping):
        return ""
    error = body.get("error")
    if isinstance(error, Mapping):
        parts = [str(error[k]) for k in ("code", "message") if error.get(k)]
        return ": ".join(parts)
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        for key in ("detail", "description", "code"):
            if first.get(key):
                return str(first[key])
    for key in ("message", "error_description", "error", "name"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def redact(text: str, secrets: Iterable[SecretStr | str]) -> str:
    """``text`` with every credential replaced by ``***``."""
    for secret in secrets:
        raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if raw:
            text = text.replace(raw, "***")
    return text


def epoch_to_iso(value: Any) -> str | None:
    """An ISO-8601 UTC timestamp from epoch seconds, or None for missing/odd values."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def http_client(context: Context) -> httpx.AsyncClient:
    """The shared client from the start-up context; ConfigError when there is none."""
    if not isinstance(context.http, httpx.AsyncClient):
        raise ConfigError("no HTTP client in the start-up context")
    return context.http
