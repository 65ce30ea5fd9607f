"""How a vendor's failure is read, once, for every integration: what the status means
(:class:`Reason`), the vendor's own words from its documented error body
(:func:`vendor_words`), the wait a 429 asks for (:func:`retry_after_of`), and the secrets
kept out of all of it. :func:`read_failure` puts them in a :class:`Failure`;
:func:`raise_for_status` raises it (:class:`VendorError`, or RateLimited for a 429)."""

from __future__ import annotations

import json
import math
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from pydantic import SecretStr

from integrations.retry_after import parse_retry_after
from pipeline.errors import IntegrationError, RateLimited

DETAIL_LIMIT = 200
# the request headers whose values are credentials, redacted from whatever the vendor echoes
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-apikey", "x-api-key", "api-key", "key",
     "x-pan-key", "cookie"}
)  # fmt: skip
# vendors' headers holding the epoch second to come back at, when Retry-After is absent
EPOCH_RETRY_HEADERS = ("X-RateLimit-RetryAfter", "X-Rate-Limit-Reset")


class Reason(StrEnum):
    """Why a call to a vendor failed."""

    timeout = "timeout"  # no answer in time
    unreachable = "unreachable"  # connection refused, DNS, no route
    transport = "transport"  # the connection broke otherwise
    invalid = "invalid"  # the request cannot be made (a malformed URL): a setting is wrong
    rate_limited = "rate_limited"  # 429
    credentials = "credentials"  # 401
    denied = "denied"  # 403
    server = "server"  # 5xx
    redirect = "redirect"  # 3xx (redirects are never followed)
    rejected = "rejected"  # any other 4xx


_PHRASES = {
    Reason.rate_limited: "rate limited",
    Reason.credentials: "credentials refused",
    Reason.denied: "credentials refused",
    Reason.server: "server error",
    Reason.redirect: "unexpected redirect",
    Reason.rejected: "request rejected",
}


@dataclass(frozen=True)
class Failure:
    """One failed call, read once: ``words`` are the vendor's own, redacted."""

    vendor: str
    reason: Reason
    status: int | None = None
    words: str = ""
    retry_after: float | None = None  # 429: seconds the vendor asked us to wait
    tries: int = 1
    error: str = ""  # the transport error's type name
    host: str = ""
    request: str = ""  # "GET /api/v1/users/…": method and path, never the query

    @property
    def retryable(self) -> bool:
        """Whether asking again later can help (not for a refused request)."""
        return self.reason in (
            Reason.timeout, Reason.unreachable, Reason.transport, Reason.server,
            Reason.rate_limited,
        )  # fmt: skip

    def summary(self) -> str:
        """``misp: POST /attributes/restSearch: server error (HTTP 503) after 4 tries:
        Service unavailable``."""
        who = f"{self.vendor}: {self.request}" if self.request else self.vendor
        after = f" after {self.tries} tries" if self.tries > 1 else ""
        if self.status is None:
            what = "request timed out" if self.reason is Reason.timeout else "request failed"
            cause = f" ({self.error})" if self.error and self.reason is not Reason.timeout else ""
            return f"{who}: {what}{cause}{after}"
        said = f": {self.words}" if self.words and self.reason is not Reason.redirect else ""
        return f"{who}: {_PHRASES[self.reason]} (HTTP {self.status}){after}{said}"


class VendorError(IntegrationError):
    """A vendor call failed; ``failure`` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.summary())
        self.failure = failure
        self.retryable = failure.retryable


def reason_of(status: int) -> Reason | None:
    """What an HTTP status means, or None for a success."""
    if status < 300:
        return None
    if status < 400:
        return Reason.redirect
    if status == 429:
        return Reason.rate_limited
    if status >= 500:
        return Reason.server
    return {401: Reason.credentials, 403: Reason.denied}.get(status, Reason.rejected)


# -- reading what the vendor said ------------------------------------------------------


def json_body(response: httpx.Response) -> Any:
    """The JSON body, or None when there is none or it is not JSON."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def decode_json(response: httpx.Response, *, vendor: str) -> Any:
    """The body as JSON, or IntegrationError naming the vendor and status."""
    body = json_body(response)
    if body is None:
        raise IntegrationError(f"{vendor}: malformed JSON in HTTP {response.status_code} response")
    return body


def retry_after_of(response: httpx.Response) -> float | None:
    """Seconds to wait before asking again: ``Retry-After``, else a vendor's epoch header."""
    standard = parse_retry_after(response.headers.get("Retry-After"))
    if standard is not None:
        return standard
    for header in EPOCH_RETRY_HEADERS:
        try:
            at = float(response.headers.get(header, ""))
        except ValueError:
            continue
        if math.isfinite(at):
            return max(0.0, at - time.time())
    return None


def vendor_words(response: httpx.Response) -> str:
    """The vendor's own explanation of a failure, from its documented error shape:

    - Okta: ``{"errorCode", "errorSummary", "errorCauses": [{"errorSummary"}]}``;
    - Microsoft Graph and VirusTotal: ``{"error": {"code", "message"}}``;
    - OAuth2 token endpoints (Entra ID, Falcon, Jamf): ``{"error", "error_description"}``;
    - CrowdStrike: ``{"errors": [{"code", "message"}]}``; SentinelOne ``errors[].title``
      and ``detail``; AbuseIPDB ``errors[].detail``; Jamf ``errors[].code``/``description``;
    - ``{"message"}`` (GreyNoise, MISP and many more);
    - PAN-OS XML: ``<response status="error" code="403"><msg>…</msg></response>``;
    - else a ``text/plain`` body. HTML error pages say nothing useful: "".
    """
    body = json_body(response)
    if isinstance(body, Mapping):
        return _json_words(body)
    if body is None and response.content.lstrip()[:9] == b"<response":
        try:
            return xml_words(ET.fromstring(response.content))
        except ET.ParseError:
            return ""
    if body is None and "text/plain" in response.headers.get("content-type", ""):
        return response.text
    return ""


def _json_words(body: Mapping[str, Any]) -> str:
    if isinstance(body.get("errorSummary"), str):
        text = ": ".join(str(body[k]) for k in ("errorCode", "errorSummary") if body.get(k))
        causes = body.get("errorCauses")
        said = [
            str(c["errorSummary"])
            for c in (causes if isinstance(causes, list) else [])
            if isinstance(c, Mapping) and c.get("errorSummary")
        ]
        return text + (f" ({'; '.join(said)})" if said else "")
    error = body.get("error")
    if isinstance(error, Mapping):
        return ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
    if isinstance(error, str) and error:
        description = body.get("error_description")
        first = description.splitlines()[0] if isinstance(description, str) else ""
        return f"{error}: {first}" if first else error
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first_error = errors[0]
        if first_error.get("message"):
            code = first_error.get("code")
            message = str(first_error["message"])
            return f"{code}: {message}" if code else message
        if first_error.get("title"):
            return ": ".join(str(first_error[k]) for k in ("title", "detail") if first_error.get(k))
        for key in ("detail", "description"):
            if first_error.get(key):
                code = first_error.get("code")
                text = str(first_error[key])
                return f"{code}: {text}" if isinstance(code, str) and code else text
    for key in ("message", "name"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def xml_words(root: ET.Element) -> str:
    """``code 403: Invalid Credential`` from a PAN-OS ``<response>`` (its msg/error text)."""
    message = " ".join(
        " ".join(t.strip() for t in element.itertext() if t.strip())
        for element in root.iter()
        if element.tag in ("msg", "error")
    )
    code = root.get("code")
    return f"code {code}: {message}" if code and message else message or (code or "")


def redact(text: str, secrets: Iterable[SecretStr | str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if raw:
            text = text.replace(raw, "***")
    return text


def excerpt(text: str, secrets: Iterable[SecretStr | str] = ()) -> str:
    """``text`` on one line, redacted, without control characters, at most 200 chars."""
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    text = redact(" ".join(text.split()), secrets)
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def describe(request: httpx.Request, secrets: Iterable[SecretStr | str] = ()) -> str:
    """``GET /v1/alerts``: the method and path for messages and logs, never the query; a
    secret in the path (VirusTotal's ``/users/{key}``) is replaced by ``***``."""
    return redact(f"{request.method} {request.url.path}", [*secrets, *request_secrets(request)])


def request_secrets(request: httpx.Request | None) -> list[str]:
    """The credentials ``request`` carried in its headers (and the token after a scheme)."""
    found: list[str] = []
    for name, value in request.headers.items() if request is not None else ():
        if name.lower() in CREDENTIAL_HEADERS and value:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and len(token) >= 8:
                found.append(token)
    return sorted(found, key=len, reverse=True)  # "Bearer t0k" before "t0k"


def safe_words(
    response: httpx.Response,
    secrets: Iterable[SecretStr | str] = (),
    *,
    words: Callable[[httpx.Response], str] = vendor_words,
) -> str:
    """The vendor's words about ``response``: one line, 200 characters, every secret (those
    named and the request's credential headers) replaced by ``***``."""
    try:
        text = words(response)
    except Exception:  # a malformed error body must not hide the status
        text = ""
    return excerpt(text, [*secrets, *request_secrets(_request_of(response))])


def read_failure(
    response: httpx.Response,
    *,
    vendor: str,
    secrets: Iterable[SecretStr | str] = (),
    words: Callable[[httpx.Response], str] = vendor_words,
) -> Failure | None:
    """What a response means, or None for a success (2xx)."""
    secrets = list(secrets)
    reason = reason_of(response.status_code)
    if reason is None:
        return None
    sent = _request_of(response)
    return Failure(
        vendor,
        reason,
        status=response.status_code,
        words=safe_words(response, secrets, words=words),
        retry_after=retry_after_of(response) if reason is Reason.rate_limited else None,
        tries=int(response.extensions.get("fido_tries", 1)),
        request=describe(sent, secrets) if sent is not None else "",
    )


def raise_for_status(
    response: httpx.Response,
    *,
    vendor: str,
    secrets: Iterable[SecretStr | str] = (),
    words: Callable[[httpx.Response], str] = vendor_words,
) -> None:
    """Quiet for a success; else RateLimited (429, with the wait) or VendorError."""
    failure = read_failure(response, vendor=vendor, secrets=secrets, words=words)
    if failure is None:
        return
    if failure.reason is Reason.rate_limited:
        raise RateLimited(failure.summary(), retry_after=failure.retry_after)
    raise VendorError(failure)


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:  # a response built by hand has no request
        return None
