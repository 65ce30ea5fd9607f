"""What the source tests read back from Fido's database."""

from __future__ import annotations

from sqlmodel import col, select

from pipeline.db import Database
from pipeline.models import DeadLetter, Event


async def stored_events(db: Database, detector: str | None = None) -> list[Event]:
    """Every stored event, oldest first."""
    async with db.session() as session:
        query = select(Event).order_by(col(Event.id))
        if detector is not None:
            query = query.where(Event.detector == detector)
        return list((await session.exec(query)).all())


async def dead_letters(db: Database) -> list[DeadLetter]:
    async with db.session() as session:
        return list((await session.exec(select(DeadLetter).order_by(col(DeadLetter.id)))).all())
