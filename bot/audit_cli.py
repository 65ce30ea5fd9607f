"""``fido audit``: check the audit log's hash chain, and export it for a SIEM.

``verify`` walks the chain a page at a time: exit 0 and the last hash when it is intact,
exit 1 naming the first bad entry and why. The chain alone cannot show that its newest
entries were deleted, nor a rewrite by someone who recomputed every later hash: keep the
printed ``ID:HASH`` somewhere else (a ticket, the SIEM) and give it back with
``--anchor``. ``export`` writes one JSON object per line with ``hash`` and ``prev_hash``,
so the SIEM can check the chain too (``pipeline/audit.py`` describes the hashed form).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.settings import Settings
from pipeline import audit
from pipeline import db as database
from pipeline.errors import ConfigError, InputError

app = typer.Typer(help="The audit log: verify its hash chain, export it.", no_args_is_help=True)


class Format(StrEnum):
    jsonl = "jsonl"


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError, worded for people
        raise ConfigError(f"invalid setting: {exc}") from None


def describe(verdict: audit.Verdict) -> str:
    n = verdict.entries
    counted = f"{n} entr{'y' if n == 1 else 'ies'}"
    if verdict.broken is None:
        last = f" (entry {verdict.last_id})" if verdict.last_id is not None else ""
        return f"audit log intact: {counted}, last hash {verdict.last_hash}{last}"
    broken = verdict.broken
    return (
        f"audit log broken at entry {broken.entry}: {broken.problem}: {broken.reason}\n"
        f"{counted} before it verified"
    )


def verdict_json(verdict: audit.Verdict) -> dict[str, Any]:
    """``entries``, ``last_id`` and ``last_hash`` are those of the part that verified."""
    broken = verdict.broken
    return {
        "intact": broken is None,
        "entries": verdict.entries,
        "last_id": verdict.last_id,
        "last_hash": verdict.last_hash,
        "broken": None
        if broken is None
        else {"entry": broken.entry, "problem": broken.problem, "reason": broken.reason},
    }


def parse_anchor(text: str) -> tuple[int, str]:
    found = re.fullmatch(r"\s*(\d+)\s*:\s*([0-9a-fA-F]{64})\s*", text)
    if not found:
        raise typer.BadParameter(
            f"{text!r} is not ID:HASH (an entry id and its 64-digit hex hash)",
            param_hint="'--anchor'",
        )
    return int(found[1]), found[2].lower()


def parse_since(text: str, *, now: datetime) -> datetime:
    """``7d``, ``12h``, ``90m``, ``2w`` before ``now``, or an ISO date or time (UTC when
    it has no offset)."""
    from bot.tools import duration

    try:
        return now - duration(text)
    except InputError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a duration (90m, 12h, 7d, 2w) nor an ISO date "
            "(2025-01-31, 2025-01-31T08:00:00+01:00)",
            param_hint="'--since'",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _verify(settings: Settings, anchor: tuple[int, str] | None) -> audit.Verdict:
    await asyncio.to_thread(database.upgrade, settings.database_url)
    db = database.Database(settings.database_url)
    try:
        return await audit.verify(db, anchor=anchor)
    finally:
        await db.dispose()


async def _export(settings: Settings, since: datetime | None, write: Callable[[str], Any]) -> int:
    await asyncio.to_thread(database.upgrade, settings.database_url)
    db = database.Database(settings.database_url)
    count = 0
    try:
        async for page in audit.export(db, since=since):
            write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in page))
            count += len(page)
    finally:
        await db.dispose()
    return count


@app.command()
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    anchor: Annotated[
        str | None,
        typer.Option(
            metavar="ID:HASH",
            help="an entry and the hash verify printed for it before: it must still be "
            "there, unchanged (detects a truncated or rewritten log)",
        ),
    ] = None,
) -> None:
    """Check the audit log's hash chain: exit 0 if intact, 1 naming the first bad entry."""
    anchored = parse_anchor(anchor) if anchor is not None else None
    verdict = asyncio.run(_verify(_settings(), anchored))
    typer.echo(json.dumps(verdict_json(verdict)) if as_json else describe(verdict))
    if verdict.broken is not None:
        raise typer.Exit(1)


@app.command()
def export(
    since: Annotated[
        str | None,
        typer.Option(help="only entries of the last 90m, 12h, 7d, 2w…, or since an ISO date"),
    ] = None,
    format_: Annotated[
        Format, typer.Option("--format", help="jsonl: one JSON object per line")
    ] = Format.jsonl,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="write to FILE, not standard output"),
    ] = None,
) -> None:
    """Write the audit log, hashes included, one JSON object per line (for a SIEM)."""
    start = parse_since(since, now=datetime.now(UTC)) if since is not None else None
    settings = _settings()
    if output is None:
        try:
            asyncio.run(_export(settings, start, lambda text: typer.echo(text, nl=False)))
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `fido audit export | head`: the reader has enough
            devnull = os.open(os.devnull, os.O_WRONLY)  # no second error when Python exits
            os.dup2(devnull, sys.stdout.fileno())
        return
    try:
        handle = output.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from None
    with handle:
        count = asyncio.run(_export(settings, start, handle.write))
    typer.echo(f"{count} audit entr{'y' if count == 1 else 'ies'} written to {output}", err=True)
