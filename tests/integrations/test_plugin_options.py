"""Every plugin of every kind follows the one convention: an ``Options`` model refusing keys
it does not know, documented with an example it can be built from, and a ``build`` that
reads its secrets from the environment variables the options name.

Parametrized over the registries, so a new plugin that does not follow it fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from integrations import load_all
from integrations.detectors.generic import GenericDetector
from pipeline import plugins
from pipeline.errors import ConfigError
from pipeline.plugins import Context, build_plugin, options_model

ROOT = Path(__file__).resolve().parents[2]
AD_ENVIRON = {
    "FIDO_AD_URL": "ldaps://dc.corp.example",
    "FIDO_AD_BIND_DN": "CN=fido,CN=Users,DC=corp,DC=example",
    "FIDO_AD_PASSWORD": "ad-bind-secret",
    "FIDO_AD_BASE_DN": "DC=corp,DC=example",
}
REGISTRIES: dict[str, plugins.Registry[Any]] = {
    "detector": plugins.detectors,
    "enricher": plugins.enrichers,
    "lookup": plugins.lookups,
    "responder": plugins.responders,
    "source": plugins.sources,
}
PROTOCOLS: dict[str, type] = {
    "detector": plugins.Detector,
    "enricher": plugins.Enricher,
    "lookup": plugins.Lookup,
    "responder": plugins.Responder,
    "source": plugins.Source,
}

load_all()


def plugin_names(kind: str) -> list[str]:
    """The built-in plugins of ``kind`` (not the fakes tests register)."""
    registry = REGISTRIES[kind]
    return [
        name
        for name in registry.names()
        if getattr(registry.get(name), "__module__", "").startswith("integrations.")
    ]


ALL = [(kind, name) for kind in REGISTRIES for name in plugin_names(kind)]


def model(kind: str, name: str) -> type[BaseModel]:
    return options_model(REGISTRIES[kind].get(name), f"{kind} {name}")


class NoExample(Exception):
    """The plugin needs options and documents no example of them."""


def example(kind: str, name: str) -> dict[str, Any]:
    """The plugin's documented example options (``json_schema_extra={"examples": [...]}``
    on its Options model); {} when it has none and needs none, else NoExample."""
    config = model(kind, name).model_config
    extra = config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list) and examples:
        return dict(examples[0])  # type: ignore[arg-type]
    required = [f for f, info in model(kind, name).model_fields.items() if info.is_required()]
    if required:
        raise NoExample(
            f"{kind} {name}: its Options need {', '.join(required)}: document an example, "
            'model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{...}]})'
        )
    return {}


def documented(kind: str, name: str) -> dict[str, Any]:
    """``example``, skipping the test when there is none (the test of the Options model
    itself fails for it)."""
    try:
        return example(kind, name)
    except NoExample as exc:
        pytest.skip(str(exc))


def secrets_for(kind: str, name: str, options: dict[str, Any] | None = None) -> dict[str, str]:
    """A value for each environment variable the example options name (``*_env``)."""
    return {
        value: "sqlite://" if value.endswith("_URL") else f"{value.lower()}-value"
        for key, value in (example(kind, name) if options is None else options).items()
        if key.endswith("_env") and isinstance(value, str)
    }


def context(http: httpx.AsyncClient, environ: dict[str, str], name: str) -> Context:
    return Context(http, {**AD_ENVIRON, **environ}, name=name, detector=GenericDetector())


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(autouse=True)
def at_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples may name files of the repository (bot/samples/…)


def test_every_kind_has_built_in_plugins() -> None:
    assert len(plugin_names("detector")) >= 14
    assert {"active_directory", "static_directory"} <= set(plugin_names("enricher"))
    assert {"virustotal", "abuseipdb", "asset_inventory"} <= set(plugin_names("lookup"))
    assert {"ad_disable_account", "log_only", "openvpn_kill_session"} <= set(
        plugin_names("responder")
    )
    assert {"logfile", "sql", "imap", "crowdstrike_api"} <= set(plugin_names("source"))


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_options_are_a_model_that_refuses_unknown_keys(kind: str, name: str) -> None:
    options = model(kind, name)
    assert options.model_config.get("extra") == "forbid"
    assert callable(getattr(REGISTRIES[kind].get(name), "build", None))
    try:
        options.model_validate(example(kind, name))  # the documented example is valid
    except NoExample as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize(("kind", "name"), ALL)
async def test_built_from_the_documented_example(
    kind: str, name: str, http: httpx.AsyncClient
) -> None:
    built = build_plugin(
        REGISTRIES[kind],
        name,
        documented(kind, name),
        context(http, secrets_for(kind, name, documented(kind, name)), f"{name}_1"),
    )
    assert isinstance(built, PROTOCOLS[kind])
    if kind == "source":
        assert (built.name, built.detector) == (f"{name}_1", "generic")
    elif kind in ("detector", "enricher", "lookup", "responder"):
        assert built.name == name
    if kind == "responder":
        assert isinstance(built.reversible, bool)
        assert built.impact in (plugins.Impact.low, plugins.Impact.high)
        plan = built.plan("CORP\\jdoe", {"display_name": "John Doe", "department": "Eng"})
        assert isinstance(plan, str) and plan


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_an_unknown_key_is_refused_naming_the_plugin_and_the_key(
    kind: str, name: str, http: httpx.AsyncClient
) -> None:
    options = {**documented(kind, name), "no_such_option": 1}
    with pytest.raises(ConfigError, match=rf"^{kind} {name}: unknown option 'no_such_option'$"):
        build_plugin(REGISTRIES[kind], name, options, context(http, {}, name))


def _typed_field(options: type[BaseModel]) -> str | None:
    """A field that a list of lists cannot be (not one typed Any)."""
    for field, info in options.model_fields.items():
        if info.annotation is not Any:
            return field
    return None


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_a_bad_value_is_refused_naming_the_plugin_and_the_key(
    kind: str, name: str, http: httpx.AsyncClient
) -> None:
    field = _typed_field(model(kind, name))
    if field is None:
        pytest.skip(f"{kind} {name} takes no options")
    options = {**documented(kind, name), field: [[]]}
    with pytest.raises(ConfigError, match=rf"^{kind} {name}: option '{field}[.0-9]*'"):
        build_plugin(
            REGISTRIES[kind],
            name,
            options,
            context(http, secrets_for(kind, name, documented(kind, name)), name),
        )


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_secrets_are_read_from_the_variables_named(
    kind: str, name: str, http: httpx.AsyncClient
) -> None:
    secrets = secrets_for(kind, name, documented(kind, name))
    if not secrets:
        pytest.skip(f"{kind} {name} names no environment variable in its example")
    for missing in secrets:
        environ = {key: value for key, value in secrets.items() if key != missing}
        with pytest.raises(ConfigError, match=rf"^{kind} {name}: {missing} is not set"):
            build_plugin(
                REGISTRIES[kind], name, documented(kind, name), context(http, environ, name)
            )
    values = secrets.values()
    built = build_plugin(
        REGISTRIES[kind], name, documented(kind, name), context(http, secrets, name)
    )
    assert not any(value in repr(built) for value in values if value != "sqlite://")


@pytest.mark.parametrize("name", ["not a name", "$VT", "VT-KEY", ""])
def test_an_env_option_holds_a_variable_name(name: str, http: httpx.AsyncClient) -> None:
    options = {"api_key_env": name}
    with pytest.raises(ConfigError, match="^lookup virustotal: option 'api_key_env': String"):
        build_plugin(plugins.lookups, "virustotal", options, context(http, {}, "virustotal"))


def test_a_plugin_without_an_options_model_is_refused() -> None:
    registry: plugins.Registry[Any] = plugins.Registry("widget")

    @registry.register("bare")
    class Bare:  # the shape of a plugin from before the convention
        def __init__(self) -> None:
            self.name = "bare"

    @registry.register("half")
    class Half:  # an Options model, and no build
        Options = plugins.NoOptions

    @registry.register("odd")
    class Odd:  # Options that is no model
        Options = dict

        @classmethod
        def build(cls, options: Any, context: Context) -> Odd:
            return cls()

    for name in ("bare", "half"):
        with pytest.raises(
            ConfigError,
            match=f"^widget {name}: is no plugin: it declares no Options model and build\\(\\)$",
        ):
            build_plugin(registry, name, {}, Context())
    with pytest.raises(ConfigError, match="^widget odd: its Options is not a pydantic model$"):
        build_plugin(registry, "odd", {}, Context())


def test_directory_needs_every_setting_named_at_once() -> None:
    context = Context(environ={"FIDO_AD_URL": "ldaps://dc", "FIDO_AD_TIMEOUT": "-1"})
    with pytest.raises(ConfigError) as caught:
        context.directory()
    assert str(caught.value) == (
        "FIDO_AD_BIND_DN, FIDO_AD_PASSWORD, FIDO_AD_BASE_DN are not set (see .env.example); "
        "FIDO_AD_TIMEOUT: Input should be greater than 0"
    )


def test_directory_reads_only_the_contexts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIDO_AD_PAGE_SIZE", "7")  # the process's, not the context's
    first = Context(environ=AD_ENVIRON)
    directory = first.directory()
    assert directory.config.page_size == 500
    assert first.scoped(name="x").directory() is directory  # shared by the scoped copies
    assert Context(environ=AD_ENVIRON).directory() is not directory
    given = object()
    assert Context(directory=given).directory() is given
