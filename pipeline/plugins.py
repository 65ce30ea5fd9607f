"""The contracts integrations implement, and the registries they join by name.

A detector parses payloads, an enricher adds facts about observables, a responder contains
a threat (and undoes it), a source fetches payloads for a detector. Each is a small class
registered with a decorator, and built in one way (``docs/ARCHITECTURE.md``, Plugins)::

    class ExampleOptions(BaseModel):
        model_config = ConfigDict(
            extra="forbid", json_schema_extra={"examples": [{"api_key_env": "EXAMPLE_KEY"}]}
        )
        base_url: str = "https://api.example.com"
        api_key_env: EnvName  # the NAME of the environment variable holding the key

    @lookups.register("example")
    class ExampleLookup:
        Options = ExampleOptions

        @classmethod
        def build(cls, options: ExampleOptions, context: Context) -> ExampleLookup:
            key = SecretStr(context.secret(options.api_key_env))
            return cls(http=context.http, base_url=options.base_url, api_key=key)

The bot validates the policy's options against ``Options`` and calls ``build`` for every
plugin alike (``build_plugin``); the pipeline only sees the instance protocols below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import ConfigError
from pipeline.observables import Kind, Observables
from pipeline.plugin_options import describe_errors, option_errors

JSON_TYPES: tuple[str, ...] = ("application/json",)

# An option naming an environment variable (a field ending in ``_env``): secrets never sit
# in the policy, only the names of the variables that hold them.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class NoOptions(BaseModel):
    """The options of a plugin that takes none: any key is refused."""

    model_config = ConfigDict(extra="forbid")


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


class Delivery(list[ParsedEvent]):
    """The events of one delivery, and what it held that is no alert: ``skipped`` maps
    each reason (e.g. "EVE 'dns' record: not an alert") to how many records it covers.
    The webhook answers them in its 202, so the sender sees why nothing was stored."""

    def __init__(
        self, events: Iterable[ParsedEvent] = (), skipped: dict[str, int] | None = None
    ) -> None:
        super().__init__(events)
        self.skipped: dict[str, int] = dict(skipped or {})


_parse_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar(
    "fido_parse_progress", default=None
)


@contextmanager
def parse_progress(report: Callable[[int, int], None]) -> Iterator[None]:
    """While inside, detectors report ``(records read, records in all)`` of the delivery
    they parse to ``report`` (``fido parse`` of a large file shows a progress bar)."""
    token = _parse_progress.set(report)
    try:
        yield
    finally:
        _parse_progress.reset(token)


def counted(records: Sequence[T]) -> Iterator[T]:
    """``records`` one by one, as a detector reads them: reported to the progress of the
    parse under way, if any, about every hundredth record."""
    report = _parse_progress.get()
    if report is None:
        yield from records
        return
    total, step = len(records), max(1, len(records) // 100)
    for index, record in enumerate(records):
        if index % step == 0:
            report(index, total)
        yield record
    report(total, total)


_acting_for: ContextVar[int | None] = ContextVar("fido_acting_for", default=None)


@contextmanager
def acting_for(incident_id: int | None) -> Iterator[None]:
    """While inside, responders act (and undo) for incident ``incident_id`` — None for an
    action of no incident (``fido respond``); see ``current_incident``."""
    token = _acting_for.set(incident_id)
    try:
        yield
    finally:
        _acting_for.reset(token)


def current_incident() -> int | None:
    """The incident the action under way belongs to, for a responder that passes it on (the
    webhook's body names it); None outside an action or for one of no incident."""
    return _acting_for.get()


@runtime_checkable
class Detector(Protocol):
    name: str

    @property
    def content_types(self) -> tuple[str, ...]:
        """The Content-Types its webhook accepts (``JSON_TYPES`` for most)."""
        ...

    @property
    def line_pattern(self) -> str | None:
        """A regex picking the lines of a log file it reads: what a ``logfile`` source
        passes on when its policy names no pattern. None: every line."""
        ...

    def challenge(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The answer to a vendor's ownership check (``GET /webhooks/NAME``), or None when
        the request is not one (or the vendor makes none)."""
        ...

    def parse(self, body: bytes) -> list[ParsedEvent]:
        """Turn one delivery into events (a :class:`Delivery` when some records were read
        and skipped as no alert); raise ParseError when it cannot."""
        ...


class DetectorBase:
    """Defaults for detectors: JSON webhooks, every log line, no ownership check, no
    options, and ``build`` passing each option to the constructor as a keyword."""

    name: str
    content_types: tuple[str, ...] = JSON_TYPES
    line_pattern: str | None = None
    Options: ClassVar[type[BaseModel]] = NoOptions

    @classmethod
    def build(cls, options: Any, context: Context) -> Self:
        return cls(**{key: getattr(options, key) for key in type(options).model_fields})

    def challenge(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        return None


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


class Impact(StrEnum):
    """How much a responder's action disturbs, as it declares it (docs/responders lists
    each). It decides nothing by itself: the policy marks the actions that need two
    approvers (``ActionPolicy.two_person``), which a high-impact one usually should."""

    low = "low"  # narrow and easily reversed: one session, one log line
    high = "high"  # locks a person out of everything, or is hard to reverse


def person_details(facts: Mapping[str, Any] | None) -> str:
    """ " (John Doe, Accountant, Finance)": the directory's ``display_name``, ``title`` and
    ``department`` of a user, for a responder's ``plan``; "" when it knows none of them."""
    parts = [
        value.strip()
        for key in ("display_name", "title", "department")
        if isinstance(value := (facts or {}).get(key), str) and value.strip()
    ]
    return f" ({', '.join(parts)})" if parts else ""


@runtime_checkable
class Responder(Protocol):
    name: str
    target_kind: Kind
    label: str  # e.g. "disable" → the button reads "Approve: disable alice"
    reversible: bool  # whether undo can put the target back as it was
    impact: Impact

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen, e.g. "Disable CORP\\\\jdoe (John Doe,
        Engineering) in Active Directory"; ``facts`` are the directory's about the target
        (``display_name``, ``department``, ``title``) when known. Never raises."""
        ...

    async def execute(self, target: str) -> ResponderResult:
        """Contain the target; raise ResponderError when it cannot. The incident it acts
        for, if any, is ``current_incident()``."""
        ...

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        """Reverse a previous execute from the data it returned."""
        ...


@runtime_checkable
class HoldsContainment(Protocol):
    """A responder that keeps its containment in force itself, in one process (the OpenVPN
    session guard ends a user's sessions again whenever they reconnect). Fido's leading
    replica hands it the containments in force every few seconds — its succeeded, not
    undone actions, as (target, undo_data), wherever they ran — so a click on another
    replica, an expiry, ``fido respond`` or a restart takes effect there; a replica that
    stops leading tells it to let go."""

    async def hold(self, held: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Enforce exactly these (start the new ones, drop the others); how many it holds."""
        ...

    async def release(self) -> None:
        """Stop enforcing anything in this process: another replica leads now."""
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


# -- building ------------------------------------------------------------------------------

_directory_factory: Callable[[Context], Any] | None = None


def provide_directory(factory: Callable[[Context], Any]) -> None:
    """Install how ``Context.directory`` builds the directory client (done by
    ``integrations.directory`` when it is imported; the pipeline does not import it)."""
    global _directory_factory
    _directory_factory = factory


class Context:
    """What plugins may need when they are built, besides their options.

    ``http``: the shared ``httpx.AsyncClient``. ``environ``: where ``secret`` reads the
    environment variables the policy names. ``name``: the name the plugin is configured
    under (a source's key in ``sources:``; else its registered name). ``detector``: for a
    source, the detector that parses what it fetches. ``directory()``: the one Active
    Directory client, shared by every plugin built from this context (and its ``scoped``
    copies), made from the ``FIDO_AD_*`` settings on first use.
    """

    def __init__(
        self,
        http: Any = None,
        environ: Mapping[str, str] | None = None,
        *,
        name: str = "",
        detector: Detector | None = None,
        directory: Any = None,
    ) -> None:
        self.http = http  # httpx.AsyncClient
        self.environ: Mapping[str, str] = {} if environ is None else environ
        self.name = name
        self.detector = detector
        self._shared: dict[str, Any] = {} if directory is None else {"directory": directory}

    def secret(self, name: str) -> str:
        """The value of environment variable ``name``; ConfigError when unset."""
        value = self.environ.get(name, "")
        if not value:
            raise ConfigError(f"{name} is not set (named in the policy)")
        return value

    def directory(self) -> Any:
        """The shared ``integrations.directory.ActiveDirectory``, built on first use from
        the ``FIDO_AD_*`` settings in ``environ``; ConfigError naming every one missing."""
        if "directory" not in self._shared:
            if _directory_factory is None:
                raise ConfigError("no directory client is installed (import integrations)")
            self._shared["directory"] = _directory_factory(self)
        return self._shared["directory"]

    def source_detector(self) -> Detector:
        """The detector of the source being built; ConfigError when there is none."""
        if self.detector is None:
            raise ConfigError("no detector in the start-up context")
        return self.detector

    def scoped(self, *, name: str, detector: Detector | None = None) -> Context:
        """This context for one plugin: its own name and detector, the same client,
        environment and directory."""
        other = Context(self.http, self.environ, name=name, detector=detector)
        other._shared = self._shared
        return other


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Plugin(Protocol[T_co]):
    """The class side of every plugin: its options model and how to build it from them.
    Registering does not check it (test fakes are registered and used without building);
    building does (``options_model``)."""

    @property
    def Options(self) -> type[BaseModel]:  # a class attribute holding a model
        """A pydantic model with ``extra="forbid"``; secrets as environment-variable names."""
        ...

    def build(self, options: Any, context: Context) -> T_co:
        """The plugin for ``options`` (an ``Options`` instance); raises ConfigError."""
        ...


class Registry(Generic[T]):
    """Plugin classes registered under a unique name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Plugin[T]] = {}

    def register(self, name: str) -> Callable[[Plugin[T]], Plugin[T]]:
        def decorator(plugin: Plugin[T]) -> Plugin[T]:
            if name in self._items:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = plugin
            return plugin

        return decorator

    def get(self, name: str) -> Plugin[T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)


def options_model(plugin: Plugin[Any], who: str) -> type[BaseModel]:
    """The plugin's ``Options`` model; ConfigError when the class does not implement the
    :class:`Plugin` protocol or its ``Options`` is no pydantic model."""
    if not isinstance(plugin, Plugin):
        raise ConfigError(f"{who}: is no plugin: it declares no Options model and build()")
    model = plugin.Options
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError(f"{who}: its Options is not a pydantic model")
    return model


def parse_options(plugin: Plugin[Any], options: Mapping[str, Any], who: str) -> BaseModel:
    """``options`` validated by the plugin's model; ConfigError naming ``who`` and each
    key that is unknown, missing or wrong."""
    model = options_model(plugin, who)
    errors = option_errors(model, options)
    if errors:
        raise ConfigError(f"{who}: {describe_errors(errors)}")
    return model.model_validate(dict(options))


def build_plugin(
    registry: Registry[T],
    name: str,
    options: Mapping[str, Any],
    context: Context,
    *,
    who: str | None = None,
) -> T:
    """The one way plugins are built: look ``name`` up, validate ``options`` against its
    ``Options``, call its ``build``. Every ConfigError names the plugin (``who``, by
    default "<kind> <name>")."""
    plugin = registry.get(name)
    who = who or f"{registry.kind} {name}"
    parsed = parse_options(plugin, options, who)
    try:
        return plugin.build(parsed, context)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith(who):
            raise
        raise ConfigError(f"{who}: {message.removeprefix(f'{name}: ')}") from None


detectors: Registry[Detector] = Registry("detector")
enrichers: Registry[Enricher] = Registry("enricher")
lookups: Registry[Lookup] = Registry("lookup")
responders: Registry[Responder] = Registry("responder")
sources: Registry[Source] = Registry("source")
