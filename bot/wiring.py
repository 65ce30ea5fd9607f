"""Start-up wiring: settings + policy → detector, source, enricher and responder instances.

Every plugin is built the same way (``pipeline.plugins.build_plugin``): its options from
the policy are validated against its ``Options`` model and handed to its ``build`` with
the shared context. Nothing here knows a plugin by name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import SecretStr

from bot.settings import Settings
from bot.webhook_auth import DetectorAuth, Signature
from integrations import load_all
from pipeline.db import Database
from pipeline.errors import ConfigError
from pipeline.lookups.enricher import lookup_enrichers
from pipeline.plugins import (
    Context,
    Detector,
    Enricher,
    Lookup,
    Responder,
    Source,
    build_plugin,
    detectors,
    enrichers,
    lookups,
    responders,
    sources,
)
from pipeline.policy import DetectorPolicy, Policy

log = logging.getLogger(__name__)


def process_environ(env_file: str | Path = ".env") -> dict[str, str]:
    """The process environment over ``.env``, as ``Settings`` reads them: where the
    secrets the policy names and the ``FIDO_AD_*`` settings are found."""
    path = Path(env_file)
    found = dotenv_values(path) if path.is_file() else {}
    return {**{k: v for k, v in found.items() if v is not None}, **os.environ}


class Wiring:
    """Builds each integration once, with the shared clients it needs."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        *,
        environ: Mapping[str, str] | None = None,
        http: Any = None,
    ) -> None:
        load_all()
        self.settings = settings
        self.policy = policy
        self.context = Context(http=http, environ=process_environ() if environ is None else environ)

    def detector(self, name: str, rules: DetectorPolicy | None = None) -> Detector:
        rules = rules or self.policy.detectors.get(name) or DetectorPolicy()
        options = dict(rules.options)
        if rules.field_map:  # the policy's shorthand for options.field_map
            if "field_map" in options:
                raise ConfigError(f"detectors.{name}: give field_map once, not also in options")
            options["field_map"] = rules.field_map
        return build_plugin(detectors, name, options, self.context.scoped(name=name))

    def detectors(self) -> dict[str, Detector]:
        """The detectors that take webhooks."""
        return {
            name: self.detector(name, rules)
            for name, rules in self.policy.detectors.items()
            if rules.enabled
        }

    def webhook_auth(self) -> dict[str, DetectorAuth]:
        """Per-detector tokens and signatures, read from the environment variables the
        policy names (so secrets never sit in the policy file)."""
        auth: dict[str, DetectorAuth] = {}
        for name, rules in self.policy.detectors.items():
            if not (rules.enabled and (rules.token_env or rules.token_header or rules.signature)):
                continue
            token = (
                SecretStr(self.context.secret(rules.token_env))
                if rules.token_env
                else self.settings.webhook_token
            )
            signature = None
            if rules.signature is not None:
                secret = SecretStr(self.context.secret(rules.signature.secret_env))
                signature = Signature(rules.signature, secret)
            auth[name] = DetectorAuth(token, rules.token_header, signature)
        return auth

    def sources(self) -> list[tuple[Source, Detector, float]]:
        """(source, the detector parsing its payloads, interval in seconds) per source."""
        built = []
        for name, rules in self.policy.sources.items():
            if not rules.enabled:
                continue
            detector = self.detector(rules.detector)
            context = self.context.scoped(name=name, detector=detector)
            who = f"source {name} ({rules.type})"
            source = build_plugin(sources, rules.type, rules.options, context, who=who)
            built.append((source, detector, rules.interval_seconds))
        return built

    def enrichers(self, db: Database) -> list[Enricher]:
        """The policy's enrichers, and its lookups wrapped with the cache, quotas,
        circuit breakers and privacy screen (``pipeline/lookups/``)."""
        built: list[Enricher] = []
        indicator_lookups: list[Lookup] = []
        for name in self.policy.enrichers:
            options = self.policy.enricher_options.get(name, {})
            context = self.context.scoped(name=name)
            who = f"enricher {name}"
            if name in lookups:
                indicator_lookups.append(build_plugin(lookups, name, options, context, who=who))
            elif name in enrichers:
                built.append(build_plugin(enrichers, name, options, context, who=who))
            else:
                known = ", ".join(sorted({*enrichers.names(), *lookups.names()}))
                raise ConfigError(f"unknown enricher {name!r} (known: {known})")
        built.extend(lookup_enrichers(indicator_lookups, db=db, policy=self.policy))
        return built

    def responders(self) -> dict[str, Responder]:
        """One responder per name the actions use, with the rule's options (the policy
        refuses two rules giving one responder different options)."""
        built: dict[str, Responder] = {}
        for rule in self.policy.actions:
            if rule.responder not in built:
                context = self.context.scoped(name=rule.responder)
                built[rule.responder] = build_plugin(
                    responders, rule.responder, rule.options, context
                )
        return built

    def labels(self, responders_: dict[str, Responder]) -> dict[str, str]:
        return {name: r.label for name, r in responders_.items()}
