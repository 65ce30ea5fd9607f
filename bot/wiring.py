"""Start-up wiring: settings + policy → detector, source, enricher and responder instances."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import cached_property
from typing import Any

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
    detectors,
    enrichers,
    lookups,
    responders,
    sources,
)
from pipeline.policy import DetectorPolicy, Policy

log = logging.getLogger(__name__)


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
        self.context = Context(http=http, environ=os.environ if environ is None else environ)

    @cached_property
    def directory(self):  # type: ignore[no-untyped-def]
        from integrations.directory.ad import ActiveDirectory, ADConfig

        self.settings.require(
            "FIDO_AD_URL", "FIDO_AD_BIND_DN", "FIDO_AD_PASSWORD", "FIDO_AD_BASE_DN"
        )
        s = self.settings
        try:
            config = ADConfig(
                url=s.ad_url,
                bind_dn=s.ad_bind_dn,
                password=s.ad_password,
                base_dn=s.ad_base_dn,
                start_tls=s.ad_start_tls,
                verify_tls=s.ad_verify_tls,
                ca_file=s.ad_ca_file,
                timeout=s.ad_timeout,
            )
        except ValueError as exc:  # pydantic's ValidationError, worded for people
            raise ConfigError(f"FIDO_AD_*: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
        if config.url.startswith("ldap://") and not config.start_tls:
            log.warning(
                "FIDO_AD_URL is plain ldap:// without FIDO_AD_START_TLS: the bind password "
                "crosses the network unencrypted"
            )
        return ActiveDirectory(config)

    def detector(self, name: str, rules: DetectorPolicy | None = None) -> Detector:
        factory = detectors.get(name)
        rules = rules or self.policy.detectors.get(name) or DetectorPolicy()
        kwargs: dict[str, Any] = dict(rules.options)
        if rules.field_map:
            kwargs["field_map"] = rules.field_map
        try:
            return factory(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"detectors.{name}.options: {exc}") from None

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
            factory: Any = sources.get(rules.type)
            detector = self.detector(rules.detector)
            options = dict(rules.options)
            default_pattern = getattr(detector, "line_pattern", None)
            if rules.type == "logfile" and "pattern" not in options and default_pattern:
                options["pattern"] = default_pattern  # only the lines its detector reads
            try:
                source = factory.from_options(
                    name=name, detector=rules.detector, options=options, context=self.context
                )
            except (TypeError, ValueError, KeyError) as exc:
                raise ConfigError(f"sources.{name}: {type(exc).__name__}: {exc}") from None
            built.append((source, detector, rules.interval_seconds))
        return built

    def enrichers(self, db: Database) -> list[Enricher]:
        """The policy's enrichers: the directory, and lookups wrapped with the cache,
        quotas, circuit breakers and privacy screen (``pipeline/lookups/``)."""
        built: list[Enricher] = []
        indicator_lookups: list[Lookup] = []
        for name in self.policy.enrichers:
            options = self.policy.enricher_options.get(name, {})
            if name in lookups:
                factory: Any = lookups.get(name)
                try:
                    indicator_lookups.append(
                        factory.from_options(options=options, context=self.context)
                    )
                except (TypeError, ValueError, KeyError) as exc:
                    raise ConfigError(f"enricher_options.{name}: {exc}") from None
            elif name == "active_directory":
                built.append(enrichers.get(name)(self.directory))
            elif name == "static_directory":
                built.append(enrichers.get(name)(options.get("users", {})))
            else:
                enrichers.get(name)  # unknown names: a ConfigError listing the known ones
                raise ConfigError(f"enricher {name!r} cannot be configured by fido serve")
        built.extend(lookup_enrichers(indicator_lookups, db=db, policy=self.policy))
        return built

    def responders(self) -> dict[str, Responder]:
        built: dict[str, Responder] = {}
        for rule in self.policy.actions:
            factory = responders.get(rule.responder)
            if rule.responder == "ad_disable_account":
                built[rule.responder] = factory(self.directory)
            else:
                built[rule.responder] = factory()
        return built

    def labels(self, responders_: dict[str, Responder]) -> dict[str, str]:
        return {name: r.label for name, r in responders_.items()}
