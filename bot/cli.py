"""The ``fido`` command."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer

from pipeline.errors import ConfigError

app = typer.Typer(
    help="Fido: an automated security-incident responder that lives in Slack.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _settings():  # type: ignore[no-untyped-def]
    from bot.settings import Settings

    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError, worded for people
        raise ConfigError(f"invalid setting: {exc}") from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve() -> None:
    """Run Fido: webhooks, Slack, the pipeline worker and the scheduler."""
    from bot.service import serve as run

    settings = _settings()
    _logging(settings.log_level)
    asyncio.run(run(settings))


@app.command()
def demo() -> None:
    """Feed bundled sample alerts through the real pipeline, offline, and print the cards."""
    from bot.demo import run_demo

    _logging("WARNING")
    raise typer.Exit(asyncio.run(run_demo(sys.stdout)))


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
        typer.echo(tools.parse(_settings(), detector, body))
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
        typer.echo(asyncio.run(tools.lookup(_settings(), kind, value, as_json=as_json)))
    except InputError as exc:
        typer.echo(f"fido: {exc}".replace("`", ""), err=True)
        raise typer.Exit(1) from None


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

    lines = asyncio.run(tools.retry_dead_letters(_settings(), ids or None))
    typer.echo("\n".join(lines) if lines else "no dead letters to retry")
    if any(" failed: " in line for line in lines):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Create or migrate the database named by FIDO_DATABASE_URL."""
    from pipeline.db import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}")


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"fido: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
