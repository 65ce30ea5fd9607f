"""Start-up wiring: settings + policy → detector, enricher and responder instances."""

from __future__ import annotations

from functools import cached_property

from bot.settings import Settings
from integrations import load_all
from pipeline.errors import ConfigError
from pipeline.plugins import Detector, Enricher, Responder, detectors, enrichers, responders
from pipeline.policy import Policy


class Wiring:
    """Builds each integration once, with the shared clients it needs."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        load_all()
        self.settings = settings
        self.policy = policy

    @cached_property
    def directory(self):  # type: ignore[no-untyped-def]
        from integrations.directory.ad import ActiveDirectory, ADConfig

        self.settings.require(
            "FIDO_AD_URL", "FIDO_AD_BIND_DN", "FIDO_AD_PASSWORD", "FIDO_AD_BASE_DN"
        )
        s = self.settings
        return ActiveDirectory(
            ADConfig(
                url=s.ad_url, bind_dn=s.ad_bind_dn, password=s.ad_password, base_dn=s.ad_base_dn
            )
        )

    def detectors(self) -> dict[str, Detector]:
        built: dict[str, Detector] = {}
        for name, rules in self.policy.detectors.items():
            if not rules.enabled:
                continue
            factory = detectors.get(name)
            built[name] = factory(field_map=rules.field_map) if rules.field_map else factory()
        return built

    def enrichers(self) -> list[Enricher]:
        built: list[Enricher] = []
        for name in self.policy.enrichers:
            factory = enrichers.get(name)
            if name == "active_directory":
                built.append(factory(self.directory))
            else:
                raise ConfigError(f"enricher {name!r} cannot be configured by fido serve yet")
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
