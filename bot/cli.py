"""The ``fido`` command."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any, Literal

import typer
from typer.core import TyperArgument, TyperOption

from bot import init_cli, reads_cli, respond_cli
from bot.audit_cli import app as audit_app
from bot.outbox_cli import app as outbox_app
from bot.settings import AD_REQUIRED, SERVE_REQUIRED
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sized

    from pipeline.policy import Policy

app = typer.Typer(
    help="Fido: an automated security-incident responder that lives in Slack.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _settings():
    from bot.settings import Settings

    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError, worded for people
        raise ConfigError(f"invalid setting: {exc}") from None


def _logging(level: str, kind: Literal["text", "json"] | None = None) -> None:
    from bot import logs

    logs.configure(level, kind)  # text, or one JSON object per line (FIDO_LOG_FORMAT=json)


def _ready(command: str, *, serve: bool = False, sections: tuple[str, ...] = ()):
    """The settings, once every one ``command`` needs is present and valid: otherwise one
    ConfigError naming them all, before any file or database is created."""
    from bot.doctor_settings import check_settings
    from pipeline.policy import load_policy

    settings = _settings()
    policy = load_policy(settings.config)
    report = check_settings(settings, policy, serve=serve, sections=sections)
    report.raise_if_any(f"fido {command}")
    return settings


SERVE_HELP = f"""Run Fido: webhooks, Slack, the pipeline worker and the scheduler.

Settings come from the environment, or from a .env file in the working directory (the \
environment wins). .env.example describes each one; fido init writes them; fido doctor \
checks that they work.

Required: {", ".join(SERVE_REQUIRED)}; SLACK_SIGNING_SECRET (HTTP mode) or \
SLACK_APP_TOKEN (Socket Mode); {", ".join(AD_REQUIRED)} while the policy uses Active \
Directory (the built-in policy does); and every secret the policy (FIDO_CONFIG) names. \
Fido checks them all before it creates anything and lists every one missing in one message.
"""


@app.command(help=SERVE_HELP)
def serve() -> None:
    from bot.doctor_settings import SECTIONS
    from bot.service import serve as run

    settings = _ready("serve", serve=True, sections=SECTIONS)
    _logging(settings.log_level, settings.log_format)
    asyncio.run(run(settings))


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Check every setting and every system Fido reaches, and say how to fix each failure.

    One line per check: ok, failed or skipped, with the reason. Exits 0 only when every
    check that ran passed. Nothing is changed: no database is created or migrated, no
    message is posted, no lookup spends a quota.
    """
    from bot import doctor as checkup

    settings = _settings()
    checks = asyncio.run(checkup.diagnose(settings))
    typer.echo(checkup.render_json(checks) if as_json else checkup.render(checks))
    raise typer.Exit(checkup.exit_code(checks))


@app.command()
def demo(
    slack: bool = typer.Option(
        False, "--slack", help="post the cards to FIDO_SLACK_CHANNEL too, as fido serve would"
    ),
) -> None:
    """Feed bundled sample alerts through the real pipeline, offline, and print the incidents.

    With --slack the same cards are posted to a real workspace (SLACK_BOT_TOKEN and
    FIDO_SLACK_CHANNEL, from the environment or .env), so a team can see them before
    wiring detectors.
    """
    from bot.demo import run_demo

    settings = None
    if slack:
        from bot.doctor_settings import require

        settings = _settings()
        require(settings, "SLACK_BOT_TOKEN", "FIDO_SLACK_CHANNEL", doing="fido demo --slack")
    _logging("WARNING")
    raise typer.Exit(asyncio.run(run_demo(sys.stdout, settings)))


@app.command()
def parse(
    detector: str = typer.Argument(..., help="detector name, e.g. generic, crowdstrike"),
    file: str = typer.Argument(..., help="a file of alerts, or - for standard input"),
) -> None:
    """Print the events DETECTOR makes of FILE, exactly as Fido would store them."""
    from bot import tools
    from pipeline.errors import ParseError

    body = sys.stdin.buffer.read() if file == "-" else _read(file)
    try:
        with tools.Progress("parsing", sys.stderr) as bar:
            parsed = tools.parse(_settings(), detector, body, progress=bar)
        typer.echo(parsed)
    except ParseError as exc:
        reason = str(exc).removeprefix(f"{detector}: ")
        typer.echo(f"fido: {detector}: {reason}".replace("\n", " "), err=True)
        raise typer.Exit(1) from None


@app.command()
def lookup(
    kind: str = typer.Argument(..., help="user, host, ip, hash, domain or url"),
    value: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Ask every enricher about VALUE and show Fido's history with it (90 days)."""
    from bot import tools
    from pipeline.errors import InputError

    try:
        settings = _ready("lookup", sections=("enrichers",))
        typer.echo(asyncio.run(tools.lookup(settings, kind, value, as_json=as_json)))
    except InputError as exc:
        typer.echo(f"fido: {exc}".replace("`", ""), err=True)
        raise typer.Exit(1) from None


@app.command()
def incident(
    number: int = typer.Argument(..., metavar="N", help="the incident number"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Show incident N: every point of its score, its decision, verdict, events and actions."""
    from bot import tools
    from pipeline.errors import InputError

    try:
        typer.echo(asyncio.run(tools.incident(_settings(), number, as_json=as_json)))
    except InputError as exc:
        typer.echo(f"fido: {exc}".replace("`", ""), err=True)
        raise typer.Exit(1) from None


@app.command("check-config")
def check_config(
    path: str | None = typer.Argument(
        None, metavar="PATH", help="the policy file (default: $FIDO_CONFIG)"
    ),
) -> None:
    """Check a policy file: every problem with its line and column, or a summary."""
    from integrations import load_all
    from pipeline.policy_file import PolicyFileError, load_policy

    path = path or os.environ.get("FIDO_CONFIG", "")
    if not path:
        typer.echo("fido: no policy file: give PATH or set FIDO_CONFIG", err=True)
        raise typer.Exit(2)
    load_all()  # the plugins it names, whose options are checked too
    try:
        policy = load_policy(path, plugins=True)
    except PolicyFileError as exc:
        typer.echo("\n".join(str(problem) for problem in exc.problems))
        raise typer.Exit(1) from None
    typer.echo(f"{path}: valid — {_policy_summary(policy)}")


def _policy_summary(policy: Policy) -> str:
    def count(items: Sized, noun: str) -> str:
        n = len(items)
        return f"{n} {noun}{'' if n == 1 else 's'}"

    limits = policy.thresholds
    auto = "off" if limits.auto_act is None else str(limits.auto_act)
    return ", ".join(
        [
            count(policy.detectors, "detector"),
            count(policy.sources, "source"),
            count(policy.enrichers, "enricher"),
            count(policy.suppressions, "suppression"),
            f"thresholds notify {limits.notify} / ask {limits.ask_approval} / auto {auto}",
        ]
        + (["dry run"] if policy.dry_run else [])
    )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


dead_app = typer.Typer(
    help="Payloads no parser could read, kept verbatim.", invoke_without_command=True
)
app.add_typer(dead_app, name="dead-letters")
app.add_typer(outbox_app, name="outbox")
app.add_typer(audit_app, name="audit")


@dead_app.callback()
def dead_letters(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="include resolved ones"),
) -> None:
    """List dead letters (pending by default)."""
    if ctx.invoked_subcommand is not None:
        return
    from bot import tools

    lines = asyncio.run(tools.list_dead_letters(_settings(), all_=all_))
    typer.echo("\n".join(lines) if lines else "no dead letters")


@dead_app.command("retry")
def dead_letters_retry(
    ids: list[int] = typer.Argument(None, help="dead letter ids (default: all pending)"),
) -> None:
    """Parse pending dead letters again, e.g. after a parser fix."""
    from bot import tools

    settings = _ready("dead-letters retry", sections=("detectors",))
    lines = asyncio.run(tools.retry_dead_letters(settings, ids or None, progress=sys.stderr))
    typer.echo("\n".join(lines) if lines else "no dead letters to retry")
    if any(" failed: " in line for line in lines):
        raise typer.Exit(1)


@app.command()
def backtest(
    policy: str = typer.Option(..., "--policy", metavar="NEW.yml", help="the policy to try"),
    since: str | None = typer.Option(
        None, "--since", help="only incidents created in the last 90m, 12h, 30d, 2w…"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Re-score stored incidents under another policy and show what would change."""
    from bot import tools
    from pipeline.errors import InputError
    from pipeline.policy_file import PolicyFileError

    try:
        window = tools.duration(since) if since is not None else None
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    try:
        typer.echo(
            asyncio.run(
                tools.backtest(
                    _settings(), policy, since=window, as_json=as_json, progress=sys.stderr
                )
            )
        )
    except PolicyFileError as exc:
        problems = "\n".join(str(problem) for problem in exc.problems)
        typer.echo(f"fido: {policy} is not a valid policy:\n{problems}", err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create or migrate the database named by FIDO_DATABASE_URL."""
    from pipeline.db import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}")


# they build every responder of the policy: each one's settings are checked first
respond_cli.register(app, lambda command: _ready(command, sections=("responders",)))
app.command("init")(init_cli.init)
reads_cli.register(app, _settings)


class _Argument(TyperArgument):
    """An argument as help screens name it: DETECTOR in the usage line as in the text."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name and the help say what it is


class _Option(TyperOption):
    """An option as help screens show it: a flag alone, a value by its metavar or its
    choices, never a Python type such as <bool> or <str>."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar:
            return self.metavar
        described = self.type_descriptor
        if described.is_choice:
            return "|".join(str(choice) for choice in described.choices or ())
        return (self.name or "value").upper()


def plain_help(command: Any) -> Any:
    """``command`` and its subcommands with the help screens above."""
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
        elif type(param) is TyperOption:
            param.__class__ = _Option
    made = command.get_help_option

    def help_option(ctx: Any) -> Any:  # made when asked for
        option = made(ctx)
        if type(option) is TyperOption:
            option.__class__ = _Option
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command


def command() -> Any:
    """The ``fido`` command tree, ready to run (tests read every help screen from it)."""
    return plain_help(typer.main.get_command(app))


def main() -> None:
    try:
        command()(prog_name="fido")
    except ConfigError as exc:
        typer.echo(f"fido: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
