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
