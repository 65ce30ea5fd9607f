"""The plugins a policy names, checked against the registries: every name known, every
option allowed and valid by the plugin's ``Options`` model.

``fido check-config`` reports these with their line and column (``pipeline.policy_file``);
``fido serve`` meets the same problems as ConfigErrors when it builds the plugins
(``pipeline.plugins.build_plugin``). The registries must be filled first (the bot imports
the integrations; the pipeline does not).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.plugin_options import option_errors
from pipeline.plugins import Registry, detectors, enrichers, lookups, options_model, responders
from pipeline.plugins import sources as source_registry
from pipeline.policy import Policy

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class PluginProblem:
    """One problem: where in the policy (``loc``; ``fallback`` when the policy file may not
    spell ``loc`` out), whether the key itself is wrong, and what is wrong."""

    loc: Loc
    message: str
    unknown_key: bool = False
    fallback: Loc = ()


def plugin_problems(policy: Policy) -> list[PluginProblem]:
    """Every unknown plugin and every bad option in ``policy``, in policy order."""
    return [
        *_detectors(policy),
        *_sources(policy),
        *_enrichers(policy),
        *_responders(policy),
    ]


def _detectors(policy: Policy) -> Iterator[PluginProblem]:
    for name, rules in policy.detectors.items():
        at: Loc = ("detectors", name)
        options = dict(rules.options)
        if rules.field_map:
            options["field_map"] = rules.field_map  # the policy's shorthand

        def place(loc: Loc, at: Loc = at) -> Loc:
            return (*at, *loc) if loc[:1] == ("field_map",) else (*at, "options", *loc)

        yield from _check(detectors, name, options, f"detector {name}", place, name_at=at)


def _sources(policy: Policy) -> Iterator[PluginProblem]:
    for name, rules in policy.sources.items():
        at: Loc = ("sources", name)
        if rules.detector not in detectors:
            yield PluginProblem((*at, "detector"), _unknown(detectors, rules.detector))
        yield from _check(
            source_registry,
            rules.type,
            rules.options,
            f"source {name} ({rules.type})",
            lambda loc, at=at: (*at, "options", *loc),
            name_at=(*at, "type"),
            unknown_key=False,
        )


def _enrichers(policy: Policy) -> Iterator[PluginProblem]:
    listed = set()
    for index, name in enumerate(policy.enrichers):
        listed.add(name)
        yield from _enricher(policy, name, ("enrichers", index))
    for name in policy.enricher_options:
        if name not in listed:
            yield from _enricher(policy, name, ("enricher_options", name))


def _enricher(policy: Policy, name: str, name_at: Loc) -> Iterator[PluginProblem]:
    registry = lookups if name in lookups else enrichers
    if name not in registry:
        known = ", ".join(sorted({*enrichers.names(), *lookups.names()})) or "none"
        yield PluginProblem(name_at, f"unknown enricher {name!r} (known: {known})", True)
        return
    given = name in policy.enricher_options

    def place(loc: Loc) -> Loc:
        return ("enricher_options", name, *loc)

    for problem in _check(registry, name, policy.enricher_options.get(name, {}), "", place):
        # options the file does not give at all are missing where the enricher is named
        fallback = () if given else name_at
        yield PluginProblem(
            problem.loc if given else name_at,
            f"enricher {name}: {problem.message}",
            problem.unknown_key,
            fallback,
        )


def _responders(policy: Policy) -> Iterator[PluginProblem]:
    for index, rule in enumerate(policy.actions):
        at: Loc = ("actions", index)
        yield from _check(
            responders,
            rule.responder,
            rule.options,
            f"responder {rule.responder}",
            lambda loc, at=at: (*at, "options", *loc),
            name_at=(*at, "responder"),
            unknown_key=False,
        )


def _check(
    registry: Registry[Any],
    name: str,
    options: Mapping[str, Any],
    who: str,
    place: Any,
    *,
    name_at: Loc = (),
    unknown_key: bool = True,
) -> Iterator[PluginProblem]:
    """The problems of one plugin: its name unknown, or each bad option, placed by
    ``place`` (a location inside the options → one in the policy)."""
    if name not in registry:
        yield PluginProblem(name_at, _unknown(registry, name), unknown_key)
        return
    try:
        model = options_model(registry.get(name), who or name)
    except ConfigError as exc:
        yield PluginProblem(name_at, str(exc), unknown_key)
        return
    for error in option_errors(model, options):
        message = f"{who}: {error.text}" if who else error.text
        yield PluginProblem(place(error.loc), message, error.unknown)


def _unknown(registry: Registry[Any], name: str) -> str:
    known = ", ".join(registry.names()) or "none"
    return f"unknown {registry.kind} {name!r} (known: {known})"
