"""Lookups registered under test names: real plugins whose behaviour the tests control."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.errors import IntegrationError, NotFoundError, RateLimited
from pipeline.observables import KINDS, Kind
from pipeline.plugins import lookups


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Sleeps:
    """An injectable sleep that records how long it was asked to wait, and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@lookups.register("test_reputation")
class ReputationLookup:
    """An external reputation service (VirusTotal-like) that records every value it is
    sent. ``answers`` maps a value to its facts (missing: unknown, None); ``fail`` makes the
    next N calls fail; ``broken`` makes every call fail; ``rate_limited`` makes the next N
    calls answer 429 with ``retry_after``; ``not_found`` values raise NotFoundError."""

    kinds: frozenset[Kind] = frozenset({"ip", "hash", "domain", "url", "host", "user"})
    external = True

    def __init__(
        self,
        answers: Mapping[str, dict[str, Any]] | None = None,
        *,
        name: str = "test_reputation",
        provider: str = "test_vt",
        kinds: frozenset[Kind] | None = None,
        external: bool = True,
    ) -> None:
        self.name, self.provider, self.external = name, provider, external
        self.kinds = kinds if kinds is not None else frozenset(KINDS)
        self.answers = dict(answers or {})
        self.calls: list[tuple[Kind, str]] = []
        self.fail = 0
        self.broken = False
        self.crash = False
        self.rate_limited = 0
        self.retry_after: float | None = 30
        self.not_found: set[str] = set()

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        self.calls.append((kind, value))
        if self.crash:
            raise KeyError("a bug in the plugin")
        if self.rate_limited:
            self.rate_limited -= 1
            raise RateLimited("429 Too Many Requests", retry_after=self.retry_after)
        if self.broken or self.fail:
            self.fail = max(self.fail - 1, 0)
            raise IntegrationError("test_vt: 503 Service Unavailable")
        if value in self.not_found:
            raise NotFoundError(f"{value} is not known")
        answer = self.answers.get(value)
        return dict(answer) if answer is not None else None

    def values(self) -> list[str]:
        return [value for _, value in self.calls]


@lookups.register("test_inventory")
class InventoryLookup(ReputationLookup):
    """An internal inventory: privacy rules do not apply to it."""

    def __init__(self, answers: Mapping[str, dict[str, Any]] | None = None) -> None:
        super().__init__(
            answers,
            name="test_inventory",
            provider="test_inventory",
            kinds=frozenset({"host", "ip", "user"}),
            external=False,
        )
