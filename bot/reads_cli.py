"""``fido incidents`` and ``fido stats``: the reads of ``/fido incidents`` and ``/fido
stats`` on the command line, from the same queries (``pipeline/reads.py``,
``pipeline/stats.py``) and the same blocks, read as plain text (``fido incident N`` is
in ``bot/tools.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

import typer

from bot.settings import Settings
from pipeline import db as database
from pipeline import reads, stats
from pipeline.clock import as_utc
from pipeline.errors import InputError
from pipeline.models import utcnow

LIMIT = 50


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


async def incidents(
    settings: Settings, which: reads.Which, *, user: str | None, as_json: bool
) -> str:
    from bot.slack.detail_blocks import incidents_blocks
    from bot.slack.text import render_text

    if which is reads.Which.mine and not user:
        raise InputError("`mine` needs --user, the Slack user id whose incidents to list")
    await asyncio.to_thread(database.upgrade, settings.database_url)
    db = database.Database(settings.database_url)
    try:
        found = await reads.incidents(db, which=which, now=utcnow(), actor=user, limit=LIMIT)
    finally:
        await db.dispose()
    if as_json:
        keys = ("id", "title", "severity", "status", "score", "decision", "verdict")
        return _json(
            [
                {**{k: getattr(i, k) for k in keys}, "updated_at": as_utc(i.updated_at)}
                for i in found
            ]
        )
    return render_text(incidents_blocks(which, found, limit=LIMIT))


async def report(settings: Settings, window: str, *, as_json: bool) -> str:
    from bot.slack.detail_blocks import stats_blocks
    from bot.slack.text import render_text
    from bot.tools import duration

    span = duration(window)
    if span > stats.MAX_WINDOW:
        raise InputError("--since: at most a year")
    await asyncio.to_thread(database.upgrade, settings.database_url)
    db = database.Database(settings.database_url)
    try:
        found = await stats.stats(db, now=utcnow(), window=span)
    finally:
        await db.dispose()
    if as_json:
        fields = asdict(found)
        for key in ("to_acknowledge", "to_approve", "to_contain"):
            value = getattr(found, key)
            fields[key] = None if value is None else value.total_seconds()
        fields["precision"]["value"] = found.precision.value
        return _json(fields)
    return render_text(stats_blocks(found))


def register(app: typer.Typer, settings: Callable[[], Settings]) -> None:
    def run(work: Any) -> None:
        try:
            typer.echo(asyncio.run(work))
        except InputError as exc:
            typer.echo(f"fido: {exc}".replace("`", ""), err=True)
            raise typer.Exit(1) from None

    @app.command("incidents")
    def incidents_command(
        which: Annotated[
            reads.Which, typer.Argument(help="open, mine or today")
        ] = reads.Which.open,
        user: Annotated[str | None, typer.Option("--user", help="Slack user id, for mine")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """List incidents: open by score, the ones USER acted on, or the last 24 hours'."""
        run(incidents(settings(), which, user=user, as_json=as_json))

    @app.command("stats")
    def stats_command(
        since: Annotated[str, typer.Option("--since", help="the window: 24h, 7d, 30d, 2w…")] = "7d",
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Alerts, incidents, actions, response times and auto-action precision."""
        run(report(settings(), since, as_json=as_json))
