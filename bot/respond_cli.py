"""``fido respond RESPONDER TARGET [--dry-run]``: contain something from a shell.

The responder runs under the same rules as a click — never on a protected account or a
look-alike target, once while an earlier run still holds — and is audited as done by the
operator (``operator:USER``, USER from the environment). It belongs to no incident."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable

import typer

from bot.settings import Settings
from pipeline.errors import ConfigError, FidoError


async def respond(settings: Settings, responder: str, target: str, *, dry_run: bool) -> str:
    from bot.wiring import Wiring
    from pipeline import act
    from pipeline import db as database
    from pipeline.policy import load_policy

    await asyncio.to_thread(database.upgrade, settings.database_url)
    policy = load_policy(settings.config)
    built = Wiring(settings, policy).responders()
    if responder not in built:
        known = ", ".join(sorted(built)) or "none"
        raise ConfigError(f"no action rule names {responder!r} (enabled: {known})")
    db = database.Database(settings.database_url)
    try:
        action, ran = await act.respond(
            db=db,
            policy=policy,
            responders=built,
            responder=responder,
            target=target,
            operator=f"operator:{getpass.getuser()}",
            dry_run=dry_run,
        )
    finally:
        await db.dispose()
    if not ran:
        return f"already done (action {action.id}, {action.status}): {action.result or ''}".strip()
    return f"action {action.id}: {action.status}: {action.result}"


def register(app: typer.Typer, settings: Callable[[], Settings]) -> None:
    @app.command("respond")
    def respond_command(
        responder: str = typer.Argument(
            ..., metavar="RESPONDER", help="an action rule's responder"
        ),
        target: str = typer.Argument(..., metavar="TARGET", help="the user or host to act on"),
        dry_run: bool = typer.Option(False, "--dry-run", help="only say what it would do"),
    ) -> None:
        """Run a responder on TARGET now, audited as done by you."""
        try:
            line = asyncio.run(respond(settings(), responder, target, dry_run=dry_run))
        except FidoError as exc:
            typer.echo(f"fido: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(line)
        if line.startswith("action") and ": failed:" in line:
            raise typer.Exit(1)
