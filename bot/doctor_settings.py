"""Which settings are missing or wrong — all of them at once, before anything is created.

``fido serve``, ``fido doctor`` and every command that needs settings ask here first. The
answer covers Fido's own settings (``bot/settings.py``), the directory's ``FIDO_AD_*``
(``integrations/directory/config.py``) when a plugin in the policy uses the directory, and
every secret the policy names (``api_key_env: VIRUSTOTAL_API_KEY``…). Each plugin is built
as ``fido serve`` builds it, one at a time, so one failure hides no other; nothing is
connected and no file or database is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.settings import _FIELD_BY_ENV, SERVE_REQUIRED, Settings
from bot.wiring import Wiring, process_environ
from pipeline.errors import ConfigError
from pipeline.plugins import Context, Detector
from pipeline.policy import Policy

WHERE = "set each in the environment or in .env (.env.example describes them)"

# what Fido's own required settings are for, as the missing-settings message says it
PURPOSE = {
    "FIDO_WEBHOOK_TOKEN": "the bearer token detectors send to /webhooks/{detector}",
    "SLACK_BOT_TOKEN": "the Slack bot token (xoxb-…) that posts incident cards",
    "FIDO_SLACK_CHANNEL": "the id of the Slack channel incident cards go to (C…)",
    "SLACK_SIGNING_SECRET": "verifies requests from Slack in HTTP mode "
    "(or set SLACK_APP_TOKEN for Socket Mode)",
}

# the parts of the policy a command builds: serve and doctor build them all
SECTIONS = ("detectors", "webhook_auth", "sources", "enrichers", "responders")


@dataclass
class Problem:
    """A setting that is missing (``missing``) or holds a wrong value, and who needs it."""

    name: str  # the environment variable, or the plugin whose options are wrong
    reason: str
    needed_by: list[str] = field(default_factory=list)
    missing: bool = True

    def line(self, width: int = 0) -> str:
        who = f" (for {', '.join(self.needed_by)})" if self.needed_by else ""
        return f"{self.name:<{width}}  {self.reason}{who}"


@dataclass
class SettingsReport:
    problems: list[Problem] = field(default_factory=list)
    directory_users: list[str] = field(default_factory=list)  # "enricher active_directory"…

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def missing(self) -> list[str]:
        return [p.name for p in self.problems if p.missing]

    def add(self, name: str, reason: str, who: str = "", *, missing: bool = True) -> None:
        for problem in self.problems:
            if problem.name == name and problem.missing == missing:
                if who and who not in problem.needed_by:
                    problem.needed_by.append(who)
                return
        self.problems.append(Problem(name, reason, [who] if who else [], missing))

    def message(self, doing: str) -> str:
        """One message naming every problem, for ``ConfigError``."""
        missing = [p for p in self.problems if p.missing]
        wrong = [p for p in self.problems if not p.missing]
        width = max((len(p.name) for p in self.problems), default=0)
        lines: list[str] = []
        if missing:
            noun = "a setting is" if len(missing) == 1 else f"{len(missing)} settings are"
            lines.append(f"{noun} missing for {doing}; {WHERE}:")
            lines += [f"  {p.line(width)}" for p in missing]
        if wrong:
            lead = "and these are wrong:" if missing else f"settings are wrong for {doing}:"
            lines.append(lead)
            lines += [f"  {p.line(width)}" for p in wrong]
        return "\n".join(lines)

    def raise_if_any(self, doing: str) -> None:
        if self.problems:
            raise ConfigError(self.message(doing))


def _unset(value: Any) -> bool:
    if value is None or value == "":
        return True
    getter = getattr(value, "get_secret_value", None)
    return getter is not None and not getter()


def core_problems(settings: Settings, report: SettingsReport) -> None:
    """Fido's own settings that ``fido serve`` cannot run without."""
    names = list(SERVE_REQUIRED)
    if settings.slack_app_token is None:
        names.append("SLACK_SIGNING_SECRET")
    _add_unset(settings, report, names)


def require(settings: Settings, *names: str, doing: str) -> None:
    """ConfigError naming every one of ``names`` (Fido's own settings) that is unset."""
    report = SettingsReport()
    _add_unset(settings, report, names)
    report.raise_if_any(doing)


def _add_unset(settings: Settings, report: SettingsReport, names: Iterable[str]) -> None:
    for name in names:
        if _unset(getattr(settings, _field(name))):
            report.add(name, PURPOSE.get(name, "see .env.example"))


def _field(env_name: str) -> str:
    return _FIELD_BY_ENV[env_name]


class _Probe(Context):
    """A start-up context that writes down every secret and directory setting a plugin
    asks for and cannot have, before failing as the real one does."""

    def __init__(
        self, base: Context, report: SettingsReport, *, label: str, name: str = ""
    ) -> None:
        super().__init__(base.http, base.environ, name=name, detector=base.detector)
        self._shared = base._shared
        self.report = report
        self.label = label  # who asks, as the message names it: "enricher virustotal"

    def _who(self, default: str) -> str:
        return self.label or default

    def secret(self, name: str) -> str:
        if not self.environ.get(name, ""):
            self.report.add(name, "a secret the policy names", self._who("the policy"))
        return super().secret(name)

    def directory(self) -> Any:
        if "directory" in self._shared:
            return self._shared["directory"]
        from integrations.directory.config import ADConfig, env_name

        who = self._who("the policy")
        if who not in self.report.directory_users:
            self.report.directory_users.append(who)
        missing = [
            env_name(field_name)
            for field_name, info in ADConfig.model_fields.items()
            if info.is_required() and not self.environ.get(env_name(field_name), "")
        ]
        for name in missing:
            self.report.add(name, "the directory (Active Directory)", who)
        try:  # the settings checked, nothing connected, no warning logged twice
            config = ADConfig.from_environ(self.environ)
        except ConfigError as exc:
            if not missing:
                self.report.add("FIDO_AD_*", str(exc), who, missing=False)
            raise
        from integrations.directory import ActiveDirectory

        self._shared["directory"] = ActiveDirectory(config)
        return self._shared["directory"]

    def scoped(self, *, name: str, detector: Detector | None = None) -> Context:
        probe = _Probe(self, self.report, label=self.label, name=name)
        probe.detector = detector
        return probe


def plugin_problems(
    settings: Settings,
    policy: Policy,
    report: SettingsReport,
    *,
    sections: Iterable[str] = SECTIONS,
    environ: Mapping[str, str] | None = None,
    detectors: Iterable[str] = (),
) -> None:
    """Build each plugin of ``sections`` alone (and each detector named in
    ``detectors``), recording every setting it lacks and every other start-up error."""
    import httpx

    environ = process_environ() if environ is None else environ
    wanted = set(sections)
    http = httpx.AsyncClient()  # what plugins are built with; never used to send

    def attempt(who: str, part: Policy, build: str, *args: Any) -> None:
        wiring = Wiring(settings, part, environ=environ, http=http)
        wiring.context = _Probe(wiring.context, report, label=who)
        try:
            getattr(wiring, build)(*args)
        except ConfigError as exc:
            text = str(exc)
            if not _recorded(report, text):
                report.add(who, text, missing=False)

    for name, rules in policy.detectors.items():
        if not rules.enabled:
            continue
        if "detectors" in wanted:
            attempt(f"detector {name}", policy, "detector", name, rules)
        if "webhook_auth" in wanted:
            attempt(f"detector {name}", _only(policy, detectors={name: rules}), "webhook_auth")
    for name in detectors:
        attempt(f"detector {name}", policy, "detector", name)
    if "sources" in wanted:
        for name, source in policy.sources.items():
            if source.enabled:
                attempt(f"source {name}", _only(policy, sources={name: source}), "sources")
    if "enrichers" in wanted:
        for name in policy.enrichers:
            attempt(f"enricher {name}", _only(policy, enrichers=[name]), "enrichers", None)
    if "responders" in wanted:
        seen: set[str] = set()
        for rule in policy.actions:
            if rule.responder not in seen:
                seen.add(rule.responder)
                part = _only(policy, actions=[rule])
                attempt(f"responder {rule.responder}", part, "responders")


def _only(policy: Policy, **parts: Any) -> Policy:
    return policy.model_copy(update=parts)


def _recorded(report: SettingsReport, text: str) -> bool:
    """Whether a start-up error is one the probe has written down already (a missing
    secret or directory setting), so it is not reported twice."""
    return any(
        (p.missing and p.name in text) or (not p.missing and p.reason in text)
        for p in report.problems
    )


def check_settings(
    settings: Settings,
    policy: Policy,
    *,
    serve: bool = False,
    sections: Iterable[str] = (),
    detectors: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> SettingsReport:
    """Every problem with the settings a command needs: ``serve`` for Fido's own required
    settings, ``sections`` for the plugins it builds."""
    report = SettingsReport()
    if serve:
        core_problems(settings, report)
    plugin_problems(
        settings, policy, report, sections=sections, environ=environ, detectors=detectors
    )
    return report
