"""The append-only, hash-chained audit log: every state change, who made it, and when.

**The chain.** Each entry carries ``prev_hash``, the ``hash`` of the entry before it
(``GENESIS`` for the first), and its own ``hash``: the SHA-256 (hex) of its canonical form
(``fields_of`` → ``digest``). Editing an entry breaks its hash; deleting or reordering
entries breaks a link; ``verify`` walks the chain in id order and names the first bad
entry. The hash includes the id, so a row cannot be moved or renumbered unnoticed.

**The canonical form** is one JSON object, keys sorted, no whitespace (``","`` and
``":"``), non-ASCII escaped (``\\uXXXX``), of ``id``, ``at`` (UTC, ISO 8601 with
microseconds: ``2025-01-02T03:04:05.000006+00:00``), ``actor``, ``verb``, ``target``,
``incident_id``, ``detail`` and ``prev_hash`` — exactly a line of ``fido audit export``
without its ``hash``, so a SIEM can check every hash. It is computed from the values as
the database gives them back, on SQLite and PostgreSQL alike: ``at`` in UTC (SQLite keeps
no offset, PostgreSQL answers in the session's zone; both keep microseconds) and
``detail`` after a JSON round trip (what SQLAlchemy writes and reads: string keys, lists
for tuples), with keys sorted (so their stored order does not matter) and a float that is
a whole number written as that integer (``2.0`` → ``2``; a ``jsonb`` column or another
language's parser may give either back).

**Joining the chain at commit.** ``record`` keeps the entry with the session (an entry
added with ``session.add`` is moved there at the next flush); when the transaction
commits, a ``before_commit`` hook takes the chain lock, reads the last entry's id and hash
(once per transaction, however many entries it records), gives each new entry
the next id, ``prev_hash`` and ``hash``, and the commit's own flush inserts them; until
then they are None. No UPDATE follows the insert (the table refuses them), and ``record``
itself issues no statement: a transaction that records pays one indexed read (and on
PostgreSQL the lock), whatever the number of entries.

The chain lock: on SQLite every transaction already holds the database's one write lock
from its first statement (``BEGIN IMMEDIATE``, ``pipeline/db.py``), so nothing is taken.
On PostgreSQL, where replicas and workers write at once, ``pg_advisory_xact_lock`` on a
fixed key, released when the transaction ends; READ COMMITTED gives the read after it a
fresh snapshot, so it sees the entry committed by the previous holder. Taking it at
commit rather than at the entry's first flush keeps it short — the read, the insert and
the commit (with a durable commit, its WAL flush), not the rest of triage: that is all
writers of the audit log queue for — and makes it the last lock any transaction takes, so
a transaction holding it never waits for a row lock held by one waiting for it (no
deadlock). Ids are given here (last id + 1), not by the sequence: the hash needs the id
before the insert, and new entries leave no gaps. The primary key also makes a fork
impossible: two writers that read the same last entry (a session that is not READ
COMMITTED, a connection that bypassed the lock) claim the same id, and the second insert
fails instead of forking the chain.

**Append-only.** The ORM refuses to update or delete an entry (``AppendOnlyError``: a
changed or deleted entry at flush, an ``update()`` or ``delete()`` statement); the
database refuses too (triggers, migration 0009). Someone with the database's owner or
superuser rights can still drop the triggers and edit rows: ``verify`` detects the edit,
unless they also recompute every later hash — so keep the last hash that ``fido audit
verify`` prints (or the SIEM's copy) elsewhere and check it with ``--anchor``. For the
same reason a deleted tail is invisible in the chain alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, event, text
from sqlalchemy.orm import ORMExecuteState, Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.clock import as_utc
from pipeline.db import Database
from pipeline.locks import lock_key
from pipeline.models import AuditEntry

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # the prev_hash of the first entry
PAGE = 1000  # entries read at a time by verify and export
CHAIN_LOCK = lock_key("fido:audit_chain")  # PostgreSQL advisory lock key
_PENDING = "fido.audit.pending"  # session.info: entries waiting for the commit


class AppendOnlyError(RuntimeError):
    """Code tried to change or delete an audit entry (a bug: the log is append-only)."""


def record(
    session: AsyncSession,
    *,
    actor: str,
    verb: str,
    target: str = "",
    incident_id: int | None = None,
    **detail: Any,
) -> AuditEntry:
    """Add an audit entry to ``session``; it joins the chain (id, hashes) and is written
    when the caller commits, and is dropped if the transaction rolls back."""
    entry = AuditEntry(
        actor=actor, verb=verb, target=target, incident_id=incident_id, detail=detail
    )
    session.info.setdefault(_PENDING, []).append(entry)
    log.info("audit: %s %s %s (incident %s)", actor, verb, target, incident_id)
    return entry


async def entries(
    session: AsyncSession, *, incident_id: int | None = None, verb: str | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.id))
    if incident_id is not None:
        query = query.where(AuditEntry.incident_id == incident_id)
    if verb is not None:
        query = query.where(AuditEntry.verb == verb)
    return list((await session.exec(query)).all())


# -- the canonical form ----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON value with every whole-number float as the integer it is (exactly, through
    its decimal form: ``1e300`` is 10**300, as ``jsonb`` keeps it)."""
    if isinstance(value, float):
        return int(Decimal(repr(value))) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: v if type(v) in _LEAVES else _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in _LEAVES else _plain(v) for v in value]
    return value


_LEAVES = frozenset({str, int, bool, type(None)})  # what _plain leaves as it is


def fields_of(entry: Any, *, prev_hash: str | None = None) -> dict[str, Any]:
    """What an entry's hash covers, as ``fido audit export`` writes it (without ``hash``),
    from a stored entry (an ``AuditEntry`` or a row of its columns)."""
    return _fields(entry, entry.detail, entry.prev_hash if prev_hash is None else prev_hash)


def _fields(entry: Any, detail: Any, prev_hash: str) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": as_utc(entry.at).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "verb": entry.verb,
        "target": entry.target,
        "incident_id": None if entry.incident_id is None else int(entry.incident_id),
        "detail": _plain(detail),
        "prev_hash": prev_hash,
    }


def canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(fields: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the canonical form of ``fields`` (``fields_of``)."""
    return hashlib.sha256(canonical(fields)).hexdigest()


# -- joining the chain at commit ---------------------------------------------------------


def _chain(session: Session, new: list[AuditEntry]) -> None:
    """Give ``new`` entries, in order, the ids and hashes that follow the last entry."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK})
    last = connection.execute(
        select(AuditEntry.id, AuditEntry.hash).order_by(col(AuditEntry.id).desc()).limit(1)
    ).first()
    last_id, prev = (last[0], last[1]) if last is not None else (0, GENESIS)
    for entry in new:
        last_id += 1
        entry.id, entry.at, entry.prev_hash = last_id, as_utc(entry.at), prev
        stored = json.loads(json.dumps(entry.detail))  # as the JSON column gives it back
        entry.hash = prev = digest(_fields(entry, stored, prev))


def _unchained(session: Session) -> list[AuditEntry]:
    return [o for o in session.new if isinstance(o, AuditEntry) and o.hash is None]


@event.listens_for(Session, "before_flush")
def _hold_until_commit(session: Session, _context: Any, _instances: Any) -> None:
    """Entries added with ``session.add`` wait for the commit, like ``record``'s."""
    strays = _unchained(session)
    for entry in strays:
        session.expunge(entry)
    if strays:
        session.info.setdefault(_PENDING, []).extend(strays)


@event.listens_for(Session, "before_commit")
def _chain_at_commit(session: Session) -> None:
    if not session.info.get(_PENDING) and not _unchained(session):
        return
    session.flush()  # the rest of the transaction first: then the chain lock is its last
    new = session.info.pop(_PENDING, [])
    _chain(session, new)
    session.add_all(new)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # committed (and already taken) or rolled back
        session.info.pop(_PENDING, None)


# -- append-only -------------------------------------------------------------------------


@event.listens_for(AuditEntry, "before_update")
def _refuse_update(_mapper: Any, _connection: Any, entry: AuditEntry) -> None:
    raise AppendOnlyError(f"audit entry {entry.id} cannot be changed: the log is append-only")


@event.listens_for(AuditEntry, "before_delete")
def _refuse_delete(_mapper: Any, _connection: Any, entry: AuditEntry) -> None:
    raise AppendOnlyError(f"audit entry {entry.id} cannot be deleted: the log is append-only")


@event.listens_for(Session, "do_orm_execute")
def _refuse_statements(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) == AuditEntry.__tablename__:
            raise AppendOnlyError("audit entries cannot be changed or deleted")


# -- reading the chain -------------------------------------------------------------------


async def pages(
    db: Database, *, since: datetime | None = None, size: int = PAGE
) -> AsyncIterator[list[Any]]:
    """Stored entries in id order, ``size`` at a time, each page in its own short
    transaction (on SQLite a transaction holds the write lock)."""
    table: Table = AuditEntry.__table__  # type: ignore[attr-defined]
    after = None
    while True:
        query = table.select().order_by(table.c.id).limit(size)
        if after is not None:
            query = query.where(table.c.id > after)
        if since is not None:
            query = query.where(table.c.at >= as_utc(since))
        async with db.engine.connect() as connection:
            rows = list((await connection.execute(query)).all())
        if not rows:
            return
        yield rows
        after = rows[-1].id


async def export(
    db: Database, *, since: datetime | None = None, size: int = PAGE
) -> AsyncIterator[list[dict[str, Any]]]:
    """Entries as ``fido audit export`` writes them, a page at a time."""
    async for rows in pages(db, since=since, size=size):
        yield [fields_of(row) | {"hash": row.hash} for row in rows]


@dataclass(frozen=True)
class Break:
    """The first bad entry: ``problem`` is edited, deleted, reordered, or (against an
    anchor) rewritten or truncated."""

    entry: int
    problem: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    entries: int  # checked (up to the first bad one)
    last_id: int | None
    last_hash: str  # GENESIS when the log is empty
    broken: Break | None = None


def _check(row: Any, prev_id: int | None, prev_hash: str) -> Break | None:
    intact = digest(fields_of(row)) == row.hash
    linked = row.prev_hash == prev_hash
    after = "the start of the log" if prev_id is None else f"entry {prev_id}"
    if intact and linked:
        return None
    if not linked and not intact:
        return Break(
            row.id,
            "reordered",
            "neither its contents nor its place match its hash: entries were moved, "
            f"renumbered or replaced (its prev_hash does not link to {after})",
        )
    if not intact:
        return Break(row.id, "edited", "its contents no longer match its hash")
    if prev_id is None or row.id != prev_id + 1:
        missing = "before it" if prev_id is None else f"between {prev_id} and {row.id}"
        return Break(
            row.id,
            "deleted",
            f"entries {missing} were deleted: its prev_hash does not link to {after}",
        )
    return Break(
        row.id,
        "reordered",
        f"its prev_hash is not the hash of {after}: entries were reordered or replaced",
    )


async def verify(
    db: Database, *, anchor: tuple[int, str] | None = None, size: int = PAGE
) -> Verdict:
    """Walk the chain in id order, a page at a time, up to the first bad entry. With
    ``anchor`` (an id and the hash it had when it was kept elsewhere), that entry must
    still be there with that hash."""
    count, prev_id, prev_hash = 0, None, GENESIS
    found = False
    async for rows in pages(db, size=size):
        for row in rows:
            broken = _check(row, prev_id, prev_hash)
            if broken is None and anchor is not None and row.id == anchor[0]:
                found = True
                if row.hash != anchor[1]:
                    broken = Break(
                        row.id,
                        "rewritten",
                        f"its hash is {row.hash}, not the anchored {anchor[1]}: the log "
                        "was rewritten up to here",
                    )
            if broken is not None:
                return Verdict(count, prev_id, prev_hash, broken)
            count, prev_id, prev_hash = count + 1, row.id, row.hash
    if anchor is not None and not found:
        broken = Break(
            anchor[0],
            "truncated",
            f"the anchored entry is not in the log (the last is {prev_id}): entries were "
            "deleted from the end",
        )
        return Verdict(count, prev_id, prev_hash, broken)
    return Verdict(count, prev_id, prev_hash)
