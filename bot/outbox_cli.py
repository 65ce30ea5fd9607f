"""``fido outbox``: messages Fido has not delivered yet (cards, automatic actions), and
putting failed ones back in line once the cause (a missing channel, a revoked token) is
fixed. A running ``fido serve`` delivers them within a second."""

from __future__ import annotations

import asyncio

import typer

from bot.settings import Settings
from pipeline import db as database
from pipeline import outbox
from pipeline.errors import ConfigError
from pipeline.models import OutboxMessage, OutboxStatus, utcnow

app = typer.Typer(
    help="Messages not delivered yet (cards, automatic actions).", invoke_without_command=True
)


def describe(message: OutboxMessage) -> str:
    when = f" next try {message.not_before:%Y-%m-%d %H:%M:%S}" if message.not_before else ""
    error = f": {message.last_error}" if message.last_error else ""
    return (
        f"{message.id:>6}  incident {message.incident_id}  {message.kind:<5} {message.status:<8}"
        f" {message.attempts} attempts{when if message.status == 'pending' else ''}{error}"
    )


async def _listing(settings: Settings, *, failed_only: bool) -> list[str]:
    await asyncio.to_thread(database.upgrade, settings.database_url)
    db = database.Database(settings.database_url)
    try:
        statuses = (
            [OutboxStatus.failed] if failed_only else [OutboxStatus.pending, OutboxStatus.failed]
        )
        return [describe(m) for m in await outbox.listing(db, statuses=statuses)]
    finally:
        await db.dispose()


async def _retry(settings: Settings, ids: list[int] | None) -> int:
    await asyncio.to_thread(database.upgrade, settings.database_url)
    db = database.Database(settings.database_url)
    try:
        return await outbox.retry(db, ids=ids, now=utcnow())
    finally:
        await db.dispose()


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError, worded for people
        raise ConfigError(f"invalid setting: {exc}") from None


@app.callback()
def show(
    ctx: typer.Context,
    failed: bool = typer.Option(False, "--failed", help="only those that failed for good"),
) -> None:
    """List messages not delivered yet: waiting to be retried, or failed."""
    if ctx.invoked_subcommand is not None:
        return
    lines = asyncio.run(_listing(_settings(), failed_only=failed))
    typer.echo("\n".join(lines) if lines else "nothing waiting: every message was delivered")


@app.command("retry")
def retry(
    ids: list[int] = typer.Argument(None, help="message ids (default: every failed one)"),
) -> None:
    """Put failed messages back in line (after fixing their cause)."""
    count = asyncio.run(_retry(_settings(), ids or None))
    typer.echo(f"{count} message{'' if count == 1 else 's'} put back in line")
