"""Ingest: a detector's payload becomes stored, pending Events.

The events are committed before the caller answers the detector, so an accepted alert is
never lost; a redelivery of the same (detector, external id) is dropped as a duplicate.

What the database cannot hold, or must not be trusted with, is settled here for every
detector, before anything is written:

- an external id over 255 characters becomes its digest (distinct ids stay distinct);
- a control character (C0, DEL, C1) in an id or an observable refuses the delivery with a
  ParseError naming the field: those values are matched and acted on, so they are never
  "cleaned" into something else;
- a NUL in the raw payload (PostgreSQL text cannot hold one) refuses the delivery: the
  caller keeps the body byte for byte as a dead letter, so the payload stays verbatim;
- an occurred time outside the years 1970-2100 refuses the delivery;
- control characters other than tab and newline in the title or the vendor's severity,
  which only people read, are replaced by U+FFFD.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.batching import Batcher
from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.models import Event, utcnow
from pipeline.observables import Observables, control_character, without_control_characters
from pipeline.plugins import Detector, ParsedEvent

log = logging.getLogger(__name__)

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2101, 1, 1, tzinfo=UTC)  # exclusive: years 1970-2100
# Bound parameters per statement: PostgreSQL takes at most 65,535, SQLite 32,766.
_PARAMETERS = 10_000
_INLINE = 100  # events checked on the event loop; more are checked in a worker thread

_OBSERVABLE_LISTS = [name for name in Observables.model_fields if name != "hash_types"]

T = TypeVar("T")


@dataclass
class IngestResult:
    created: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def _refuse_controls(where: str, name: str, value: str) -> None:
    bad = control_character(value)
    if bad is not None:
        raise ParseError(f"{where}field {name!r} holds a control character (U+{ord(bad):04X})")


def in_years(moment: datetime) -> bool:
    """Whether ``moment`` (naive means UTC) lies in the years 1970-2100."""
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
        return False
    return EARLIEST <= utc < LATEST


def _checked(event: ParsedEvent, where: str) -> ParsedEvent:
    """``event`` as it may be stored (see the module's docstring), or ParseError."""
    _refuse_controls(where, "external id", event.external_id)
    for name in _OBSERVABLE_LISTS:
        for value in getattr(event.observables, name):
            _refuse_controls(where, f"observables.{name}", value)
    if "\x00" in event.raw:
        raise ParseError(f"{where}the raw payload holds a NUL character, which cannot be text")
    if event.occurred_at is not None and not in_years(event.occurred_at):
        raise ParseError(
            f"{where}field 'occurred_at': {event.occurred_at.isoformat()!r} is outside "
            "the years 1970-2100"
        )
    changes: dict[str, Any] = {"title": without_control_characters(event.title)}
    if len(event.external_id) > 255:
        digest = hashlib.sha256(event.external_id.encode()).hexdigest()
        changes["external_id"] = f"sha256:{digest}"
    if event.vendor_severity is not None:
        changes["vendor_severity"] = without_control_characters(event.vendor_severity)[:64]
    return replace(event, **changes)


def _rows(detector: str, parsed: Sequence[ParsedEvent]) -> list[dict[str, Any]]:
    """The Event rows for ``parsed``, each checked (see the module's docstring)."""
    received = utcnow()
    many = len(parsed) > 1
    rows = []
    for index, event in enumerate(parsed):
        item = _checked(event, f"alert {index}: " if many else "")
        rows.append(
            {
                "detector": detector,
                "external_id": item.external_id,
                "received_at": received,
                "occurred_at": item.occurred_at,
                "severity": item.severity,
                "vendor_severity": item.vendor_severity,
                "title": item.title,
                "observables": item.observables.model_dump(),
                "raw": item.raw,
            }
        )
    return rows


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def ingest(
    *, session: AsyncSession, detector: Detector, body: bytes, commit: bool = True
) -> IngestResult:
    """Parse ``body`` with ``detector`` (in a worker thread, so a large delivery never
    stalls the event loop) and store new events (raises ParseError).

    With ``commit=False`` the caller commits, e.g. together with a source's cursor.
    """
    parsed = await asyncio.to_thread(detector.parse, body)
    return await store(session=session, detector=detector.name, parsed=parsed, commit=commit)


async def store(
    *, session: AsyncSession, detector: str, parsed: list[ParsedEvent], commit: bool = True
) -> IngestResult:
    """Store parsed events, dropping those already stored for (detector, external id).

    Raises ParseError, storing nothing, when one of them cannot be stored as it is. Rows are
    inserted in chunks that stay far under the databases' limits on bound parameters,
    whatever the number of events; checking many events runs in a worker thread."""
    rows = await checked_rows(detector, parsed)
    (result,) = await _insert(session, [rows])
    if commit:
        await session.commit()
    else:
        await session.flush()
    _log_duplicates(detector, result)
    return result


async def checked_rows(detector: str, parsed: Sequence[ParsedEvent]) -> list[dict[str, Any]]:
    """The Event rows for ``parsed`` (ParseError when one cannot be stored as it is);
    checking many events runs in a worker thread, so it never stalls the event loop."""
    if len(parsed) <= _INLINE:
        return _rows(detector, parsed)
    return await asyncio.to_thread(_rows, detector, parsed)


def _insert_statement(dialect_name: str) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    # a stored alert (or a concurrent delivery of it that wins the race) is a duplicate
    return (
        dialect.insert(Event.__table__)  # type: ignore[attr-defined]
        .on_conflict_do_nothing()
        .returning(col(Event.id), col(Event.detector), col(Event.external_id))
    )


async def _insert(
    session: AsyncSession, deliveries: Sequence[Sequence[dict[str, Any]]]
) -> list[IngestResult]:
    """Insert the rows of several deliveries in the caller's transaction; one result per
    delivery, in order. The first row for a (detector, external id) wins, whether the
    other is in the database already, in the same delivery or in another one."""
    results = [IngestResult() for _ in deliveries]
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    owners: dict[tuple[str, str], int] = {}
    for index, delivery in enumerate(deliveries):
        for row in delivery:
            key = (row["detector"], row["external_id"])
            if key in seen:
                results[index].duplicates.append(row["external_id"])
                continue
            seen.add(key)
            owners[key] = index
            rows.append(row)
    if not rows:
        return results
    connection = await session.connection()
    statement = _insert_statement(connection.dialect.name)
    inserted: dict[tuple[str, str], int] = {}
    for chunk in _chunks(rows, _PARAMETERS // len(rows[0])):
        done = await connection.execute(statement, list(chunk))
        inserted.update(((detector, xid), key) for key, detector, xid in done.all())
    for row in rows:
        key = (row["detector"], row["external_id"])
        target = results[owners[key]]
        if key in inserted:
            target.created.append(inserted[key])
        else:
            target.duplicates.append(row["external_id"])
    return results


def _log_duplicates(detector: str, result: IngestResult) -> None:
    if result.duplicates:
        shown = ", ".join(result.duplicates[:10]) + (" …" if len(result.duplicates) > 10 else "")
        log.info("%s: dropped %d duplicate alerts: %s", detector, len(result.duplicates), shown)


class GroupCommit:
    """Stores concurrent webhook deliveries in shared transactions (a group commit).

    A delivery waits at most ``window`` seconds for others to join it; then everything
    waiting is inserted and committed together, and each caller gets its own result only
    after that commit: every 202 still follows the commit that holds its alerts. One commit
    (one fsync on SQLite) then serves many requests instead of one.

    When a shared transaction fails, each of its deliveries is stored again in a transaction
    of its own, so one delivery's failure is never its neighbours'; an error that belongs
    to the database (unreachable, locked) reaches every caller it concerns. A client that
    hangs up does not cancel its neighbours' commit (``pipeline/batching.py``).
    """

    def __init__(self, db: Database, *, window: float = 0.002, most: int = 5_000) -> None:
        self.db = db
        self._batcher: Batcher[list[dict[str, Any]], IngestResult] = Batcher(
            self._commit, window=window, most=most, size=len, name="fido-group-commit"
        )

    async def store(self, detector: str, parsed: Sequence[ParsedEvent]) -> IngestResult:
        """Check and store one delivery (ParseError when it cannot be stored as it is)."""
        rows = await checked_rows(detector, parsed)
        result = await self._batcher.submit(rows)
        _log_duplicates(detector, result)
        return result

    async def _commit(self, deliveries: list[list[dict[str, Any]]]) -> list[IngestResult]:
        async with self.db.session() as session:
            results = await _insert(session, deliveries)
            await session.commit()
        return results
