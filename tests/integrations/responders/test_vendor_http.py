"""The plumbing the SaaS responders share (``integrations/responders/vendor_http.py``)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from integrations.responders.vendor_http import (
    BaseURL,
    TokenCache,
    account_parts,
    clean_target,
    excerpt,
    http_client,
    path_segment,
    short_host,
    token_lifetime,
)
from pipeline.errors import ResponderError
from pipeline.plugins import Context


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_cache_fetches_once_for_concurrent_callers_and_renews_before_expiry() -> None:
    clock, fetched = Clock(), []

    async def fetch(doing: str) -> tuple[str, float]:
        await asyncio.sleep(0.01)
        fetched.append(doing)
        return f"token-{len(fetched)}", 400.0

    cache = TokenCache(fetch, clock=clock)
    tokens = await asyncio.gather(*(cache.get(doing="act") for _ in range(5)))
    assert tokens == ["token-1"] * 5 and fetched == ["act"]
    clock.now += 339  # renewed 60 s (at most a quarter of its life) before it expires
    assert await cache.get(doing="act") == "token-1"
    clock.now += 2
    assert await cache.get(doing="act") == "token-2"
    cache.forget("token-1")  # an old token: nothing happens
    assert cache.current == "token-2"
    cache.forget("token-2")
    assert await cache.get(doing="act") == "token-3"


async def test_a_short_lived_token_is_renewed_a_quarter_early() -> None:
    clock = Clock()

    async def fetch(doing: str) -> tuple[str, float]:
        return str(clock.now), 40.0

    cache = TokenCache(fetch, clock=clock)
    first = await cache.get(doing="x")
    clock.now += 29
    assert await cache.get(doing="x") == first
    clock.now += 2
    assert await cache.get(doing="x") != first


class Settings(BaseModel):
    url: BaseURL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://api.example.com/", "https://api.example.com"),
        ("https://api.example.com/base/", "https://api.example.com/base"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:1/x", "http://localhost:1/x"),
    ],
)
def test_base_urls_are_https_or_loopback(value: str, expected: str) -> None:
    assert Settings(url=value).url == expected


@pytest.mark.parametrize(
    "value",
    [
        "http://api.example.com",
        "ftp://api.example.com",
        "https://",
        "https://u:p@api.example.com",
        "https://api.example.com/?key=1",
        "https://api.example.com/#x",
        "api.example.com",
    ],
)
def test_other_base_urls_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(url=value)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a" * 257, "longer than 256"),
        ("alice\n", "control character U+000A"),
        ("ali\u200bce", "control character U+200B"),
        ("al ice", "whitespace"),
        ("al\u00a0ice", "whitespace"),
    ],
)
def test_clean_target_refuses(target: str, problem: str) -> None:
    with pytest.raises(ResponderError, match=f"^Refused to act on .*: it .*{re.escape(problem)}"):
        clean_target(target, refusing="act on")


def test_clean_target_keeps_the_rest() -> None:
    assert clean_target("  CORP\\o'brien  ", refusing="x") == "CORP\\o'brien"


def test_path_segments_are_encoded_and_dot_segments_refused() -> None:
    assert path_segment("a/b?c#d%e@f") == "a%2Fb%3Fc%23d%25e@f"
    for dots in (".", ".."):
        with pytest.raises(ResponderError):
            path_segment(dots)


def test_account_parts_and_short_hosts() -> None:
    assert account_parts("CORP\\alice") == ("alice", "CORP")
    assert account_parts("alice@corp.example") == ("alice", "corp.example")
    assert account_parts("alice") == ("alice", None)
    assert short_host("pc-1.corp.example") == "pc-1"
    assert short_host("pc-1") is None and short_host("10.0.0.5") is None


def test_excerpt_is_one_short_redacted_line() -> None:
    text = excerpt("line one\r\n\tline\x00two " + "y" * 300, ["one"])
    assert text.startswith("line *** line two yyy") and len(text) == 200 and text.endswith("…")


def test_token_lifetimes() -> None:
    assert token_lifetime(3599) == 3599.0 and token_lifetime("1799") == 1799.0
    for odd in (None, 0, -5, True, "x", float("nan"), float("inf")):
        assert token_lifetime(odd) is None


async def test_http_client_is_the_shared_one_or_a_new_one() -> None:
    async with httpx.AsyncClient() as shared:
        assert http_client(Context(http=shared)) is shared
    own = http_client(Context())
    assert isinstance(own, httpx.AsyncClient) and own.follow_redirects is False
    await own.aclose()
