"""Ingest: a detector's payload becomes stored, pending Events.

The events are committed before the caller answers the detector, so an accepted alert is
never lost; a redelivery of the same (detector, external id) is dropped as a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.models import Event
from pipeline.plugins import Detector, ParsedEvent

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    created: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def _fit(event: ParsedEvent) -> ParsedEvent:
    """Keep ids and vendor severities within their columns: an over-long id becomes its
    digest (distinct ids stay distinct), an over-long vendor severity is cut."""
    if len(event.external_id) > 255:
        digest = hashlib.sha256(event.external_id.encode()).hexdigest()
        event = replace(event, external_id=f"sha256:{digest}")
    if event.vendor_severity is not None and len(event.vendor_severity) > 64:
        event = replace(event, vendor_severity=event.vendor_severity[:64])
    return event


async def ingest(
    *, session: AsyncSession, detector: Detector, body: bytes, commit: bool = True
) -> IngestResult:
    """Parse ``body`` with ``detector`` and store new events (raises ParseError).

    With ``commit=False`` the caller commits, e.g. together with a source's cursor.
    """
    parsed = detector.parse(body)
    return await store(session=session, detector=detector.name, parsed=parsed, commit=commit)


async def store(
    *, session: AsyncSession, detector: str, parsed: list[ParsedEvent], commit: bool = True
) -> IngestResult:
    """Store parsed events, dropping those already stored for (detector, external id)."""
    result = IngestResult()
    parsed = [_fit(p) for p in parsed]
    wanted = {p.external_id for p in parsed}
    existing = set(
        (
            await session.exec(
                select(Event.external_id).where(
                    Event.detector == detector, col(Event.external_id).in_(wanted)
                )
            )
        ).all()
    )
    events: list[Event] = []
    for item in parsed:
        if item.external_id in existing:
            result.duplicates.append(item.external_id)
            continue
        existing.add(item.external_id)
        event = Event(
            detector=detector,
            external_id=item.external_id,
            occurred_at=item.occurred_at,
            severity=item.severity,
            vendor_severity=item.vendor_severity,
            title=item.title,
            observables=item.observables.model_dump(),
            raw=item.raw,
        )
        try:
            async with session.begin_nested():
                session.add(event)
        except IntegrityError:  # a concurrent delivery of the same alert won the race
            result.duplicates.append(item.external_id)
            continue
        events.append(event)
    if commit:
        await session.commit()
    else:
        await session.flush()
    result.created = [e.id for e in events if e.id is not None]
    if result.duplicates:
        log.info("%s: dropped duplicate alerts %s", detector, result.duplicates)
    return result
