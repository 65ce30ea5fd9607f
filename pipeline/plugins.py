"""The contracts integrations implement, and the registries they join by name.

A detector parses payloads, an enricher adds facts about observables, a responder contains
a threat (and undoes it). Each is a small class registered with a decorator::

    @enrichers.register("active_directory")
    class ActiveDirectoryEnricher: ...

The bot builds instances at start-up from settings and the policy; the pipeline only sees
the protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pipeline.errors import ConfigError
from pipeline.observables import Kind, Observables


@dataclass(frozen=True)
class ParsedEvent:
    """What a detector makes of one alert, before it is stored."""

    external_id: str
    title: str
    severity: str
    raw: str
    observables: Observables = field(default_factory=Observables)
    occurred_at: datetime | None = None
    vendor_severity: str | None = None  # the detector's own word, e.g. "Critical", "5"


@runtime_checkable
class Detector(Protocol):
    name: str

    def parse(self, body: bytes) -> list[ParsedEvent]:
        """Turn one delivery into events; raise ParseError when it cannot."""
        ...


# Facts about observables, keyed by ``Observables.key(kind, value)``, e.g.
# {"user:alice": {"found": True, "display_name": "Alice", "disabled": False}}.
Facts = dict[str, dict[str, Any]]


@runtime_checkable
class Enricher(Protocol):
    name: str

    async def enrich(self, observables: Observables) -> Facts:
        """Return facts about the observables it knows; raise IntegrationError on failure."""
        ...


@runtime_checkable
class Lookup(Protocol):
    """An enricher that answers for one indicator at a time, so the pipeline can cache its
    answers, keep within the provider's quota, open a circuit breaker on repeated failure,
    and keep internal indicators away from external providers."""

    name: str
    kinds: frozenset[Kind]  # the observable kinds it can look up
    provider: str  # the quota / circuit-breaker bucket, e.g. "virustotal"
    external: bool  # True when the indicator leaves the company (privacy rules apply)

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        """Facts about ``value``, or None when the provider does not know it.

        Raise RateLimited (with retry_after when the provider said) on 429, and
        IntegrationError on any other failure; never return partial garbage."""
        ...


@dataclass(frozen=True)
class ResponderResult:
    """What a responder did: a sentence for people, and what it needs to undo it."""

    summary: str
    undo_data: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Responder(Protocol):
    name: str
    target_kind: Kind
    label: str  # e.g. "disable" → the button reads "Approve: disable alice"

    async def execute(self, target: str) -> ResponderResult:
        """Contain the target; raise ResponderError when it cannot."""
        ...

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        """Reverse a previous execute from the data it returned."""
        ...


@dataclass
class Batch:
    """What one fetch from a polled source brought: payloads for its detector, and the
    cursor to resume from once they are stored."""

    payloads: list[bytes]
    cursor: dict[str, Any]
    more: bool = False  # fetch again at once (another page is waiting)
    # called after the payloads and cursor are committed (e.g. move mail to a folder)
    on_committed: Callable[[], Awaitable[None]] | None = None


@runtime_checkable
class Source(Protocol):
    """A detector Fido polls, tails or reads (API, SQL table, log file, mailbox)."""

    name: str  # unique: the key its cursor is stored under
    detector: str  # the detector that parses its payloads

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        """Payloads after ``cursor``; raise IntegrationError when the source fails."""
        ...


@dataclass
class Context:
    """What plugins may need at start-up: a shared HTTP client and named secrets."""

    http: Any = None  # httpx.AsyncClient
    environ: Mapping[str, str] = field(default_factory=dict)

    def secret(self, name: str) -> str:
        """The value of environment variable ``name``; ConfigError when unset."""
        value = self.environ.get(name, "")
        if not value:
            raise ConfigError(f"{name} is not set (named in the policy)")
        return value


T = TypeVar("T")


class Registry(Generic[T]):
    """Classes (or factories) registered under a unique name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)


detectors: Registry[Detector] = Registry("detector")
enrichers: Registry[Enricher] = Registry("enricher")
lookups: Registry[Lookup] = Registry("lookup")
responders: Registry[Responder] = Registry("responder")
sources: Registry[Source] = Registry("source")
