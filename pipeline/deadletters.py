"""Dead letters: authentic payloads no parser could read, kept verbatim with the error.

Nothing an authenticated detector sends is lost: the webhook answers 422 with the reason
and keeps the body here; after a parser fix, ``fido dead-letters retry`` parses them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.ingest import ingest
from pipeline.models import DeadLetter, DeadLetterStatus, utcnow
from pipeline.observables import without_control_characters
from pipeline.plugins import Detector

log = logging.getLogger(__name__)


def keep(
    session: AsyncSession, *, detector: str, body: bytes, error: str, source: str = "webhook"
) -> DeadLetter:
    """Add a dead letter to ``session`` (the caller commits). The body is kept byte for
    byte; the parser's error is text for people, and may quote what broke it, so control
    characters in it (a NUL, which PostgreSQL text cannot hold) become U+FFFD."""
    error = without_control_characters(error)
    letter = DeadLetter(detector=detector, body=body, error=error[:4000], source=source)
    session.add(letter)
    log.warning("%s (%s): kept an unparsable payload: %s", detector, source, error)
    return letter


async def listing(
    db: Database, *, status: str | None = DeadLetterStatus.pending.value
) -> list[DeadLetter]:
    async with db.session() as session:
        query = select(DeadLetter).order_by(col(DeadLetter.id))
        if status is not None:
            query = query.where(DeadLetter.status == status)
        return list((await session.exec(query)).all())


@dataclass
class RetryOutcome:
    id: int
    ok: bool
    message: str


async def retry(
    db: Database,
    *,
    detectors: Mapping[str, Detector],
    ids: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RetryOutcome]:
    """Parse pending dead letters again; each success stores its events and is resolved.
    ``progress(done, total)`` is called before the first and after each one."""
    outcomes: list[RetryOutcome] = []
    letters = [letter for letter in await listing(db) if ids is None or letter.id in ids]
    if progress is not None:
        progress(0, len(letters))
    for letter in letters:
        assert letter.id is not None
        detector = detectors.get(letter.detector)
        async with db.session() as session:
            fresh = await session.get(DeadLetter, letter.id)
            assert fresh is not None
            fresh.attempts += 1
            fresh.retried_at = utcnow()
            if detector is None:
                message = f"no detector named {letter.detector!r} is enabled"
                ok = False
            else:
                try:
                    result = await ingest(
                        session=session, detector=detector, body=fresh.body, commit=False
                    )
                except ParseError as exc:
                    fresh.error = str(exc)[:4000]
                    message, ok = str(exc), False
                else:
                    fresh.status = DeadLetterStatus.resolved.value
                    message = (
                        f"{len(result.created)} new events, {len(result.duplicates)} duplicates"
                    )
                    ok = True
            session.add(fresh)
            await session.commit()
        outcomes.append(RetryOutcome(letter.id, ok, message))
        if progress is not None:
            progress(len(outcomes), len(letters))
    return outcomes
