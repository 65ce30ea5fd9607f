"""``fido respond RESPONDER TARGET [--dry-run]``: contain something from a shell, and
``fido undo ACTION_ID``: reverse it (or any action) again.

The responder runs under the same rules as a click — never on a protected account or a
look-alike target, once while an earlier run still holds — and is audited as done by the
operator (``operator:USER``, USER from the environment). It belongs to no incident, so no
card carries its Undo button: ``fido undo`` runs the same undo as that button."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable

import typer

from bot.settings import Settings
from pipeline.errors import ConfigError, FidoError, InputError


def _operator() -> str:
    return f"operator:{getpass.getuser()}"


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
            operator=_operator(),
            dry_run=dry_run,
        )
    finally:
        await db.dispose()
    if not ran:
        return f"already done (action {action.id}, {action.status}): {action.result or ''}".strip()
    line = f"action {action.id}: {action.status}: {action.result}"
    if action.status == "succeeded" and built[responder].reversible:
        line += f"\nundo it with: fido undo {action.id}"
    return line


async def undo(settings: Settings, action_id: int) -> str:
    """Undo action ``action_id`` as the Undo button does, audited as the operator's.
    InputError when there is no such action, it did not succeed (or is undone already),
    or its responder cannot undo; ResponderError when the undo fails (the action stays
    in force and can be undone again)."""
    from bot.wiring import Wiring
    from pipeline import act
    from pipeline import db as database
    from pipeline.models import ActionStatus
    from pipeline.policy import load_policy

    await asyncio.to_thread(database.upgrade, settings.database_url)
    policy = load_policy(settings.config)
    built = Wiring(settings, policy).responders()
    db = database.Database(settings.database_url)
    try:
        action = await act.action(db, action_id)
        if action is None:
            raise InputError(f"there is no action {action_id}")
        what = f"action {action_id} ({action.responder} on {action.target})"
        runner = built.get(action.responder)
        if runner is None:
            raise ConfigError(f"{what}: no action rule enables {action.responder!r} now")
        if not runner.reversible:
            raise InputError(f"{what} cannot be undone: {action.responder} is not reversible")
        if action.status != ActionStatus.succeeded.value:
            raise InputError(f"{what} is {action.status}: only a succeeded action is undone")
        done = await act.undo(db=db, responders=built, action_id=action_id, actor=_operator())
    finally:
        await db.dispose()
    if done.status != ActionStatus.undone.value:  # someone else undid it meanwhile
        raise InputError(f"{what} is {done.status}: only a succeeded action is undone")
    return f"action {action_id}: undone: {done.result}"


def register(app: typer.Typer, settings: Callable[[str], Settings]) -> None:
    """Add ``respond`` and ``undo``; ``settings(command)`` checks what the command needs."""

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
            line = asyncio.run(respond(settings("respond"), responder, target, dry_run=dry_run))
        except FidoError as exc:
            typer.echo(f"fido: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(line)
        if line.startswith("action") and ": failed:" in line:
            raise typer.Exit(1)

    @app.command("undo")
    def undo_command(
        action_id: int = typer.Argument(
            ..., metavar="ACTION_ID", help="the action's id (fido respond prints it)"
        ),
    ) -> None:
        """Undo an action now (one fido respond ran, or any other), audited as done by you."""
        try:
            line = asyncio.run(undo(settings("undo"), action_id))
        except FidoError as exc:
            typer.echo(f"fido: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(line)
