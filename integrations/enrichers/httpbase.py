"""What the HTTP lookups share besides sending (``integrations/http/`` sends, retries and
reads vendors' errors for every integration): reading a JSON answer strictly, and epoch
times.

Every vendor fails in its own words, but the pipeline only needs three answers: "not
known" (the lookup returns None), "slow down" (:class:`RateLimited`, with the wait the
vendor asked for) and "broken" (:class:`IntegrationError`). Each lookup holds one
:class:`~integrations.http.VendorHTTP` with the :data:`~integrations.http.ONCE` policy —
the lookup layer (``pipeline/lookups/enricher.py``) retries through the provider's breaker
and quota — and describes only its vendor's happy path and its own "not found" shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from integrations.http import (
    ONCE,
    VendorHTTP,
    decode_json,
    http_client,
    json_body,
    raise_for_status,
    redact,
)
from integrations.http import safe_words as error_detail
from integrations.retry_after import parse_retry_after
from pipeline.errors import IntegrationError

__all__ = [
    "decode_json",
    "epoch_to_iso",
    "error_detail",
    "expect_mapping",
    "http_client",
    "json_body",
    "parse_retry_after",
    "raise_for_status",
    "redact",
    "send",
]


async def send(
    http: httpx.AsyncClient, method: str, url: str, *, vendor: str, **kwargs: Any
) -> httpx.Response:
    """One try of ``method url``; IntegrationError when no answer came."""
    return await VendorHTTP(vendor, http, policy=ONCE).send(method, url, **kwargs)


def expect_mapping(value: Any, *, vendor: str, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object; else IntegrationError (never partial garbage)."""
    if not isinstance(value, Mapping):
        raise IntegrationError(f"{vendor}: unexpected response: {what} is not an object")
    return value


def epoch_to_iso(value: Any) -> str | None:
    """An ISO-8601 UTC timestamp from epoch seconds, or None for missing/odd values."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None
