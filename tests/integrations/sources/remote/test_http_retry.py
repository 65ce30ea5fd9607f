"""The pollers' shared plumbing: Retry-After, backoff, giving up, vendor messages, and the
time watermark with its nanosecond timestamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from integrations.sources.http_retry import (
    RetryPolicy,
    Watermark,
    iso_timestamp,
    parse_retry_after,
    send,
    timestamp_key,
    vendor_message,
)
from pipeline.errors import ConfigError, IntegrationError, RateLimited
from tests.integrations.sources.remote.helpers import Sleeps

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
URL = "https://api.example.test/v1/alerts?token=query-secret"


def client(*answers: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    """A client whose server gives ``answers`` in turn (the last one from then on)."""
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def reply(code: int, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, json={"code": code}, headers=headers)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("Sun, 06 Nov 1994 08:49:37", 0.0),  # no zone: GMT, long past
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


async def test_transport_errors_are_retried_with_growing_waits() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=4, sleep=sleeps, jitter=lambda: 0.0)
    async with client(refused, refused, reply(200)) as http:
        response = await send(http, http.build_request("GET", URL), policy=policy)
    assert response.status_code == 200
    assert sleeps.waits == [0.5, 1.0]  # base 1 s doubled, jitter at its minimum (half)


async def test_giving_up_names_the_path_but_not_the_query() -> None:
    sleeps = Sleeps()
    async with client(refused) as http:
        with pytest.raises(IntegrationError) as caught:
            await send(
                http,
                http.build_request("GET", URL),
                policy=RetryPolicy(attempts=3, sleep=sleeps),
                what="vendor",
            )
    message = str(caught.value)
    assert message == "vendor: GET /v1/alerts failed after 3 tries (ConnectError)"
    assert "query-secret" not in message
    assert len(sleeps.waits) == 2


async def test_other_answers_are_returned_at_once() -> None:
    sleeps = Sleeps()
    for code in (200, 201, 400, 401, 403, 404):
        async with client(reply(code)) as http:
            response = await send(
                http, http.build_request("GET", URL), policy=RetryPolicy(sleep=sleeps)
            )
        assert response.status_code == code
    assert sleeps.waits == []


async def test_backoff_is_capped() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=5, base_delay=10, max_delay=15, sleep=sleeps, jitter=lambda: 1.0)
    async with client(reply(503)) as http:
        with pytest.raises(IntegrationError, match="HTTP 503 after 5 tries"):
            await send(http, http.build_request("GET", URL), policy=policy)
    assert sleeps.waits == [10.0, 15.0, 15.0, 15.0]


async def test_429_without_retry_after_backs_off_then_is_rate_limited() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, sleep=sleeps, jitter=lambda: 1.0)
    async with client(reply(429)) as http:
        with pytest.raises(RateLimited) as caught:
            await send(http, http.build_request("GET", URL), policy=policy)
    assert caught.value.retry_after is None
    assert sleeps.waits == [1.0, 2.0]


async def test_429_honours_retry_after_and_reports_the_last_one() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=2, sleep=sleeps)
    async with client(reply(429, **{"Retry-After": "3"})) as http:
        with pytest.raises(RateLimited) as caught:
            await send(http, http.build_request("GET", URL), policy=policy)
    assert sleeps.waits == [3.0]
    assert caught.value.retry_after == 3.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(base_delay=-1)


def test_vendor_message_reads_the_vendors_shapes_and_redacts() -> None:
    falcon = httpx.Response(403, json={"meta": {}, "errors": [{"code": 403, "message": "no"}]})
    s1 = httpx.Response(401, json={"errors": [{"code": 4010010, "title": "Auth Failed"}]})
    oauth = httpx.Response(400, json={"error": "invalid_client", "error_description": "bad k3y"})
    assert vendor_message(falcon) == "no"
    assert vendor_message(s1) == "Auth Failed"
    assert vendor_message(oauth, ["k3y"]) == "bad ***"
    assert vendor_message(httpx.Response(502, text="<html>Bad gateway</html>")) == ""
    long = httpx.Response(400, json={"message": "x" * 500})
    assert len(vendor_message(long)) == 200


def test_timestamps_compare_to_the_nanosecond_and_across_zones() -> None:
    key = timestamp_key
    assert key("2026-11-28T12:00:00.123456789Z") > key("2026-11-28T12:00:00.12345678Z")
    assert key("2026-11-28T12:00:00.1Z") == key("2026-11-28T12:00:00.100000000Z")
    assert key("2026-11-28T14:00:00+02:00") == key("2026-11-28T12:00:00Z")
    assert key("2026-11-28T12:00:00") == key("2026-11-28T12:00:00Z")
    assert key("2026-11-28T11:59:59.999999999Z") < key("2026-11-28T12:00:00Z")
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-11-28", 1764331200, None):
        assert key(bad) is None
    assert iso_timestamp(" 2026-11-28T12:00:00Z ") == "2026-11-28T12:00:00Z"
    with pytest.raises(ConfigError):
        iso_timestamp("2026-11-28T12:00:00Z' OR 'a'='a")


def test_watermark_keeps_the_ids_at_the_newest_time() -> None:
    t1, t2 = "2026-11-28T12:00:01.000000001Z", "2026-11-28T12:00:02Z"
    mark = Watermark().advance([("a", t1), ("b", t2), ("c", t2), ("d", "garbage")])
    assert mark == Watermark(t2, frozenset({"b", "c"}))
    assert mark.delivered("b", "2026-11-28T12:00:02.000Z")  # same instant, other spelling
    assert not mark.delivered("b", "2026-11-28T12:00:03Z")  # b changed again since
    assert not mark.delivered("z", t2)
    assert mark.advance([("e", t1)]) == mark  # older news does not move it back
    assert mark.advance([("e", t2)]).ids == {"b", "c", "e"}
    assert Watermark.from_cursor(mark.to_cursor()) == mark
    assert Watermark.from_cursor({}) == Watermark() and Watermark().to_cursor() == {}
    assert Watermark.from_cursor({"updated_at": "junk", "ids_at_time": ["x"]}) == Watermark()
