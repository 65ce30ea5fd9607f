from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from integrations.enrichers.httpbase import (
    epoch_to_iso,
    error_detail,
    parse_retry_after,
    raise_for_status,
    redact,
)
from pipeline.errors import IntegrationError, RateLimited

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("Wed, 01 May 2024 12:01:30 GMT", 90.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_epoch_to_iso() -> None:
    assert epoch_to_iso(1714564800) == "2024-05-01T12:00:00Z"
    assert epoch_to_iso(1714564800.5) == "2024-05-01T12:00:00.500000Z"
    for odd in (None, 0, -1, "1714564800", True, 10**20):
        assert epoch_to_iso(odd) is None


def test_redact() -> None:
    assert redact("key abc123 and abc123", [SecretStr("abc123"), ""]) == "key *** and ***"


def test_error_detail_is_short_and_flat() -> None:
    response = httpx.Response(400, json={"message": "line one\nline two " + "x" * 500})
    detail = error_detail(response)
    assert detail.startswith("line one line two x") and len(detail) == 200
    assert detail.endswith("…")
    html = httpx.Response(500, text="<html>boom</html>", headers={"content-type": "text/html"})
    assert error_detail(html) == ""


@pytest.mark.parametrize("status", [200, 201, 204])
def test_success_statuses_pass(status: int) -> None:
    raise_for_status(httpx.Response(status), vendor="acme")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (302, "acme: unexpected redirect \\(HTTP 302\\)"),
        (401, "acme: credentials refused \\(HTTP 401\\)"),
        (403, "acme: credentials refused \\(HTTP 403\\)"),
        (404, "acme: request rejected \\(HTTP 404\\)"),
        (500, "acme: server error \\(HTTP 500\\)"),
        (504, "acme: server error \\(HTTP 504\\)"),
    ],
)
def test_failure_statuses(status: int, message: str) -> None:
    with pytest.raises(IntegrationError, match=message) as caught:
        raise_for_status(httpx.Response(status), vendor="acme")
    assert not isinstance(caught.value, RateLimited)
