"""``fido init``: the few questions that matter, answered at a prompt or by flags, written as
``.env`` (the secrets, mode 600) and a commented ``fido.yml`` (the policy); then ``fido
doctor`` checks that they work.

Asked: the Slack mode (Socket Mode or HTTP) and its tokens, the channel, the directory
(URL, bind account, password, base DN — or none), the detectors and the enrichers, and the
secret each enricher names. Without a terminal (or with ``--no-input``) nothing is asked:
every answer comes from a flag, and a missing one is named with its flag. Existing files are
never overwritten without asking (``--force`` for scripts).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.errors import ConfigError

_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,=%-]*")


@dataclass
class Answers:
    """What ``fido init`` writes: the settings for ``.env`` and the choices for the policy."""

    env: dict[str, str] = field(default_factory=dict)  # name → value, in order
    detectors: list[str] = field(default_factory=lambda: ["generic"])
    enrichers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → options
    directory: bool = True


class Asker:
    """Answers from flags first; then from the person at the terminal, if there is one;
    else the default; else the flag is written down as missing."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.missing: list[str] = []

    def __call__(
        self,
        given: str | None,
        question: str,
        flag: str,
        *,
        default: str | None = None,
        secret: bool = False,
    ) -> str:
        if given is not None:
            return given
        if self.interactive:
            return str(typer.prompt(question, default=default, hide_input=secret)).strip()
        if default is not None:
            return default
        self.missing.append(flag)
        return ""

    def choose(self, given: str | None, question: str, choices: list[str], default: str) -> str:
        answer = self(given, f"{question} ({' / '.join(choices)})", "", default=default)
        if answer not in choices:
            raise ConfigError(f"{answer!r} is not one of {', '.join(choices)}")
        return answer


def env_value(value: str) -> str:
    """A value as ``.env`` holds it: bare when plain, else double-quoted and escaped."""
    if "\n" in value or "\r" in value:
        raise ConfigError("a setting cannot span lines")
    if _PLAIN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


ENV_COMMENTS = {
    "FIDO_WEBHOOK_TOKEN": "Bearer token detectors send to POST /webhooks/{detector}",
    "SLACK_BOT_TOKEN": "Slack bot token (xoxb-…)",
    "SLACK_APP_TOKEN": "Slack app-level token (xapp-…): Socket Mode",
    "SLACK_SIGNING_SECRET": "Slack signing secret: HTTP mode",
    "FIDO_SLACK_CHANNEL": "Slack channel id incident cards are posted to",
    "FIDO_APPROVERS": "Slack user ids allowed to approve, deny and undo",
    "FIDO_DATABASE_URL": "SQLite file or PostgreSQL URL",
    "FIDO_CONFIG": "The policy",
    "FIDO_AD_URL": "Active Directory: ldaps:// (or ldap:// with FIDO_AD_START_TLS=true)",
    "FIDO_AD_BIND_DN": "The account Fido binds as",
    "FIDO_AD_PASSWORD": "Its password",
    "FIDO_AD_BASE_DN": "Where users and computers are searched",
    "FIDO_AD_CA_FILE": "PEM file of the CA that signed the domain controller's certificate",
}


def env_text(answers: Answers) -> str:
    lines = [
        f"# Fido settings, written by fido init on {datetime.now(UTC):%Y-%m-%d}.",
        "# Secrets: keep this file private (mode 600). .env.example describes every setting;",
        "# the environment overrides this file. fido doctor checks that they work.",
    ]
    for name, value in answers.env.items():
        comment = ENV_COMMENTS.get(name, "A secret the policy names")
        lines += ["", f"# {comment}", f"{name}={env_value(value)}"]
    return "\n".join(lines) + "\n"


def policy_text(answers: Answers) -> str:
    import json

    def flow(value: Any) -> str:  # JSON is YAML: quoted where it must be
        return json.dumps(value, ensure_ascii=False)

    enrichers = (["active_directory"] if answers.directory else []) + list(answers.enrichers)
    lines = [
        f"# Fido's policy, written by fido init on {datetime.now(UTC):%Y-%m-%d}.",
        "# Every key is optional: fido.example.yml and docs/policy.md list them all with the",
        "# built-in defaults. Secrets never sit here: keys ending in _env name the environment",
        "# variables (in .env) holding them. Check it with `fido check-config`; `kill -HUP` a",
        "# running fido serve to reload it.",
        "",
        "# Detectors that accept alerts at POST /webhooks/NAME (token: FIDO_WEBHOOK_TOKEN).",
        "detectors:",
        *(f"  {name}: {{}}" for name in answers.detectors),
        "",
        "# Asked about every incident's users, hosts and indicators.",
        f"enrichers: {flow(enrichers)}",
    ]
    if answers.enrichers:
        lines.append("enricher_options:")
        lines += [f"  {name}: {flow(options)}" for name, options in answers.enrichers.items()]
    lines += ["", "# What Fido may do about an incident. Nothing runs on its own: an approver"]
    if answers.directory:
        lines += [
            "# clicks Approve on the card to disable the account in Active Directory, and",
            "# Undo enables it again.",
            "actions:",
            "  - responder: ad_disable_account",
        ]
    else:
        lines += [
            "# clicks Approve, and log_only records what would be done (add a responder from",
            "# docs/responders/ when you are ready).",
            "actions:",
            "  - responder: log_only",
            "    require_directory_match: false",
        ]
    from pipeline.policy import Policy

    limits = Policy().thresholds  # the built-in ones, written out to be tuned
    lines += [
        "",
        "# Scores 0-100: a card from notify, asking an approver from ask_approval; auto_act",
        "# (off until you set it) would act without asking.",
        f"thresholds: {{notify: {limits.notify}, ask_approval: {limits.ask_approval}}}",
    ]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def may_write(path: Path, *, force: bool, interactive: bool) -> bool:
    if not path.exists() or force:
        return True
    if interactive:
        return bool(typer.confirm(f"{path} exists. Overwrite it?", default=False))
    return False


def known(kind: str) -> list[str]:
    from integrations import load_all
    from pipeline import plugins

    load_all()
    registry: Any = {"detectors": plugins.detectors, "lookups": plugins.lookups}[kind]
    return sorted(registry.names())


def enricher_options(name: str, given: dict[str, str], ask: Asker) -> dict[str, Any]:
    """The options of a chosen enricher, from its documented example: each ``*_env`` key
    kept (its secret is asked for below), every other key asked (``--option NAME.KEY=V``)."""
    from pipeline.plugins import lookups

    extra: Any = lookups.get(name).Options.model_config.get("json_schema_extra") or {}
    example = dict((extra.get("examples") or [{}])[0]) if isinstance(extra, dict) else {}
    options: dict[str, Any] = {}
    for key, value in example.items():
        if key.endswith("_env") or not isinstance(value, str):
            options[key] = value
        else:
            flag = f"--option {name}.{key}=…"
            options[key] = ask(given.get(f"{name}.{key}"), f"{name} {key}", flag, default=None)
    return options


def gather(ask: Asker, flags: dict[str, Any]) -> Answers:
    answers = Answers()
    env = answers.env
    env["FIDO_WEBHOOK_TOKEN"] = flags["webhook_token"] or secrets.token_urlsafe(32)
    mode = ask.choose(flags["slack_mode"], "Slack mode", ["socket", "http"], "socket")
    env["SLACK_BOT_TOKEN"] = ask(
        flags["bot_token"], "Slack bot token (xoxb-…)", "--bot-token", secret=True
    )
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = ask(
            flags["app_token"], "Slack app-level token (xapp-…)", "--app-token", secret=True
        )
    else:
        env["SLACK_SIGNING_SECRET"] = ask(
            flags["signing_secret"], "Slack signing secret", "--signing-secret", secret=True
        )
    env["FIDO_SLACK_CHANNEL"] = ask(
        flags["channel"], "Slack channel id for incident cards (C…)", "--channel"
    )
    approvers = ask(flags["approvers"], "Slack user ids of the approvers", "", default="")
    if approvers:
        env["FIDO_APPROVERS"] = approvers
    if flags["database_url"]:
        env["FIDO_DATABASE_URL"] = flags["database_url"]
    answers.directory = flags["use_directory"]
    if answers.directory is None:
        question = "Use Active Directory (look up users, disable accounts on approval)?"
        answers.directory = ask.choose(None, question, ["yes", "no"], "yes") == "yes"
    if answers.directory:
        env["FIDO_AD_URL"] = ask(flags["ad_url"], "Domain controller URL (ldaps://…)", "--ad-url")
        env["FIDO_AD_BIND_DN"] = ask(flags["ad_bind_dn"], "Bind account DN", "--ad-bind-dn")
        env["FIDO_AD_PASSWORD"] = ask(
            flags["ad_password"], "Its password", "--ad-password", secret=True
        )
        env["FIDO_AD_BASE_DN"] = ask(
            flags["ad_base_dn"], "Base DN (DC=corp,DC=example,DC=com)", "--ad-base-dn"
        )
        if flags["ad_ca_file"]:
            env["FIDO_AD_CA_FILE"] = flags["ad_ca_file"]
    detectors, lookups = known("detectors"), known("lookups")
    answers.detectors = _names(
        ask(
            flags["detectors"],
            f"Detectors, comma-separated ({', '.join(detectors)})",
            "",
            default="generic",
        ),
        detectors,
        "detector",
    )
    chosen = _names(
        ask(
            flags["enrichers"],
            f"Enrichers, comma-separated ({', '.join(lookups)})",
            "",
            default="",
        ),
        lookups,
        "enricher",
    )
    options = dict(_pairs(flags["option"], "--option"))
    given_secrets = dict(_pairs(flags["secret"], "--secret"))
    for name in chosen:
        answers.enrichers[name] = enricher_options(name, options, ask)
        for key, value in answers.enrichers[name].items():
            if key.endswith("_env"):
                env[value] = ask(
                    given_secrets.get(value),
                    f"{value} ({name})",
                    f"--secret {value}=…",
                    secret=True,
                )
    return answers


def _names(text: str, choices: list[str], noun: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in choices]
    if unknown:
        raise ConfigError(f"unknown {noun} {', '.join(unknown)} (known: {', '.join(choices)})")
    return list(dict.fromkeys(names))


def _pairs(values: list[str] | None, flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE, not {item!r}")
        pairs.append((key.strip(), value))
    return pairs


def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="where to write .env and fido.yml")
    ] = Path("."),
    slack_mode: Annotated[
        str | None, typer.Option(metavar="socket|http", help="Slack mode")
    ] = None,
    bot_token: Annotated[str | None, typer.Option(metavar="xoxb-…", help="Slack bot token")] = None,
    app_token: Annotated[
        str | None, typer.Option(metavar="xapp-…", help="app token (Socket Mode)")
    ] = None,
    signing_secret: Annotated[str | None, typer.Option(metavar="SECRET", help="HTTP mode")] = None,
    channel: Annotated[
        str | None, typer.Option(metavar="C…", help="channel id for the cards")
    ] = None,
    approvers: Annotated[
        str | None, typer.Option(metavar="U1,U2", help="approvers' user ids")
    ] = None,
    webhook_token: Annotated[
        str | None, typer.Option(metavar="TOKEN", help="default: random")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(metavar="URL", help="default: ./fido.db")
    ] = None,
    use_directory: Annotated[
        bool | None, typer.Option("--directory/--no-directory", help="use Active Directory")
    ] = None,
    ad_url: Annotated[
        str | None, typer.Option(metavar="ldaps://…", help="domain controller")
    ] = None,
    ad_bind_dn: Annotated[str | None, typer.Option(metavar="DN", help="bind account")] = None,
    ad_password: Annotated[
        str | None, typer.Option(metavar="PASSWORD", help="its password")
    ] = None,
    ad_base_dn: Annotated[str | None, typer.Option(metavar="DN", help="base DN")] = None,
    ad_ca_file: Annotated[
        str | None, typer.Option(metavar="PEM", help="the directory's CA")
    ] = None,
    detectors: Annotated[str | None, typer.Option(metavar="NAMES", help="default: generic")] = None,
    enrichers: Annotated[str | None, typer.Option(metavar="NAMES", help="e.g. virustotal")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME.KEY=VALUE", help="an enricher option, e.g. misp.base_url=https://…"
        ),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            metavar="VAR=VALUE", help="a secret an enricher names, e.g. VIRUSTOTAL_API_KEY=…"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
    no_input: Annotated[bool, typer.Option("--no-input", help="ask nothing: flags only")] = False,
    run_doctor: Annotated[
        bool, typer.Option("--doctor/--no-doctor", help="check afterwards")
    ] = True,
) -> None:
    """Write .env (secrets, mode 600) and a commented fido.yml, then run fido doctor.

    Asks the few questions that matter, or takes every answer as a flag for scripts.
    Existing files are never overwritten without asking (--force for scripts).
    """
    flags = dict(locals())  # every answer given, by parameter name
    interactive = not no_input and sys.stdin.isatty()
    ask = Asker(interactive)
    env_path, policy_path = directory / ".env", directory / "fido.yml"
    refused = [
        str(p)
        for p in (env_path, policy_path)
        if not may_write(p, force=force, interactive=interactive)
    ]
    if refused:
        typer.echo(
            f"fido: {' and '.join(refused)} exist: nothing written (--force overwrites)", err=True
        )
        raise typer.Exit(1)
    answers = gather(ask, flags)
    if ask.missing:
        typer.echo(
            f"fido: missing answers, give {', '.join(ask.missing)}: nothing written", err=True
        )
        raise typer.Exit(2)
    answers.env["FIDO_CONFIG"] = str(policy_path.resolve())
    directory.mkdir(parents=True, exist_ok=True)
    write_private(env_path, env_text(answers))
    policy_path.write_text(policy_text(answers), encoding="utf-8")
    typer.echo(f"wrote {env_path} (mode 600) and {policy_path}")
    if run_doctor:
        raise typer.Exit(doctor_for(env_path))


def doctor_for(env_path: Path) -> int:
    """Run ``fido doctor`` on the settings in ``env_path`` (the environment still wins)."""
    import asyncio

    from bot import doctor
    from bot.settings import Settings
    from bot.wiring import process_environ

    settings = Settings(_env_file=env_path)  # type: ignore[call-arg]
    checks = asyncio.run(doctor.diagnose(settings, environ=process_environ(env_path)))
    typer.echo(doctor.render(checks))
    return doctor.exit_code(checks)
