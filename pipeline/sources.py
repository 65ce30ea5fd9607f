"""Polled sources: fetch a batch after the stored cursor, store its events and the new
cursor in one transaction, then let the source acknowledge (e.g. move the mail).

A crash before the commit repeats the batch, and dedup by (detector, external id) drops
what was already stored; a crash after it resumes from the new cursor. Payloads that do
not parse become dead letters; they never block the cursor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pipeline import deadletters
from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.ingest import ingest
from pipeline.models import SourceCursor, utcnow
from pipeline.plugins import Detector, Source

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    created: list[int] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0


async def cursor_of(db: Database, name: str) -> dict:
    async with db.session() as session:
        row = await session.get(SourceCursor, name)
        return dict(row.cursor) if row else {}


async def poll(
    *, db: Database, source: Source, detector: Detector, max_batches: int = 50
) -> PollResult:
    """Fetch and store until the source has nothing more (or ``max_batches``)."""
    result = PollResult()
    cursor = await cursor_of(db, source.name)
    for _ in range(max_batches):
        try:
            batch = await source.fetch(cursor)
        except Exception as exc:
            await _record_error(db, source.name, exc)
            raise
        async with db.session() as session:
            for payload in batch.payloads:
                try:
                    stored = await ingest(
                        session=session, detector=detector, body=payload, commit=False
                    )
                except ParseError as exc:
                    deadletters.keep(
                        session,
                        detector=detector.name,
                        body=payload,
                        error=str(exc),
                        source=source.name,
                    )
                    result.dead_letters += 1
                    continue
                result.created += stored.created
                result.duplicates += len(stored.duplicates)
            row = await session.get(SourceCursor, source.name) or SourceCursor(name=source.name)
            row.cursor, row.updated_at, row.last_error = batch.cursor, utcnow(), None
            session.add(row)
            await session.commit()
        result.batches += 1
        cursor = batch.cursor
        if batch.on_committed is not None:
            await batch.on_committed()
        if not batch.more:
            break
    return result


async def _record_error(db: Database, name: str, exc: Exception) -> None:
    async with db.session() as session:
        row = await session.get(SourceCursor, name) or SourceCursor(name=name)
        row.last_error, row.updated_at = f"{type(exc).__name__}: {exc}"[:4000], utcnow()
        session.add(row)
        await session.commit()
