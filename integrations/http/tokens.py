"""OAuth2 bearer tokens for the vendors' client-credentials flows (Entra ID, Falcon, Jamf)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx


class TokenCache:
    """An OAuth2 access token, kept until shortly before it expires (a quarter of its life,
    at most ``most_early`` seconds early); one fetch at a time however many callers wait."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[tuple[str, float]]],
        *,
        clock: Callable[[], float] = time.monotonic,
        most_early: float = 60.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._most_early = most_early
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def current(self) -> str:
        return self._token or ""

    async def get(self, *, doing: str = "") -> str:
        """The token; ``fetch(doing)`` gets a new one when there is none or it is due."""
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                token, lifetime = await self._fetch(doing)
                self._token = token
                early = min(self._most_early, lifetime / 4)
                self._renew_at = self._clock() + lifetime - early
            return self._token

    def forget(self, token: str) -> None:
        """Drop ``token`` (the vendor refused it); the next ``get`` fetches another."""
        if self._token == token:
            self._token = None


async def with_bearer(
    send: Callable[..., Awaitable[httpx.Response]],
    tokens: TokenCache,
    method: str,
    url: str,
    *,
    doing: str = "",
    **kwargs: Any,
) -> httpx.Response:
    """``send(method, url, …)`` with ``Authorization: Bearer <token>``; a 401 (a token
    revoked or expired early) renews the token once and tries again."""
    headers = dict(kwargs.pop("headers", None) or {})
    response: httpx.Response | None = None
    for _ in range(2):
        token = await tokens.get(doing=doing)
        headers["Authorization"] = f"Bearer {token}"
        response = await send(method, url, headers=headers, **kwargs)
        if response.status_code != 401:
            return response
        tokens.forget(token)
    assert response is not None
    return response


def token_lifetime(value: Any) -> float | None:
    """``expires_in`` as seconds, or None when it is missing or odd."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
