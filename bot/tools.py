"""The engineer's command-line tools behind ``fido parse`` and ``fido dead-letters``."""

from __future__ import annotations

import json
from typing import Any

from bot.settings import Settings
from bot.wiring import Wiring
from pipeline import db as database
from pipeline import deadletters
from pipeline.models import DeadLetter
from pipeline.plugins import ParsedEvent
from pipeline.policy import load_policy


def event_json(detector: str, event: ParsedEvent) -> dict[str, Any]:
    """An event exactly as the pipeline stores it."""
    return {
        "detector": detector,
        "external_id": event.external_id,
        "title": event.title,
        "severity": event.severity,
        "vendor_severity": event.vendor_severity,
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
        "observables": event.observables.model_dump(),
        "raw": event.raw,
    }


def parse(settings: Settings, detector: str, body: bytes) -> str:
    """Parse ``body`` as ``detector`` would, with the policy's options; raises ParseError."""
    wiring = Wiring(settings, load_policy(settings.config))
    parser = wiring.detector(detector)
    events = parser.parse(body)
    return json.dumps([event_json(detector, e) for e in events], indent=2, ensure_ascii=False)


async def lookup(settings: Settings, kind: str, value: str, *, as_json: bool) -> str:
    """What every enricher and Fido's history say about one value (raises InputError)."""
    from bot.slack.lookup_blocks import lookup_blocks
    from bot.slack.text import render_text
    from pipeline.investigate import investigate, validate
    from pipeline.worker import Pipeline

    validate(kind, value)
    await _upgrade(settings)
    policy = load_policy(settings.config)
    wiring = Wiring(settings, policy)
    db = database.Database(settings.database_url)
    try:
        pipeline = Pipeline(db=db, policy=policy, enrichers=wiring.enrichers(db))
        report = await investigate(pipeline, kind=kind, value=value)
    finally:
        await db.dispose()
    if as_json:
        return json.dumps(
            {
                "kind": report.kind,
                "value": report.value,
                "results": report.results,
                "history": report.history,
            },
            indent=2,
            default=str,
            ensure_ascii=False,
        )
    return render_text(lookup_blocks(report))


def describe(letter: DeadLetter) -> str:
    when = letter.received_at.strftime("%Y-%m-%d %H:%M:%S")
    error = letter.error.replace("\n", " ")
    return (
        f"{letter.id:>6}  {when}  {letter.detector:<16} {letter.source:<16} "
        f"{len(letter.body):>8} B  {letter.status:<9} {error}"
    )


async def list_dead_letters(settings: Settings, *, all_: bool) -> list[str]:
    await _upgrade(settings)
    db = database.Database(settings.database_url)
    try:
        letters = await deadletters.listing(db, status=None if all_ else "pending")
    finally:
        await db.dispose()
    return [describe(letter) for letter in letters]


async def retry_dead_letters(settings: Settings, ids: list[int] | None) -> list[str]:
    await _upgrade(settings)
    policy = load_policy(settings.config)
    wiring = Wiring(settings, policy)
    names = set(policy.detectors) | {s.detector for s in policy.sources.values()}
    parsers = {name: wiring.detector(name) for name in names}
    db = database.Database(settings.database_url)
    try:
        outcomes = await deadletters.retry(db, detectors=parsers, ids=ids)
    finally:
        await db.dispose()
    return [f"{o.id:>6}  {'parsed' if o.ok else 'failed'}: {o.message}" for o in outcomes]


async def _upgrade(settings: Settings) -> None:
    import asyncio

    await asyncio.to_thread(database.upgrade, settings.database_url)
